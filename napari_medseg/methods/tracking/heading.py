"""Where a trace starts heading: a given direction, or the local ridge orientation (issue 15).

The agent decides each step from its views, one of which is its own past path (§3.1).
At a bare start point that path is empty, so nothing tells it which way along the
fibre to go, and on real images it often left backwards. A start therefore gets a
heading, and a short stub of "already visited" path is drawn behind it, opposite the
heading, exactly as a branch start sees the trace it branches from.

Auto heading: the fibre's orientation at the start is the Hessian eigenvector of the
smaller-magnitude eigenvalue (scale matched to the fibre width, estimated from the
intensity profile across it). Of the two headings along it, the one towards the end
point when an end is given; otherwise the one where a ridge *continues* over the next
2-12 px: at each distance, the best ridge strength within ±30° of the heading, weighted
by how well the local ridge there is oriented along that ray (cos²). A fibre's free tip
has nothing behind it; a branch clicked at its junction has the parent vessel behind
it, which is bright but runs across, so plain brightness would walk back into it (it
did for 7 of 13 retina starts next to a junction).
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


def choose_heading(image: np.ndarray, start, end=None, tip_ratio: float | None = None) -> tuple[np.ndarray, str, float]:
    """``(unit heading, why, fibre width px)`` for a start with no given direction.
    ``tip_ratio``: with an end given, first look whether the start is a fibre's tip (the
    ridge continues at least this many times more strongly one way than the other) and
    if so leave the way it continues, even if that turns away from the end (a fibre that
    curls round); otherwise head towards the end."""
    v = ridge_orientation(image, start, sigma=1.5)
    width = fibre_width(image, start, v)
    sigma = float(np.clip(width / 2.355, 1.0, 4.0))
    if abs(sigma - 1.5) > 0.25:  # re-estimate at the fibre's own scale
        v = ridge_orientation(image, start, sigma=sigma)
    start = np.asarray(start, np.float64)
    if end is not None and np.isfinite(end).all() and tip_ratio is not None:
        ahead, behind = continuation(image, start, v, sigma), continuation(image, start, -v, sigma)
        if max(ahead, behind) >= tip_ratio * max(min(ahead, behind), 1e-12):
            return (1.0 if ahead >= behind else -1.0) * v, "along the ridge, the way it continues", width
    if end is not None and np.isfinite(end).all():
        to_end = np.asarray(end, np.float64) - start
        sign = 1.0 if float(v @ to_end) >= 0 else -1.0
        return sign * v, "along the ridge, towards the end point", width
    ahead, behind = continuation(image, start, v, sigma), continuation(image, start, -v, sigma)
    sign = 1.0 if ahead >= behind else -1.0
    return sign * v, "along the ridge, the way it continues", width


def _ridge_fields(image: np.ndarray, start, sigma: float):
    """Around ``start``: (start in the patch, ridge strength, unit orientation along the ridge (y, x))."""
    from skimage.feature import hessian_matrix

    sub, at = _patch(image, start)
    hrr, hrc, hcc = hessian_matrix(sub, sigma=sigma, order="rc", use_gaussian_derivatives=True)
    half_tr = (hrr + hcc) / 2
    disc = np.sqrt(np.maximum((hrr - hcc) ** 2 / 4 + hrc**2, 0.0))
    strength = np.clip(-(half_tr - disc), 0.0, None) * sigma**2  # bright ridge: strongly negative across
    oy, ox = hrc, (half_tr + disc) - hrr  # eigenvector of the larger eigenvalue: along the ridge
    norm = np.hypot(oy, ox) + 1e-12
    return at, strength, oy / norm, ox / norm


def continuation(image: np.ndarray, start, heading: np.ndarray, sigma: float, reach: float = 12.0,
                 fan_deg: float = 30.0) -> float:
    """How strongly a ridge continues from ``start`` along ``heading`` (unitless, >= 0): the
    mean over 2..``reach`` px of the best ``strength × cos²(ridge orientation, ray)`` within
    ±``fan_deg`` of the heading (the fan follows a bend)."""
    at, strength, oy, ox = _ridge_fields(image, start, sigma)
    t = np.arange(2.0, reach + 1.0)
    best = np.zeros(len(t))
    for a in np.deg2rad(np.arange(-fan_deg, fan_deg + 1.0, 10.0)):
        c, s = np.cos(a), np.sin(a)
        d = np.array([c * heading[0] - s * heading[1], s * heading[0] + c * heading[1]])
        pts = at[:, None] + d[:, None] * t
        st = ndi.map_coordinates(strength, pts, order=1, mode="constant", cval=0.0)
        yy = ndi.map_coordinates(oy, pts, order=1, mode="constant", cval=0.0)
        xx = ndi.map_coordinates(ox, pts, order=1, mode="constant", cval=0.0)
        cos = np.abs(yy * d[0] + xx * d[1]) / (np.hypot(yy, xx) + 1e-12)
        best = np.maximum(best, st * cos**2)
    return float(best.mean())


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
