"""A greedy ridge follower: the simple classical tracker the issue measures us against.

From a start point and a heading it walks 1 px per step; each step goes to the
direction, within ±45° of the current heading, where a Sato ridge map (bright
ridges, scales matched to 1-8 px fibres) is highest one pixel ahead. The heading then
follows the step, lightly smoothed. It stops when it leaves the image, passes within
``end_radius`` of a given end (or, having come within 2 × ``end_radius`` + 1 px of it,
moves away from it: the same end rule as the agent's), loses the ridge (response below ``lost_fraction`` of
the start's for ``lost_steps`` steps), comes back onto its own path, or after
``max_steps``. Hand-written: ~40 lines, no learning.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import sato

SIGMAS = (1.0, 2.0, 3.0)


def ridge_map(image: np.ndarray, sigmas=SIGMAS) -> np.ndarray:
    r = sato(np.asarray(image, np.float64), sigmas=sigmas, black_ridges=False, mode="reflect")
    r = np.clip(np.nan_to_num(r), 0.0, None)
    return r / (r.max() + 1e-12)


def greedy_follow(ridge: np.ndarray, start, heading, end=None, *, end_radius: float = 3.0, max_steps: int = 1500,
                  lost_fraction: float = 0.1, lost_steps: int = 8, revisit_radius: float = 1.0) -> dict:
    """``{"points": (N, 2), "reached_end": bool, "stop": str}`` for one start."""
    h, w = ridge.shape
    p = np.asarray(start, np.float64)
    v = np.asarray(heading, np.float64) / (np.linalg.norm(heading) + 1e-12)
    end = None if end is None or not np.isfinite(end).all() else np.asarray(end, np.float64)
    angles = np.deg2rad(np.arange(-45, 46, 5))
    level = max(float(ndi.map_coordinates(ridge, p[:, None], order=1)[0]), 1e-6)
    points, weak, stop = [p.copy()], 0, "max steps"
    nearest, slack = np.inf, 2 * end_radius + 1.0
    start_dist = np.inf if end is None else float(np.linalg.norm(p - end))
    for step in range(max_steps):
        c, s = np.cos(angles), np.sin(angles)
        dirs = np.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]], 1)  # rotations of v
        cand = p[None] + dirs
        resp = ndi.map_coordinates(ridge, cand.T, order=1, mode="constant", cval=-1.0)
        k = int(np.argmax(resp))
        new = cand[k]
        if not (0 <= new[0] <= h - 1 and 0 <= new[1] <= w - 1):
            stop = "image edge"
            break
        if end is not None:
            seg = new - p
            t = np.clip(np.dot(end - p, seg) / max(np.dot(seg, seg), 1e-12), 0, 1)
            closest = float(np.linalg.norm(p + t * seg - end))
            if closest <= end_radius:
                points.append(new)
                stop = "end reached"
                break
            nearest = min(nearest, closest)
            near = nearest <= slack and nearest < start_dist - 0.5
            if near and (np.linalg.norm(new - end) > nearest + 0.5 or np.dot(end - new, seg) < 0):
                points.append(new)
                stop = "passed the end"
                break
        if len(points) > 6 and np.min(np.linalg.norm(np.asarray(points[:-5]) - new, axis=1)) < revisit_radius:
            stop = "revisit"
            break
        weak = weak + 1 if resp[k] < lost_fraction * level else 0
        if weak >= lost_steps:
            stop = "lost the ridge"
            break
        v = 0.7 * v + 0.3 * dirs[k]
        v /= np.linalg.norm(v) + 1e-12
        p = new
        points.append(p.copy())
    return {"points": np.asarray(points), "reached_end": stop == "end reached", "stop": stop}
