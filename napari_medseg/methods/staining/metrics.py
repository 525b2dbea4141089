"""Staining metrics: structure kept (SSIM) and colour-distribution distance to true H&E.

The colour distance is the mean over the three CIELAB channels of the 1D Wasserstein
(earth mover's) distance between the output's and the reference's pixel distributions,
in Lab units (about 2.3 is a just-noticeable difference). It compares the colours an
image holds, not where it holds them: it is small when a digital stain has the palette
of real H&E, whatever the structure; SSIM covers the structure.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError

MAX_PIXELS = 250_000  # pixels drawn per image for the colour distance


def _unit_rgb(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise InputError(f"Expected an RGB image (height, width, 3); got shape {rgb.shape}.")
    x = rgb[..., :3].astype(np.float32)
    return x / 255.0 if rgb.dtype == np.uint8 else x


def color_distance(output, reference, seed: int = 0) -> float:
    """Mean per-channel Wasserstein distance between the Lab colour distributions."""
    from scipy.stats import wasserstein_distance
    from skimage.color import rgb2lab

    a, b = (rgb2lab(np.clip(_unit_rgb(x), 0, 1)).reshape(-1, 3) for x in (output, reference))
    rng = np.random.default_rng(seed)
    a = a[rng.choice(len(a), min(len(a), MAX_PIXELS), replace=False)]
    b = b[rng.choice(len(b), min(len(b), MAX_PIXELS), replace=False)]
    return float(np.mean([wasserstein_distance(a[:, c], b[:, c]) for c in range(3)]))


def ssim_rgb(output, reference) -> float:
    """SSIM over the three RGB channels, data range 1."""
    from skimage.metrics import structural_similarity

    a, b = _unit_rgb(output), _unit_rgb(reference)
    if a.shape != b.shape:
        raise InputError(f"Output {a.shape} and reference {b.shape} differ in shape.")
    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))
