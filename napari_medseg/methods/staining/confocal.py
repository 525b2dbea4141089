"""Confocal-like FCM/RCM pairs derived from real H&E by colour deconvolution.

No real ex-vivo confocal pairs can be downloaded here, so pairs are made from H&E
(scikit-image's ``rgb2hed``, Ruifrok & Johnston's stain vectors):

- FCM (fluorescence, acridine orange on nuclei) from the hematoxylin density: nuclei
  bright, background dark, with mild Gaussian detector noise;
- RCM (reflectance of cytoplasm and collagen) from the eosin density, then the
  multiplicative speckle of :func:`speckle.add_speckle`.

Both are 16-bit by default, like the mosaics microscopes write. The H&E they came
from is the pair's ground truth for staining metrics; different crops of different
images give the unpaired sets CycleGAN trains on. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.errors import InputError
from .speckle import PAPER_STD, add_speckle

FCM_NOISE = 0.02  # std of additive detector noise, in units of the [0, 1] range


@dataclass(frozen=True)
class ConfocalPair:
    fcm: np.ndarray  # (H, W) nuclei channel
    rcm: np.ndarray  # (H, W) reflectance channel, speckled
    rcm_clean: np.ndarray  # (H, W) float32 [0, 1], the reflectance before speckle
    he: np.ndarray  # (H, W, 3) uint8, the H&E they were derived from


def _stretch(x: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    lo, hi = np.percentile(x, [low, high])
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def stain_densities(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin densities of an RGB H&E image, each stretched to [0, 1]."""
    from skimage.color import rgb2hed

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise InputError(f"Expected an RGB H&E image (height, width, 3); got shape {rgb.shape}.")
    hed = rgb2hed(rgb[..., :3])
    return _stretch(hed[..., 0]), _stretch(hed[..., 1])


def confocal_pair(rgb: np.ndarray, seed: int = 0, *, speckle_std: float = PAPER_STD,
                  dtype=np.uint16) -> ConfocalPair:
    """A seeded confocal-like pair from an H&E image (``dtype`` uint16, uint8 or float32)."""
    rng = np.random.default_rng(seed)
    h, e = stain_densities(rgb)
    fcm = np.clip(h + rng.normal(0.0, FCM_NOISE, h.shape).astype(np.float32), 0.0, 1.0)
    rcm = np.clip(add_speckle(e, speckle_std, rng), 0.0, 1.0)
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        top = np.iinfo(dtype).max
        fcm, rcm = (np.round(c * top).astype(dtype) for c in (fcm, rcm))
    else:
        fcm, rcm = fcm.astype(dtype), rcm.astype(dtype)
    he = np.asarray(rgb)[..., :3]
    if he.dtype != np.uint8:
        he = np.clip(np.round(he.astype(np.float32) * (255.0 if he.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    return ConfocalPair(fcm=fcm, rcm=rcm, rcm_clean=e, he=he)
