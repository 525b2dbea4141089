"""Seeded synthetic H&E-like slides with a known tissue mask.

Tissue pieces come from smoothed random fields; inside them an eosin-pink stroma with
hematoxylin-purple nuclei, with pale (low-contrast) regions; outside, uneven glass
with dust specks and a faint pen stroke, so a fixed threshold is not enough.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

EOSIN = np.array([226, 150, 196], np.float32)
HEMATOXYLIN = np.array([92, 60, 150], np.float32)
GLASS = np.array([238, 236, 240], np.float32)


def _smooth_field(rng, shape, sigma):
    small = tuple(max(4, int(s / sigma)) for s in shape)
    field = ndi.gaussian_filter(rng.standard_normal(small), 1.5)
    zoom = [s / t for s, t in zip(shape, small)]
    out = ndi.zoom(field, zoom, order=3)[: shape[0], : shape[1]]
    return (out - out.mean()) / (out.std() + 1e-6)


def synthetic_slide(shape=(1024, 1024), seed: int = 0, tissue_fraction: float = 0.45, faded: float = 0.0):
    """Return ``(rgb uint8 (H, W, 3), tissue mask uint8 (H, W))``.

    ``faded`` (0-1) bleaches the stain in about half of the tissue, as a weakly
    stained section from another lab would look: the domain shift that correcting
    and retraining has to fix.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    field = _smooth_field(rng, shape, sigma=max(h, w) / 6)
    thr = np.quantile(field, 1 - tissue_fraction)
    mask = field > thr
    mask = ndi.binary_opening(mask, iterations=2)
    # stroma texture, pale regions and nuclei
    stroma = 0.7 + 0.2 * _smooth_field(rng, shape, sigma=24)
    pale = np.clip(_smooth_field(rng, shape, sigma=max(h, w) / 5), -1, 1) * 0.25 + 0.25
    density = np.clip(stroma - pale, 0.2, 1.0)
    if faded > 0:
        region = np.clip(_smooth_field(rng, shape, sigma=max(h, w) / 4) * 2 + 0.5, 0, 1)
        density = density * (1 - faded * region)
    img = GLASS[None, None] * (1 - density[..., None]) + EOSIN[None, None] * density[..., None]
    nuclei = np.zeros(shape, np.float32)
    n = int(mask.sum() / 180)
    ys, xs = np.nonzero(mask)
    if n and len(ys):
        pick = rng.integers(0, len(ys), n)
        nuclei[ys[pick], xs[pick]] = 1.0
        nuclei = np.clip(ndi.gaussian_filter(nuclei, 2.2) * 25, 0, 1)
        if faded > 0:
            nuclei = nuclei * (1 - faded * region)
    img = img * (1 - nuclei[..., None]) + HEMATOXYLIN[None, None] * nuclei[..., None]
    # glass: uneven illumination, dust, a pen stroke
    glass = GLASS[None, None] * (1 + 0.03 * _smooth_field(rng, shape, sigma=max(h, w) / 3))[..., None]
    dust = ndi.gaussian_filter((rng.random(shape) > 0.9996).astype(np.float32), 1.2) * 30
    glass = glass - dust[..., None] * np.array([1.0, 1.0, 0.8], np.float32)
    yy = np.arange(h)[:, None]
    xx = np.arange(w)[None, :]
    pen_y = h * (0.1 + 0.8 * rng.random()) + 0.15 * (xx - w / 2)
    pen = np.exp(-((yy - pen_y) ** 2) / (2 * (3 + h / 300) ** 2)) * (np.abs(xx - w * 0.5) < w * 0.3)
    glass = glass * (1 - 0.25 * pen[..., None]) + np.array([60, 120, 90], np.float32) * 0.25 * pen[..., None]
    edge = ndi.gaussian_filter(mask.astype(np.float32), 1.0)[..., None]
    rgb = img * edge + glass * (1 - edge)
    rgb += rng.normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), mask.astype(np.uint8)
