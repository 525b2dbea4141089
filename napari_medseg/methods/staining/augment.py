"""The variation real tissue has, for training the despeckler (issue 22).

The paper trains on one H&E source at one speckle level. A despeckler that has to serve
other labs' slides sees other stains, other scanners, other magnifications and other
speckle, so each training image is redrawn with:

- **stain variation**: colour deconvolution into haematoxylin, eosin and DAB
  (scikit-image's ``rgb2hed``), each concentration scaled and shifted at random, then
  recomposed (``hed2rgb``), as stain augmentation does in computational pathology;
- **scanner variation**: a random magnification (rescale 0.6–1.4) and a gamma on the
  inverted luma;
- **reflectance-like images**: an RCM image is bright structure on a dark background,
  unlike the inverted luma of H&E, which is bright wherever there is tissue; part of the
  draws are the eosin or haematoxylin density instead (:func:`.confocal.stain_densities`,
  what the pipeline's confocal-like pairs are made of), so the despeckler also serves
  sparse, dark images;
- **speckle correlation**: real RCM speckle is correlated over about the point-spread
  function; half of the draws smooth the unit noise with a Gaussian of random width and
  rescale it back to unit variance before it multiplies the image.
"""

from __future__ import annotations

import numpy as np

from .speckle import inverted_luma

STAIN_SCALE, STAIN_SHIFT = 0.25, 0.03  # HED concentration: x (1 + U(-s, s)) + U(-b, b)
ZOOM = (0.6, 1.4)
GAMMA = (0.75, 1.35)
CORRELATION = (0.4, 1.2)  # Gaussian sigma (px) of correlated speckle
CORRELATED_FRACTION = 0.5
WINDOW = 640  # each redraw works on a window of this many pixels (before zoom), to stay cheap
KINDS, KIND_P = ("luma", "eosin", "hematoxylin"), (0.5, 0.3, 0.2)


def stain_jitter(rgb: np.ndarray, rng) -> np.ndarray:
    """RGB in [0, 1] with its H, E and DAB concentrations rescaled and shifted at random."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(np.clip(rgb, 1e-3, 1.0))
    scale = 1.0 + rng.uniform(-STAIN_SCALE, STAIN_SCALE, 3)
    shift = rng.uniform(-STAIN_SHIFT, STAIN_SHIFT, 3)
    return np.clip(hed2rgb(hed * scale + shift), 0.0, 1.0).astype(np.float32)


def redraw(rgb: np.ndarray, rng, window: int = WINDOW) -> np.ndarray:
    """One augmented image in [0, 1] (inverted luma, or a stain density) from a random
    window of an RGB image (uint8 or [0, 1])."""
    from skimage.transform import rescale

    h, w = rgb.shape[:2]
    wh, ww = min(window, h), min(window, w)
    y0, x0 = rng.integers(0, h - wh + 1), rng.integers(0, w - ww + 1)
    x = np.asarray(rgb[y0: y0 + wh, x0: x0 + ww, :3], np.float32)
    if rgb.dtype == np.uint8:
        x = x / 255.0
    x = stain_jitter(x, rng)
    zoom = rng.uniform(*ZOOM)
    x = rescale(x, zoom, channel_axis=-1, anti_aliasing=zoom < 1, order=1).astype(np.float32)
    kind = KINDS[rng.choice(len(KINDS), p=KIND_P)]
    if kind == "luma":
        y = inverted_luma(x)
    else:
        from .confocal import stain_densities

        y = stain_densities(x)[0 if kind == "hematoxylin" else 1]
    return np.clip(y ** rng.uniform(*GAMMA), 0.0, 1.0).astype(np.float32)


def pool(rgb_images, n: int, rng, min_side: int = 64) -> list[np.ndarray]:
    """``n`` redrawn images (each at least ``min_side`` on a side)."""
    out = []
    while len(out) < n:
        y = redraw(rgb_images[rng.integers(len(rgb_images))], rng)
        if min(y.shape) >= min_side:
            out.append(y)
    return out


def unit_noise(shape, rng, correlated_fraction: float = CORRELATED_FRACTION) -> np.ndarray:
    """Standard normal noise per image of a (B, 1, H, W) batch; a ``correlated_fraction`` of
    the images get it smoothed (random sigma in :data:`CORRELATION`) and rescaled to unit std."""
    from scipy.ndimage import gaussian_filter

    noise = rng.standard_normal(shape).astype(np.float32)
    for i in range(shape[0]):
        if rng.random() < correlated_fraction:
            n = gaussian_filter(noise[i, 0], rng.uniform(*CORRELATION), mode="reflect")
            noise[i, 0] = n / max(float(n.std()), 1e-6)
    return noise
