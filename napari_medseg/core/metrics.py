"""Overlap metrics on numpy label arrays (MONAI's work on tensors; these on masks on disk)."""

from __future__ import annotations

import numpy as np


def dice(pred, target, label: int = 1) -> float:
    """Dice of one label; 1.0 when both are empty."""
    p = np.asarray(pred) == label
    t = np.asarray(target) == label
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(p, t).sum() / denom)
