"""Instances from a foreground map: touching objects separated by a seeded watershed.

The network predicts object vs background; objects that touch then merge into one
component. As the field does for nuclei and glomeruli (e.g. the distance-transform
watershed of CellProfiler and of the Otsu + watershed baseline), each connected
foreground region is split along the valleys of its distance transform: seeds are the
distance maxima that are at least ``min_distance`` apart and stand out by ``h`` pixels
(h-maxima, so one elongated object is not cut at every bump), and the watershed of the
negated distance grows them back to the region. ``min_distance`` comes from the objects'
expected size: a third of the median short side of the user's boxes.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError

MAX_PIXELS = 64 * 2**20  # in-memory results only; larger slides keep their binary labels


def expected_radius(boxes) -> float:
    """Half the median short side of the boxes (pixels): the typical object radius."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(b) == 0:
        raise InputError("No boxes to estimate the object size from.")
    short = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    return float(max(np.median(short) / 2.0, 1.0))


def split_instances(foreground, radius: float, h: float | None = None, min_area: int = 0) -> np.ndarray:
    """int32 instance labels (0 background) of a 2-D foreground mask.

    ``radius``: the typical object radius in pixels (see :func:`expected_radius`); seeds
    are at least ``radius * 2 / 3`` apart, and a seed must rise ``h`` (default
    ``radius / 4``) above the saddle to its neighbour. Regions smaller than ``min_area``
    are dropped.
    """
    from scipy import ndimage
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    fg = np.asarray(foreground) > 0
    if fg.ndim != 2:
        raise InputError(f"Instances are split in 2-D; got a {fg.ndim}-D mask.")
    if fg.size > MAX_PIXELS:
        raise InputError(f"The mask has {fg.size / 2**20:.0f} MP; instances are split for results up to "
                         f"{MAX_PIXELS // 2**20} MP (segment a region, or keep the binary labels).")
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    dist = ndimage.distance_transform_edt(fg)
    h = radius / 4.0 if h is None else float(h)
    dist_s = ndimage.gaussian_filter(dist, max(radius / 8.0, 0.5))  # pixel noise on the outline makes no seed
    peaks = h_maxima(dist_s, max(h, 1e-3)) & fg
    # keep seeds at least 2/3 of a radius apart: merge close maxima into one marker
    close = ndimage.binary_dilation(peaks, iterations=max(1, int(radius / 3)))
    markers, _ = ndimage.label(close & fg)
    labels = watershed(-dist_s, markers, mask=fg)
    # regions without a seed (thin fragments) keep their own component label
    rest, n_rest = ndimage.label(fg & (labels == 0))
    if n_rest:
        labels = np.where(rest > 0, rest + labels.max(), labels)
    if min_area > 0:
        areas = np.bincount(labels.ravel())
        small = np.flatnonzero(areas < min_area)
        labels[np.isin(labels, small[small > 0])] = 0
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels.astype(np.int32))[0]
