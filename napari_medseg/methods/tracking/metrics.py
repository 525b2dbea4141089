"""Tracking metrics of Dai et al. 2019 (§4.3, footnote 11).

- Coverage: the percentage of ground-truth centreline keypoints with a trace point
  within 3 px.
- Error: the mean perpendicular distance (px) from the trace points to the
  ground-truth centreline; a period with error > 11 px for more than 5 consecutive
  steps counts as "tracking lost" and is excluded (and reported separately).
- Mean policy entropy within and beyond 3 px of the centreline.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

COVERAGE_RADIUS = 3.0
LOST_ERROR = 11.0  # px
LOST_STEPS = 5  # more than this many consecutive steps over LOST_ERROR: lost


def _points(a) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1, 2)
    return a[np.all(np.isfinite(a), axis=1)]


def coverage(trace, centreline, radius: float = COVERAGE_RADIUS) -> float:
    """% of ``centreline`` keypoints (N, 2) with a ``trace`` point (M, 2) within ``radius`` px."""
    gt, tr = _points(centreline), _points(trace)
    if len(gt) == 0:
        return float("nan")
    if len(tr) == 0:
        return 0.0
    d, _ = cKDTree(tr).query(gt, distance_upper_bound=radius + 1e-9)
    return 100.0 * float(np.mean(d <= radius))


def distance_to_centreline(points, centreline) -> np.ndarray:
    """Perpendicular distance (px) from each point (M, 2) to the polyline (N, 2)."""
    p, line = np.asarray(points, np.float64).reshape(-1, 2), _points(centreline)
    if len(line) == 1:
        return np.linalg.norm(p - line[0], axis=1)
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.einsum("psk,sk->ps", p[:, None] - a[None], ab) / np.maximum((ab**2).sum(1), 1e-12)
    nearest = a[None] + np.clip(t, 0.0, 1.0)[..., None] * ab[None]
    return np.linalg.norm(p[:, None] - nearest, axis=2).min(1)


def lost_mask(errors, lost_error: float = LOST_ERROR, lost_steps: int = LOST_STEPS) -> np.ndarray:
    """True for the steps of runs of more than ``lost_steps`` consecutive errors > ``lost_error``."""
    over = np.asarray(errors) > lost_error
    lost = np.zeros_like(over)
    start = None
    for i, o in enumerate(np.append(over, False)):
        if o and start is None:
            start = i
        elif not o and start is not None:
            if i - start > lost_steps:
                lost[start:i] = True
            start = None
    return lost


def trace_metrics(trace, centreline, entropy=None, radius: float = COVERAGE_RADIUS) -> dict:
    """Coverage, error (footnote 11) and, given per-step ``entropy``, the mean entropy
    within and beyond ``radius`` px. ``entropy[i]`` belongs to the step that left
    trace point ``i`` (so it has one value fewer than the trace, or as many)."""
    tr = _points(trace)
    err = distance_to_centreline(tr, centreline) if len(tr) else np.zeros(0)
    lost = lost_mask(err)
    kept = err[~lost]
    out = {
        "coverage_pct": coverage(tr, centreline, radius),
        "error_px": float(kept.mean()) if len(kept) else float("nan"),
        "error_raw_px": float(err.mean()) if len(err) else float("nan"),
        "lost_steps": int(lost.sum()),
    }
    if entropy is not None:
        h = np.asarray(entropy, np.float64)[: len(err)]
        near = err[: len(h)] <= radius
        out["entropy_within"] = float(h[near].mean()) if near.any() else float("nan")
        out["entropy_outside"] = float(h[~near].mean()) if (~near).any() else float("nan")
    return out


def mean_metrics(rows: list[dict]) -> dict:
    """Per-key mean over traces, ignoring NaN (an empty key gives NaN)."""
    keys = {k for r in rows for k in r}
    out = {}
    for k in sorted(keys):
        v = np.array([r[k] for r in rows if k in r], np.float64)
        v = v[np.isfinite(v)]
        out[k] = float(v.mean()) if len(v) else float("nan")
    return out
