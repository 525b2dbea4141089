"""Cues 1 and Cues 2 (Gupta et al. 2019): turn a round's segmentation into the next round's labels.

Slides may be numpy or zarr arrays, never read whole: Stage 1 works box by box, the rest block by block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import numpy as np
from skimage.measure import label, regionprops

from ...core.errors import InputError
from .boxes import box_prior_mask, paint_prior
from .labels import BACKGROUND, GLOMERULUS, UNKNOWN

BLOCK = 4096
MARGIN = 512
REASONS = ("too_small", "too_large", "too_round", "too_eccentric")


def foreground(a) -> np.ndarray:
    """Foreground of a label block: anything > 0 that is not UNKNOWN."""
    return (np.asarray(a) > 0) & (np.asarray(a) != UNKNOWN)


def blocks(shape, block: int = BLOCK) -> Iterator[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of the blocks tiling an (H, W) image, row by row."""
    for y in range(0, shape[0], block):
        for x in range(0, shape[1], block):
            yield y, x, min(y + block, shape[0]), min(x + block, shape[1])


def clear(out, value: int = BACKGROUND, block: int = BLOCK) -> None:
    """Set every pixel of ``out`` to ``value``; block by block unless it is numpy."""
    for y0, x0, y1, x1 in [(0, 0, *out.shape)] if isinstance(out, np.ndarray) else blocks(out.shape, block):
        out[y0:y1, x0:x1] = value


def _shape(a) -> tuple:
    return tuple(getattr(a, "shape", np.shape(a)))


def _check(prediction, out, fixed, block: int, margin: int = 1) -> tuple[int, int]:
    """Shape of the segmentation, after checking it, ``out``, ``fixed``, ``block`` and ``margin``."""
    shape = _shape(prediction)
    if len(shape) != 2 or 0 in shape:
        raise InputError(f"The segmentation must be a non-empty 2-D (H, W) array, not one of shape {shape}.")
    if out is not None and (_shape(out) != shape or np.dtype(getattr(out, "dtype", None)) != np.uint8):
        raise InputError(f"The output labels must be a uint8 array of shape {shape}.")
    if fixed is not None and (not isinstance(fixed, (tuple, list)) or [_shape(a) for a in fixed] != [shape] * 2):
        raise InputError(f"The corrections must be a pair (fixed_mask, fixed_labels) of arrays of shape {shape}.")
    if block < 1 or margin < 1:
        raise InputError(f"Block ({block}) and margin ({margin}) must be at least one pixel.")
    return shape


def _fix_block(out, fixed, y0, x0, y1, x1) -> int:
    """Write the user's fixed labels into one block of ``out``; return how many pixels are fixed."""
    if fixed is None:
        return 0
    m = np.asarray(fixed[0][y0:y1, x0:x1]).astype(bool)
    if m.any():
        o = np.array(out[y0:y1, x0:x1])
        o[m] = np.asarray(fixed[1][y0:y1, x0:x1])[m]
        out[y0:y1, x0:x1] = o
    return int(m.sum())


def check_boxes(boxes, shape) -> np.ndarray:
    """Boxes as int64 (N, 4) ``[y0, x0, y1, x1]``, clipped to the image; bad boxes raise InputError."""
    b = np.asarray(boxes)
    if b.size == 0:
        return np.zeros((0, 4), np.int64)
    if b.ndim != 2 or b.shape[1] != 4 or not np.all(np.isfinite(b)) or np.any(b != np.round(b)):
        raise InputError("Boxes must be an (N, 4) array of whole-pixel [y0, x0, y1, x1] corners.")
    for i, (y0, x0, y1, x1) in enumerate(b.astype(np.int64)):
        if y1 <= y0 or x1 <= x0:
            raise InputError(f"Box {i} {[y0, x0, y1, x1]} is empty: y1 must exceed y0 and x1 must exceed x0.")
        if y1 <= 0 or x1 <= 0 or y0 >= shape[0] or x0 >= shape[1]:
            raise InputError(f"Box {i} {[y0, x0, y1, x1]} lies outside the image {tuple(shape)}.")
    return np.clip(b.astype(np.int64), 0, [shape[0], shape[1], shape[0], shape[1]])


def _in_boxes(boxes, y0, x0, y1, x1) -> np.ndarray:
    """Mask of the block (y0, x0, y1, x1) that lies inside any box."""
    m = np.zeros((y1 - y0, x1 - x0), bool)
    hit = (boxes[:, 0] < y1) & (boxes[:, 2] > y0) & (boxes[:, 1] < x1) & (boxes[:, 3] > x0)
    for by0, bx0, by1, bx1 in boxes[hit]:
        m[max(by0 - y0, 0):by1 - y0, max(bx0 - x0, 0):bx1 - x0] = True
    return m


@dataclass
class Cues1Report:
    """What Cues 1 did to one slide; ``coverage`` is each box's foreground fraction."""

    n_boxes: int
    n_missed: int
    n_under_covered: int
    n_kept: int
    fp_pixels_removed: int
    n_fixed_pixels: int
    coverage: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {**asdict(self), "coverage": [float(c) for c in self.coverage]}


def cues_stage1(prediction, boxes, out, *, fixed=None, coverage: float = 0.5, block: int = BLOCK,
                prior: str = "box") -> Cues1Report:
    """Write the next Stage-1 training labels into ``out`` from ``prediction`` and the boxes (Cues 1).

    Inside a box the label is the predicted foreground (clipped to the box), or the filled box if
    it has no foreground (missed) or foreground covering less than ``coverage`` of it (with
    ``prior="ellipse"``: the ellipse inscribed in the box, its corners unknown). Foreground
    outside every box becomes background. Overlapping boxes are judged alone, their labels united.
    Where ``fixed = (fixed_mask, fixed_labels)`` has its mask set, ``out`` gets ``fixed_labels``.
    """
    box_prior_mask(1, 1, prior)  # an unknown prior: refused before anything is written
    shape = _check(prediction, out, fixed, block)
    boxes = check_boxes(boxes, shape)
    if not 0 < coverage <= 1:
        raise InputError(f"The coverage threshold must lie in (0, 1], not {coverage}.")
    clear(out, BACKGROUND, block)
    cover = np.zeros(len(boxes))
    missed = under = 0
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        fg = foreground(prediction[y0:y1, x0:x1])
        cover[i] = fg.mean()
        missed += bool(cover[i] == 0)
        under += bool(0 < cover[i] < coverage)
        o = np.array(out[y0:y1, x0:x1])
        if cover[i] < coverage:
            paint_prior(o, prior)
        else:
            o[fg] = GLOMERULUS
        out[y0:y1, x0:x1] = o
    fp = n_fixed = 0
    for y0, x0, y1, x1 in blocks(shape, block):
        fg = foreground(prediction[y0:y1, x0:x1]) & ~_in_boxes(boxes, y0, x0, y1, x1)
        if fixed is not None:
            fg &= ~np.asarray(fixed[0][y0:y1, x0:x1]).astype(bool)
        fp += int(fg.sum())
        n_fixed += _fix_block(out, fixed, y0, x0, y1, x1)
    return Cues1Report(len(boxes), missed, under, len(boxes) - missed - under, fp, n_fixed, cover)


@dataclass(frozen=True)
class ObjectProps:
    """One connected object: bbox ``(y0, x0, y1, x1)`` and centroid in slide coordinates, mask within bbox."""

    bbox: tuple[int, int, int, int]
    area: int
    eccentricity: float
    centroid: tuple[float, float]
    mask: np.ndarray = field(repr=False, compare=False)


def _objects(window: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Object ids of a prediction window: instances of a three-class prediction (touching
    objects apart), else the 8-connected components of its foreground."""
    from .instances import BOUNDARY, instances_from_classes

    if (window == BOUNDARY).any():
        return instances_from_classes(np.where(window == UNKNOWN, 0, window))
    return label(fg, connectivity=2)


def _scan(prediction, block: int, margin: int, min_area: int, large: str) -> Iterator[ObjectProps | tuple]:
    """Each foreground object once; an object wider or taller than ``margin``: raise, skip or its bbox tuple.

    A block is labelled with ``margin`` pixels of context on all sides; an object belongs to the block
    holding its bbox's top-left corner. From there, an object no taller and no wider than ``margin``
    cannot reach the window's edge, so it is seen whole; a part that reaches the edge is itself oversized.
    """
    h, w = _shape(prediction)
    for cy0, cx0, cy1, cx1 in blocks((h, w), block):
        wy0, wx0, wy1, wx1 = max(cy0 - margin, 0), max(cx0 - margin, 0), min(cy1 + margin, h), min(cx1 + margin, w)
        window = np.asarray(prediction[wy0:wy1, wx0:wx1])
        fg = foreground(window)
        if not fg.any():
            continue
        for r in regionprops(_objects(window, fg)):
            y0, x0, y1, x1 = r.bbox
            box = (y0 + wy0, x0 + wx0, y1 + wy0, x1 + wx0)
            if not (cy0 <= box[0] < cy1 and cx0 <= box[1] < cx1):
                continue
            big = y1 - y0 > margin or x1 - x0 > margin  # also true of any part cut by the window's edge
            if big and large == "raise":
                raise InputError(f"An object at {list(box)} exceeds the margin of {margin} pixels; widen the margin.")
            if big and large == "report":
                yield box
            elif not big and r.area >= min_area:
                cy, cx = r.centroid
                yield ObjectProps(box, int(r.area), float(r.eccentricity), (cy + wy0, cx + wx0), r.image)


def objects(prediction, *, block: int = BLOCK, margin: int = MARGIN, min_area: int = 1,
            large: str = "raise") -> Iterator[ObjectProps]:
    """Iterate over the 8-connected foreground objects of a slide, block by block, each exactly once.

    Objects wider or taller than ``margin`` are never yielded: meeting one raises InputError (``large="raise"``)
    or is passed over (``"skip"``). Objects under ``min_area`` pixels are left out. ``block`` changes nothing.
    """
    _check(prediction, None, None, block, margin)
    if large not in ("raise", "skip"):
        raise InputError(f"large must be 'raise' or 'skip', not {large!r}.")
    return _scan(prediction, block, margin, min_area, large)


@dataclass(frozen=True)
class Cues2:
    """Cues 2: the 2.5th-97.5th percentile ranges of object area and eccentricity on Stage-1 slides."""

    area_range: tuple[float, float]
    eccentricity_range: tuple[float, float]
    n_objects: int

    def reasons(self, area: float, eccentricity: float) -> list[str]:
        """Why an object is an outlier (empty list: it lies within both ranges, ends included)."""
        (a0, a1), (e0, e1) = self.area_range, self.eccentricity_range
        why = (area < a0, area > a1, eccentricity < e0, eccentricity > e1)
        return [r for r, w in zip(REASONS, why) if w]

    def as_dict(self) -> dict:
        return {"area_range": [float(v) for v in self.area_range],
                "eccentricity_range": [float(v) for v in self.eccentricity_range], "n_objects": int(self.n_objects)}

    @classmethod
    def from_dict(cls, d: dict) -> "Cues2":
        try:
            (a0, a1), (e0, e1) = ([float(v) for v in d[k]] for k in ("area_range", "eccentricity_range"))
            if a0 <= a1 and e0 <= e1:
                return cls((a0, a1), (e0, e1), int(d["n_objects"]))
        except (KeyError, TypeError, ValueError):
            pass
        raise InputError("The stored Cues 2 statistics are malformed (need area_range, eccentricity_range, n_objects).")


def shape_statistics(object_props: Iterable[ObjectProps], *, min_objects: int = 5) -> Cues2:
    """Cues 2 from the Stage-1 segmentations' objects: 2.5th and 97.5th percentiles of area and eccentricity."""
    props = list(object_props)
    if len(props) < min_objects:
        raise InputError(f"Only {len(props)} objects: too few to estimate the size and shape of a glomerulus; "
                         f"Stage 2 needs at least {min_objects} segmented on the Stage-1 slides.")
    a0, a1 = np.percentile([p.area for p in props], [2.5, 97.5])
    e0, e1 = np.percentile([p.eccentricity for p in props], [2.5, 97.5])
    return Cues2((float(a0), float(a1)), (float(e0), float(e1)), len(props))


@dataclass
class Cues2Report:
    """What Cues 2 did to one slide. ``reasons``: outliers per reason (one may have several); "oversized":
    objects wider or taller than the margin (outliers too), a rough count (one may be met in several blocks)."""

    n_objects: int
    n_kept: int
    n_outliers: int
    reasons: dict
    n_fixed_pixels: int
    outliers: str
    kept_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64), repr=False)

    def as_dict(self) -> dict:  # the kept objects' boxes stay out of the record (there may be thousands)
        return {k: v for k, v in asdict(self).items() if k != "kept_boxes"}


def cues_stage2(prediction, stats: Cues2, out, *, outliers: str = "unknown", fixed=None,
                block: int = BLOCK, margin: int = MARGIN) -> Cues2Report:
    """Write the next Stage-2 training labels into ``out``: keep the objects within the Cues 2 ranges.

    Objects with area and eccentricity within ``stats``' ranges become GLOMERULUS; the others (and those
    wider or taller than ``margin``) UNKNOWN (``outliers="unknown"``: ignored by the loss) or BACKGROUND
    (``"background"``, the paper's reading); the rest is background. ``fixed`` as in ``cues_stage1``.
    """
    shape = _check(prediction, out, fixed, block, margin)
    if not isinstance(stats, Cues2):
        raise InputError("Stage 2 needs the Cues 2 statistics (a Cues2) from the Stage-1 slides.")
    if outliers not in ("unknown", "background"):
        raise InputError(f"outliers must be 'unknown' or 'background', not {outliers!r}.")
    rest = UNKNOWN if outliers == "unknown" else BACKGROUND
    for y0, x0, y1, x1 in blocks(shape, block):
        out[y0:y1, x0:x1] = np.where(foreground(prediction[y0:y1, x0:x1]), rest, BACKGROUND).astype(np.uint8)
    counts = dict.fromkeys((*REASONS, "oversized"), 0)
    n = kept = 0
    boxes = []
    for n, o in enumerate(_scan(prediction, block, margin, 1, "report"), 1):
        why = stats.reasons(o.area, o.eccentricity) if isinstance(o, ObjectProps) else ["oversized"]
        counts.update({r: counts[r] + 1 for r in why})
        if not why:
            kept += 1
            y0, x0, y1, x1 = o.bbox
            boxes.append(o.bbox)
            b = np.array(out[y0:y1, x0:x1])
            b[o.mask] = GLOMERULUS
            out[y0:y1, x0:x1] = b
    n_fixed = sum(_fix_block(out, fixed, *b) for b in blocks(shape, block))
    return Cues2Report(n, kept, n - kept, counts, n_fixed, outliers, np.array(boxes, np.int64).reshape(-1, 4))


def fixed_from_correction(original, corrected) -> tuple[np.ndarray, np.ndarray]:
    """``(fixed_mask, fixed_labels)`` from a round's prediction and the user's corrected version.

    Fixed are every changed pixel and every object of ``corrected`` or ``original`` holding one (a trimmed
    or removed object is fixed in full). ``fixed_labels`` is ``corrected`` as BACKGROUND/GLOMERULUS/UNKNOWN.
    """
    original, corrected = np.asarray(original), np.asarray(corrected)
    if original.shape != corrected.shape:
        raise InputError(f"The corrected labels {corrected.shape} do not match the prediction {original.shape}.")
    before, after = (np.where(a == UNKNOWN, UNKNOWN, np.where(a > 0, GLOMERULUS, BACKGROUND)).astype(np.uint8)
                     for a in (original, corrected))
    changed = before != after
    mask = changed.copy()
    for lab in (label(after == GLOMERULUS, connectivity=2), label(before == GLOMERULUS, connectivity=2)):
        touched = np.unique(lab[changed])
        mask |= np.isin(lab, touched[touched > 0])
    return mask, after
