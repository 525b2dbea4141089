"""Where a trace starts heading: a given direction, or the local ridge orientation (issue 15).

The agent decides each step from its views, one of which is its own past path (§3.1).
At a bare start point that path is empty, so nothing tells it which way along the
fibre to go, and on real images it often left backwards. A start therefore gets a
heading, and a short stub of "already visited" path is drawn behind it, opposite the
heading, exactly as a branch start sees the trace it branches from.

Auto heading: the fibre's orientation at the start is the Hessian eigenvector of the
smaller-magnitude eigenvalue (scale matched to the fibre width, estimated from the
intensity profile across it). Of the two headings along it, the one towards the end
point when an end is given; otherwise the one where the ridge continues brighter over
the next 3-12 px.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

PATCH = 24  # half-size of the neighbourhood analysed around a start (px)


def _patch(image: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.round(start).astype(int)
    y0, x0 = max(0, y - PATCH), max(0, x - PATCH)
    sub = image[y0 : y + PATCH + 1, x0 : x + PATCH + 1].astype(np.float64)
    return sub, np.asarray(start, np.float64) - (y0, x0)


def ridge_orientation(image: np.ndarray, start, sigma: float = 1.5) -> np.ndarray:
    """Unit vector (dy, dx) along the bright ridge through ``start`` (sign arbitrary)."""
    from skimage.feature import hessian_matrix

    sub, at = _patch(image, start)
    hrr, hrc, hcc = hessian_matrix(sub, sigma=sigma, order="rc", use_gaussian_derivatives=True)
    # average the tensor over a small disc: one noisy pixel should not decide
    w = np.zeros_like(sub)
    iy, ix = np.clip(np.round(at).astype(int), 0, np.array(sub.shape) - 1)
    w[iy, ix] = 1.0
    w = ndi.gaussian_filter(w, max(1.0, sigma))
    h = np.array([[np.sum(w * hrr), np.sum(w * hrc)], [np.sum(w * hrc), np.sum(w * hcc)]])
    vals, vecs = np.linalg.eigh(h)
    v = vecs[:, int(np.argmin(np.abs(vals)))]  # along the ridge: the small curvature
    return v / (np.linalg.norm(v) + 1e-12)


def fibre_width(image: np.ndarray, start, direction: np.ndarray) -> float:
    """Full width at half maximum (px) of the intensity profile across the fibre at ``start``."""
    smooth = ndi.gaussian_filter(image.astype(np.float64), 1.0)
    normal = np.array([-direction[1], direction[0]])
    t = np.arange(-12.0, 12.5, 0.5)
    pts = np.asarray(start, np.float64)[:, None] + normal[:, None] * t[None]
    prof = ndi.map_coordinates(smooth, pts, order=1, mode="nearest")
    bg = float(np.median(np.concatenate([prof[:6], prof[-6:]])))
    centre = len(t) // 2
    peak_i = centre - 4 + int(np.argmax(prof[centre - 4 : centre + 5]))
    half = bg + 0.5 * (prof[peak_i] - bg)
    if prof[peak_i] <= bg:
        return 1.0
    lo, hi = peak_i, peak_i
    while lo > 0 and prof[lo - 1] > half:
        lo -= 1
    while hi < len(t) - 1 and prof[hi + 1] > half:
        hi += 1
    return float(max(1.0, (hi - lo + 1) * 0.5))


def choose_heading(image: np.ndarray, start, end=None) -> tuple[np.ndarray, str, float]:
    """``(unit heading, why, fibre width px)`` for a start with no given direction."""
    v = ridge_orientation(image, start, sigma=1.5)
    width = fibre_width(image, start, v)
    sigma = float(np.clip(width / 2.355, 1.0, 4.0))
    if abs(sigma - 1.5) > 0.25:  # re-estimate at the fibre's own scale
        v = ridge_orientation(image, start, sigma=sigma)
    start = np.asarray(start, np.float64)
    if end is not None and np.isfinite(end).all():
        to_end = np.asarray(end, np.float64) - start
        sign = 1.0 if float(v @ to_end) >= 0 else -1.0
        return sign * v, "along the ridge, towards the end point", width
    smooth = ndi.gaussian_filter(image.astype(np.float64), max(1.0, sigma))
    t = np.arange(3.0, 13.0)
    ahead = ndi.map_coordinates(smooth, start[:, None] + v[:, None] * t, order=1, mode="constant", cval=-np.inf)
    behind = ndi.map_coordinates(smooth, start[:, None] - v[:, None] * t, order=1, mode="constant", cval=-np.inf)
    sign = 1.0 if np.mean(ahead) >= np.mean(behind) else -1.0
    return sign * v, "along the ridge, where it continues brighter", width


def heading_from_point(start, towards) -> np.ndarray:
    d = np.asarray(towards, np.float64) - np.asarray(start, np.float64)
    n = np.linalg.norm(d)
    if not np.isfinite(n) or n < 1e-6:
        from napari_medseg.core.errors import InputError

        raise InputError(f"The direction point {tuple(np.round(towards, 1))} is the start point itself; "
                         f"put it a few px along the fibre.")
    return d / n


def stub_behind(start, heading: np.ndarray, length: float) -> np.ndarray:
    """A short straight path behind ``start``, ending at it (drawn as already visited)."""
    t = np.linspace(length, 0.0, max(2, int(round(length)) + 1))
    return np.asarray(start, np.float64)[None] - t[:, None] * heading[None]


def directions_of(image: np.ndarray, starts: np.ndarray, ends: np.ndarray, directions) -> list[dict]:
    """Per start: ``{"heading", "why", "width_px"}``; ``directions[i]`` is a unit vector,
    a NaN pair (auto) or None (auto)."""
    out = []
    for i, st in enumerate(starts):
        d = None if directions is None else directions[i]
        if d is not None and np.isfinite(d).all():
            v = np.asarray(d, np.float64) / (np.linalg.norm(d) + 1e-12)
            out.append({"heading": v, "why": "given", "width_px": fibre_width(image, st, v)})
        else:
            v, why, width = choose_heading(image, st, ends[i] if ends is not None else None)
            out.append({"heading": v, "why": why, "width_px": width})
    return out
