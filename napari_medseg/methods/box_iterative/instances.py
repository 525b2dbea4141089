"""Instances: the boundary class the network learns, and the split of its predictions.

With the instance head (the current model) the network has three classes: background,
object interior and boundary, in the spirit of the 3-class target of nuclei
segmentation (e.g. Caicedo et al. 2019). Its training target comes from the same
box-derived labels: :func:`boundary_target` assigns each foreground pixel to the box it
lies deepest in, so two objects that touch inside overlapping boxes get a wall of
boundary pixels between them. Only walls between objects are marked, not the outer rim
of every object: with boxes, where an object ends is what the rounds are still
learning (round 1 trains on filled rectangles), and a rim class taught on those labels
makes every object box-like. :func:`instances_from_classes` turns a prediction back
into instances: the interior, cut along the predicted walls (and, given the object
radius, along the valleys of its distance map), seeds objects that grow back over the
boundary pixels.

Older two-class models have no boundary class; their foreground is split by a
seeded distance watershed (:func:`split_instances`):

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
BOUNDARY = 2  # class of object-boundary pixels in the three-class target and prediction
OUTER_RIM = False  # the target marks walls between objects only (see the module's docstring)
UNKNOWN = 255


def boundary_target(labels: np.ndarray, boxes, width: int = 2, outer: bool = OUTER_RIM) -> np.ndarray:
    """The three-class training target of a label patch: 0 background, 1 interior, 2 boundary.

    ``labels``: uint8 0 / 1 / 255 (unknown, kept as it is). ``boxes``: (N, 4) rectangles
    in the patch's coordinates (they may reach past it), one per object. A foreground
    pixel belongs to the box whose centre it is closest to, in units of that box's
    half-sides; foreground in no box forms its own objects. Pixels within ``width`` of
    another object become boundary, and with ``outer`` also those within ``width`` of
    background (unknown neighbours never count).
    """
    from scipy import ndimage

    lab = np.asarray(labels)
    fg = (lab > 0) & (lab != UNKNOWN)
    out = lab.copy()
    if not fg.any():
        return out
    ids = np.zeros(lab.shape, np.int32)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    h, w = lab.shape
    if len(b):
        best = np.full(lab.shape, np.inf)
        for i, (y0, x0, y1, x1) in enumerate(b, start=1):
            ys, xs = slice(max(int(y0), 0), min(int(y1), h)), slice(max(int(x0), 0), min(int(x1), w))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            yy = (np.arange(ys.start, ys.stop)[:, None] + 0.5 - (y0 + y1) / 2) / max((y1 - y0) / 2, 0.5)
            xx = (np.arange(xs.start, xs.stop)[None, :] + 0.5 - (x0 + x1) / 2) / max((x1 - x0) / 2, 0.5)
            d = yy**2 + xx**2
            closer = (d < best[ys, xs]) & fg[ys, xs]
            best[ys, xs] = np.where(closer, d, best[ys, xs])
            ids[ys, xs] = np.where(closer, i, ids[ys, xs])
    rest, _ = ndimage.label(fg & (ids == 0), structure=np.ones((3, 3)))
    ids = np.where(rest > 0, rest + len(b), ids)
    out[rim(ids, (lab == 0) & outer, width)] = BOUNDARY
    return out


def rim(ids: np.ndarray, background: np.ndarray, width: int = 2) -> np.ndarray:
    """Mask of object pixels (``ids`` > 0) within ``width`` px of another id or of ``background``
    (pixels neither object nor background, e.g. unknown, do not count as a neighbour)."""
    from scipy import ndimage

    edge = np.zeros(ids.shape, bool)
    for axis in (0, 1):  # 4-neighbours that are background or another object
        a, k, e = (np.swapaxes(v, 0, axis) for v in (ids, background, edge))
        diff = (a[1:] != a[:-1]) & ((a[1:] > 0) | k[1:]) & ((a[:-1] > 0) | k[:-1])
        e[1:] |= diff & (a[1:] > 0)
        e[:-1] |= diff & (a[:-1] > 0)
    if width > 1:
        edge = ndimage.binary_dilation(edge, iterations=width - 1) & (ids > 0)
    return edge


def instances_from_classes(classes: np.ndarray, min_area: int = 0, radius: float | None = None) -> np.ndarray:
    """int32 instances (0 background) of a three-class prediction (0 / 1 interior / 2 boundary).

    The interior's 8-connected components are the seeds (with ``radius``, each is further
    split by :func:`split_instances`, for touching objects whose wall was not predicted);
    foreground pixels take the seed of the nearest interior pixel (a watershed of the
    distance to the seeds); foreground without a seed keeps its own component. Objects
    under ``min_area`` px are dropped.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    c = np.asarray(classes)
    if c.ndim != 2:
        raise InputError(f"Instances are split in 2-D; got a {c.ndim}-D prediction.")
    if c.size > MAX_PIXELS:
        raise InputError(f"The prediction has {c.size / 2**20:.0f} MP; instances are split for results up to "
                         f"{MAX_PIXELS // 2**20} MP (segment a region, or keep the class labels).")
    fg = (c > 0) & (c != UNKNOWN)
    if not fg.any():
        return np.zeros(c.shape, np.int32)
    interior = fg & (c == 1)
    if radius:
        seeds = split_instances(interior, radius)
    else:
        seeds, _ = ndimage.label(interior, structure=np.ones((3, 3)))
    dist = ndimage.distance_transform_edt(seeds == 0)
    return _finish(watershed(dist, seeds, mask=fg), fg, min_area, np.ones((3, 3)))


def _finish(labels: np.ndarray, fg: np.ndarray, min_area: int, structure=None) -> np.ndarray:
    """Seedless foreground keeps its own components; objects under ``min_area`` go; ids 1..N."""
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential

    rest, n_rest = ndimage.label(fg & (labels == 0), structure=structure)
    if n_rest:
        labels = np.where(rest > 0, rest + labels.max(), labels)
    if min_area > 0:
        areas = np.bincount(labels.ravel())
        small = np.flatnonzero(areas < min_area)
        labels[np.isin(labels, small[small > 0])] = 0
    return relabel_sequential(labels.astype(np.int32))[0]


def to_instances(prediction: np.ndarray, radius: float | None = None, min_area: int = 0) -> np.ndarray:
    """Instances of a prediction of either model kind: three-class (boundary present) or binary.

    A binary foreground (an older two-class model) needs ``radius`` for the distance
    watershed; without one its 8-connected components are returned."""
    from skimage.measure import label

    p = np.asarray(prediction)
    if (p == BOUNDARY).any():
        return instances_from_classes(p, min_area, radius)
    fg = (p > 0) & (p != UNKNOWN)
    if radius:
        return split_instances(fg, radius, min_area=min_area)
    return _finish(label(fg, connectivity=2).astype(np.int32), fg, min_area)


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
    # regions without a seed (thin fragments) keep their own component label
    return _finish(watershed(-dist_s, markers, mask=fg), fg, min_area)
