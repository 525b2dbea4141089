"""Intensity scaling shared by methods and widgets."""

from __future__ import annotations

import numpy as np

from .errors import InputError

def percentile_scale(img: np.ndarray, low: float = 2.0, high: float = 98.0, mask=None) -> np.ndarray:
    """Clip to the ``low`` and ``high`` percentiles and rescale to [0, 1] (float32).

    Percentiles are taken over the whole image (as in the paper) or over ``mask``. An image
    whose two percentiles are equal comes back as zeros.
    """
    img = np.asarray(img, np.float32)
    if img.size == 0:
        raise InputError("The image is empty.")
    if not 0.0 <= low < high <= 100.0:
        raise InputError(f"Percentiles must satisfy 0 <= low < high <= 100, got {low} and {high}.")
    if not np.isfinite(img).all():
        raise InputError("The image has NaN or infinite values.")
    vals = img if mask is None else img[np.asarray(mask, bool)]
    if vals.size == 0:
        raise InputError("The mask selects no voxels.")
    lo, hi = np.percentile(vals, [low, high])
    if hi <= lo:
        return np.zeros_like(img)
    return ((np.clip(img, lo, hi) - lo) / (hi - lo)).astype(np.float32)
