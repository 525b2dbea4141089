"""Images from label maps: per-class means, blur, a smooth bias field and noise (the
phantoms of several methods share it)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .brain import smooth_field

def render(rng: np.random.Generator, classes: np.ndarray, means, *, blur=0.7, bias: float = 0.12,
           noise: float = 0.03, texture: float = 0.03, bias_cells=None) -> np.ndarray:
    """An MR-like image of a class map: class means with texture, blur, a bias field, Rician noise.

    ``blur`` is the Gaussian sigma in voxels (one value or one per axis: partial volume and
    the scanner's point spread); ``bias`` the strength of a smooth multiplicative field.
    """
    means = np.asarray(means, np.float32)
    shape = classes.shape
    cells = tuple(max(2, n // 6) for n in shape)
    img = means[classes] * (1.0 + texture * smooth_field(rng, shape, cells))
    img = ndimage.gaussian_filter(img, blur)
    bias_cells = bias_cells or tuple(2 if n < 8 else 3 for n in shape)
    img *= np.exp(bias * smooth_field(rng, shape, bias_cells))
    real = img + noise * rng.standard_normal(shape, dtype=np.float32)
    imag = noise * rng.standard_normal(shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)
