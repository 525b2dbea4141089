"""Gareau's digital staining of confocal pairs: FCM (nuclei) as hematoxylin, RCM as eosin.

Each normalised channel tints white subtractively: ``RGB = 1 - FCM*(1-H) - RCM*(1-E)``,
clipped to [0, 1]. The default colours are the ones a public implementation of Gareau's
method uses. Channels are normalised to [0, 1] first, from the background level below an OTSU
threshold to the bright tissue above it, per slide or per tile.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError

HEMATOXYLIN = (0.30, 0.20, 1.0)
EOSIN = (1.0, 0.55, 0.88)


def check_pair(fcm, rcm) -> None:
    """One clear error for a pair that cannot be stained; nothing is changed."""
    for name, ch in (("FCM", fcm), ("RCM", rcm)):
        shape = tuple(getattr(ch, "shape", ()))
        if len(shape) == 3 and shape[-1] in (3, 4):
            raise InputError(f"The {name} image is RGB {shape}; give the single-channel {name} image.")
        if len(shape) != 2:
            raise InputError(f"The {name} image must be 2D (height, width); it has shape {shape}.")
    if tuple(fcm.shape) != tuple(rcm.shape):
        raise InputError(f"FCM {tuple(fcm.shape)} and RCM {tuple(rcm.shape)} differ in shape; give the two "
                         "modes of the same scan.")


def intensity_range(channel, *, high: float = 99.5) -> tuple[float, float]:
    """(background, bright) intensities of ``channel``: the median below its OTSU threshold
    (glass and dark background map to 0, i.e. white) and the ``high`` percentile above it
    (the brightest tissue maps to full stain)."""
    from skimage.filters import threshold_otsu

    x = np.asarray(channel, np.float64)
    if not np.isfinite(x).all():
        raise InputError("The image has NaN or infinite values; fix or mask them before staining.")
    if x.size == 0 or np.ptp(x) == 0:
        raise InputError("The image is empty or constant; there is nothing to stain.")
    t = threshold_otsu(x)
    inside, outside = x[x > t], x[x <= t]
    lo = float(np.median(outside)) if outside.size else float(x.min())
    hi = float(np.percentile(inside if inside.size >= 16 else x, high))
    if hi <= lo:
        lo, hi = float(x.min()), float(x.max())
    return lo, hi


def normalise(channel, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """``channel`` scaled to [0, 1] by ``value_range`` (default: its own, per tile)."""
    lo, hi = value_range or intensity_range(channel)
    return np.clip((np.asarray(channel, np.float32) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def gareau_stain(fcm, rcm, *, h=HEMATOXYLIN, e=EOSIN, fcm_range=None, rcm_range=None) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] from an FCM/RCM pair of any dtype and range.

    ``fcm_range``/``rcm_range``: the (low, high) intensities that map to 0 and 1, e.g.
    from :func:`intensity_range` over a whole slide (per-slide normalisation); None
    normalises this pair on its own (per-tile).
    """
    check_pair(fcm, rcm)
    f, r = normalise(fcm, fcm_range), normalise(rcm, rcm_range)
    h, e = np.asarray(h, np.float32), np.asarray(e, np.float32)
    rgb = 1.0 - f[..., None] * (1.0 - h) - r[..., None] * (1.0 - e)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)
