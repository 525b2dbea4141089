"""Axon centrelines: constrained random walks, polynomial splines fitted to them,
and images rendered from the distance to a centreline (Dai et al. 2019, §4.1).

Coordinates are ``(y, x)`` in pixels, pixel centres at integer positions (as in
napari and ``scipy.ndimage.map_coordinates``).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import splev, splprep
from scipy.spatial import cKDTree


class WalkDoesNotFit(ValueError):
    """No random walk of the asked length fitted the image within the tries (a settings
    problem when it happens every time, an unlucky draw when it happens once)."""


def arc_length(points: np.ndarray) -> np.ndarray:
    """Cumulative arc length along a polyline, starting at 0."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    """Points evenly spaced by arc length (about ``spacing`` px apart), both ends kept."""
    s = arc_length(points)
    n = max(2, int(round(s[-1] / spacing)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


def _inside(p, shape, margin):
    return margin <= p[0] <= shape[0] - 1 - margin and margin <= p[1] <= shape[1] - 1 - margin


def constrained_random_walk(
    rng: np.random.Generator,
    shape: tuple[int, int],
    length: float,
    step: float,
    turn_sd: float,
    heading_pull: float,
    margin: float,
    min_separation: float,
    start=None,
    heading: float | None = None,
    stop_at_edge: bool = False,
    max_tries: int = 200,
) -> np.ndarray:
    """A random walk of fixed step length whose heading drifts (``turn_sd`` rad per
    step, pulled back towards its first heading by ``heading_pull``), constrained to
    stay ``margin`` px inside the image and ``min_separation`` px away from its own
    earlier parts (an axon does not loop onto itself). Returns ``(n, 2)`` points.

    ``stop_at_edge`` ends the walk where it would leave the image instead of
    steering back (distractor axons may run off the image).
    """
    h, w = shape
    n_steps = int(np.ceil(length / step))
    skip = int(np.ceil(min_separation / step)) + 1  # neighbours along the walk are close by construction
    for _ in range(max_tries):
        if start is None:
            p = np.array([rng.uniform(margin, h - 1 - margin), rng.uniform(margin, w - 1 - margin)])
        else:
            p = np.asarray(start, float)
        if heading is None:
            to_centre = np.arctan2((h - 1) / 2 - p[0], (w - 1) / 2 - p[1])
            h0 = to_centre + rng.uniform(-np.pi / 4, np.pi / 4)
        else:
            h0 = float(heading)
        pts, hd, ok, left = [p], h0, True, False
        for _ in range(n_steps):
            for _try in range(30):
                drift = np.angle(np.exp(1j * (hd - h0)))
                hn = hd + turn_sd * rng.standard_normal() - heading_pull * drift
                q = pts[-1] + step * np.array([np.sin(hn), np.cos(hn)])
                if not _inside(q, shape, margin):
                    left = stop_at_edge
                    if left:
                        break
                    continue
                earlier = np.asarray(pts[:-skip]) if len(pts) > skip else None
                if earlier is not None and np.min(np.linalg.norm(earlier - q, axis=1)) < min_separation:
                    continue
                pts.append(q)
                hd = hn
                break
            else:
                ok = False
            if left or not ok:
                break
        if ok and len(pts) >= 4:
            return np.asarray(pts)
    raise WalkDoesNotFit(
        f"could not fit a {length:.0f} px random walk into a {shape} image "
        f"(margin {margin}, min separation {min_separation}); lower the axon length"
    )


def fit_polynomial_spline(walk: np.ndarray, smoothing: float, spacing: float) -> np.ndarray:
    """Fit a cubic smoothing spline (scipy's ``splprep``) to the walk and sample it
    every ``spacing`` px of arc length."""
    k = min(3, len(walk) - 1)
    tck, _ = splprep([walk[:, 0], walk[:, 1]], k=k, s=smoothing * len(walk))
    u = np.linspace(0.0, 1.0, 40 * len(walk))
    dense = np.stack(splev(u, tck), axis=1)
    return resample_polyline(dense, spacing)


def self_separation_ok(points: np.ndarray, min_separation: float) -> bool:
    """True when parts of the curve more than ``2 * min_separation`` apart along it
    stay at least ``min_separation`` px apart in the image."""
    s = arc_length(points)
    pairs = cKDTree(points).query_pairs(min_separation, output_type="ndarray")
    return not len(pairs) or bool(np.all(np.abs(s[pairs[:, 0]] - s[pairs[:, 1]]) <= 2 * min_separation))


def distance_to_polyline(points: np.ndarray, shape: tuple[int, int], max_distance: float = np.inf):
    """Distance from every pixel centre to the polyline, and the arc length of its
    nearest point. Hand-written (skimage/MONAI have no subpixel polyline distance):
    a KD-tree over the polyline sampled every 0.05 px (error < 0.025 px)."""
    dense = resample_polyline(points, 0.05) if len(points) > 1 else np.asarray(points, float)
    s = arc_length(dense)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d, idx = cKDTree(dense).query(np.stack([yy.ravel(), xx.ravel()], 1), distance_upper_bound=max_distance)
    near = np.isfinite(d)
    arc = np.full(d.shape, np.nan)
    arc[near] = s[idx[near]]
    return d.reshape(shape), arc.reshape(shape)


def gaussian_tube(points: np.ndarray, shape, sigma: float, profile=None) -> np.ndarray:
    """``exp(-d^2 / 2 sigma^2)`` around the polyline (a Gaussian cross-section),
    optionally scaled along the curve by ``profile(arc_length)``."""
    d, arc = distance_to_polyline(points, shape, max_distance=6 * sigma + 1)
    out = np.zeros(shape, np.float64)
    near = np.isfinite(d)
    out[near] = np.exp(-(d[near] ** 2) / (2 * sigma**2))
    if profile is not None:
        out[near] *= profile(arc[near])
    return out


def centreline_image(points: np.ndarray, shape, sigma: float = 1.0) -> np.ndarray:
    """The ground-truth centreline image I_G of Appendix B: 1 on the subpixel
    centreline, falling off as a Gaussian of width ``sigma`` px (float32)."""
    return gaussian_tube(np.asarray(points, float), shape, sigma).astype(np.float32)
