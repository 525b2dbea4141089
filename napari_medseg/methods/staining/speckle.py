"""The speckle model of reflectance confocal images, and the training images for despeckling.

RCM images carry multiplicative speckle: ``Y = X * (1 + F)`` (paper Eq. 1), with the
paper's training noise ``noise = Gauss(mean=1, std=0.2)``. Despeckling is learnt on the
inverted luma (Y of YUV) of H&E images, whose structures look like reflectance.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError

PAPER_STD = 0.2  # std of the multiplicative training noise in the paper


def add_speckle(clean: np.ndarray, std: float = PAPER_STD, rng=None) -> np.ndarray:
    """``clean * noise`` with ``noise ~ N(1, std)`` per pixel (float32, not clipped)."""
    if std < 0:
        raise InputError(f"The speckle std must be zero or positive, not {std}.")
    rng = np.random.default_rng(rng)
    clean = np.asarray(clean, np.float32)
    return clean * rng.normal(1.0, std, clean.shape).astype(np.float32)


def inverted_luma(rgb: np.ndarray) -> np.ndarray:
    """1 - Y (YUV luma) of an RGB image, in [0, 1]: bright tissue on a dark background, like RCM."""
    from skimage.color import rgb2yuv

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise InputError(f"Expected an RGB image (height, width, 3); got shape {rgb.shape}.")
    x = rgb[..., :3].astype(np.float32)
    if rgb.dtype == np.uint8:
        x /= 255.0
    elif rgb.dtype == np.uint16:
        x /= 65535.0
    return np.clip(1.0 - rgb2yuv(x)[..., 0], 0.0, 1.0).astype(np.float32)
