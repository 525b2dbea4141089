"""Bounding boxes (BBs): read from a napari Shapes layer, checked, and turned into labels.

A box is ``[y0, x0, y1, x1]`` in pixels, half-open (``y1`` is one past the last row),
the minimum rectangle enclosing one glomerulus. Indices in messages and in
``BoxSet.overlaps / duplicates / clipped`` are positions in the user's Shapes layer,
counted from 0. Nothing here imports Qt or napari.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ...core.errors import InputError
from .labels import BACKGROUND, GLOMERULUS, UNKNOWN

_EPS = 1e-6  # float noise allowed before floor/ceil moves a box edge by a pixel
_MAX_NAMED = 10  # indices named in one message before "and N more"


@dataclass
class BoxSet:
    """Checked boxes and what was done to get them (see :func:`boxes_from_shapes`)."""

    boxes: np.ndarray  # (N, 4) int64, [y0, x0, y1, x1], half-open
    source_index: list[int]  # layer index of each kept box
    overlaps: list[tuple[int, int]] = field(default_factory=list)  # layer index pairs
    duplicates: list[int] = field(default_factory=list)  # layer indices removed
    clipped: list[int] = field(default_factory=list)  # layer indices cut at the border

    def __len__(self) -> int:
        return int(len(self.boxes))

    def describe(self) -> str:
        """One sentence for the researcher: how many boxes, overlaps, duplicates, clipping."""
        n = len(self)
        parts = [f"{n} box{'es' if n != 1 else ''}"]
        if self.overlaps:
            if len(self.overlaps) == 1:
                head = "boxes {} and {} overlap".format(*self.overlaps[0])
            else:
                pairs = ", ".join(f"{a} and {b}" for a, b in self.overlaps[:_MAX_NAMED])
                more = len(self.overlaps) - _MAX_NAMED
                pairs += f", and {more} more" if more > 0 else ""
                head = f"{len(self.overlaps)} pairs of boxes overlap ({pairs})"
            parts.append(head + ": their labels are united, and each still counts as its own object")
        if self.duplicates:
            k = len(self.duplicates)
            parts.append(f"{k} exact duplicate{'s' if k != 1 else ''} removed ({_names(self.duplicates, 'box', 'boxes')})")
        if self.clipped:
            parts.append(f"{_names(self.clipped, 'box', 'boxes')} clipped at the image border")
        if len(parts) == 1:
            parts[0] += ", none overlapping"
        return "; ".join(parts) + "."


def _join(items) -> str:
    """'3', '3 and 7', '1, 2 and 5', '1, 2, ... and 4 more' (at most 10 named)."""
    items = [str(i) for i in items]
    if len(items) > _MAX_NAMED:
        return f"{', '.join(items[:_MAX_NAMED])} and {len(items) - _MAX_NAMED} more"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _names(indices, one: str = "Shape", many: str = "Shapes") -> str:
    """'Shape 3', 'Shapes 3 and 7', 'Shapes 1, 2 and 5'."""
    indices = [int(i) for i in indices]
    return f"{one if len(indices) == 1 else many} {_join(indices)}"


def _verb(indices, singular: str, plural: str) -> str:
    return singular if len(indices) == 1 else plural


def _it(indices) -> str:
    return "it" if len(indices) == 1 else "them"


def _check_types(shape_types, n: int) -> list[str]:
    if isinstance(shape_types, str):
        shape_types = [shape_types] * n
    types = [str(t).lower() for t in shape_types]
    if len(types) != n:
        raise InputError(
            f"Got {n} shapes but {len(types)} shape types; pass the layer's data and shape_type together."
        )
    bad = [i for i, t in enumerate(types) if t != "rectangle"]
    if bad:
        kinds = sorted({types[i] for i in bad})
        if len(bad) == 1:
            what = f"is {'an' if kinds[0][:1] in 'aeiou' else 'a'} {kinds[0]}, not a rectangle"
        else:
            what = f"are {' or '.join(k + 's' for k in kinds)}, not rectangles"
        raise InputError(
            f"{_names(bad)} {what}; box-supervised training takes rectangles only. "
            f"Delete {_it(bad)} or move {_it(bad)} to another Shapes layer."
        )
    return types


def _corners(data) -> np.ndarray:
    """(N, 4, 2) float64 copies of the vertices, last two columns (row, col)."""
    out = []
    bad = []
    for i, verts in enumerate(data):
        try:
            v = np.array(verts, dtype=np.float64, copy=True)
        except (TypeError, ValueError):
            v = np.empty((0, 0))
        if v.ndim != 2 or v.shape[0] != 4 or v.shape[1] < 2 or not np.isfinite(v).all():
            bad.append(i)
            continue
        out.append(v[:, -2:])
    if bad:
        raise InputError(
            f"{_names(bad)} {_verb(bad, 'does', 'do')} not have 4 finite corner points; "
            f"redraw {_it(bad)} with the rectangle tool."
        )
    return np.stack(out)


def _rotated(corners: np.ndarray) -> list[int]:
    """Indices of rectangles whose edges are not parallel to the image axes."""
    lo, hi = corners.min(axis=1), corners.max(axis=1)  # (N, 2)
    tol = 1e-3 * np.maximum(1.0, (hi - lo).max(axis=1))[:, None, None]
    at_lo = np.abs(corners - lo[:, None]) <= tol
    at_hi = np.abs(corners - hi[:, None]) <= tol
    on_edge = (at_lo | at_hi).all(axis=(1, 2))
    # the four corners must be the four (top/bottom, left/right) combinations
    code = at_hi[..., 0].astype(int) * 2 + at_hi[..., 1].astype(int)
    four = np.array([len(set(c)) == 4 for c in code.tolist()])
    flat = ((hi - lo) <= tol[:, 0]).any(axis=1)  # too thin to tell: checked as zero-area
    return [int(i) for i in np.nonzero(~on_edge | (~four & ~flat))[0]]


def boxes_from_shapes(data, shape_types, image_shape, *, clip: bool = False) -> BoxSet:
    """Check the rectangles of a napari Shapes layer and return them as integer boxes.

    ``data``: the layer's list of (4, D) vertex arrays in image (row, col) coordinates
    (the last two columns are used). ``shape_types``: the layer's ``shape_type`` list.
    ``image_shape``: (H, W). Box edges: floor of the smallest and ceil of the largest
    vertex coordinate. Boxes reaching past the border raise :class:`InputError` unless
    ``clip`` is True. Overlaps are kept and reported; exact duplicates are dropped.
    """
    data = list(data) if data is not None else []
    if len(image_shape) != 2:
        raise InputError(f"image_shape must be (height, width), got {tuple(image_shape)}.")
    height, width = (int(s) for s in image_shape)
    if not data:
        raise InputError("The box layer has no rectangles: draw at least one box around a glomerulus.")
    _check_types(shape_types, len(data))
    corners = _corners(data)
    rotated = _rotated(corners)
    if rotated:
        raise InputError(
            f"{_names(rotated)} {_verb(rotated, 'is', 'are')} rotated or skewed; "
            f"boxes must have edges parallel to the image axes. Redraw {_it(rotated)} without rotating."
        )
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    thin = [int(i) for i in np.nonzero(((hi - lo) < 1.0).any(axis=1))[0]]
    if thin:
        raise InputError(
            f"{_names(thin)} {_verb(thin, 'has', 'have')} no area (less than 1 pixel tall or wide); "
            f"delete {_it(thin)} or redraw {_it(thin)} around a glomerulus."
        )
    boxes = np.concatenate([np.floor(lo + _EPS), np.ceil(hi - _EPS)], axis=1).astype(np.int64)
    y0, x0, y1, x1 = boxes.T
    outside = (y1 <= 0) | (x1 <= 0) | (y0 >= height) | (x0 >= width)
    if outside.any():
        idx = np.nonzero(outside)[0]
        raise InputError(
            f"{_names(idx, 'Box', 'Boxes')} {_verb(idx, 'lies', 'lie')} wholly outside the "
            f"{height} x {width} image; delete {_it(idx)} or move {_it(idx)} onto the image."
        )
    past = np.stack([-y0, -x0, y1 - height, x1 - width], axis=1).clip(0).max(axis=1)
    crossing = np.nonzero(past > 0)[0]
    clipped: list[int] = []
    if crossing.size:
        if not clip:
            amounts = [int(p) for p in past[crossing]]
            unit = "pixel" if amounts == [1] else "pixels"
            raise InputError(
                f"{_names(crossing, 'Box', 'Boxes')} {_verb(crossing, 'reaches', 'reach')} past the image "
                f"border (by {_join(amounts)} {unit}); "
                f"move {_it(crossing)} inside the image, or let {_it(crossing)} be clipped at the border "
                "(clip=True)."
            )
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, height)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, width)
        clipped = [int(i) for i in crossing]
    # exact duplicates: keep the first of each
    _, first = np.unique(boxes, axis=0, return_index=True)
    keep_mask = np.zeros(len(boxes), bool)
    keep_mask[first] = True
    duplicates = [int(i) for i in np.nonzero(~keep_mask)[0]]
    source = [int(i) for i in np.nonzero(keep_mask)[0]]
    kept = boxes[keep_mask]
    pairs = overlapping_pairs(kept)
    overlaps = [(source[a], source[b]) for a, b in pairs]
    return BoxSet(kept, source, overlaps, duplicates, clipped)


def overlapping_pairs(boxes) -> list[tuple[int, int]]:
    """Index pairs (i < j) of half-open boxes whose intersection has positive area."""
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    out: list[tuple[int, int]] = []
    step = 1024  # rows compared at once, so memory stays small for many boxes
    for s in range(0, len(b), step):
        a = b[s : s + step, None]
        hit = (
            (np.maximum(a[..., 0], b[:, 0]) < np.minimum(a[..., 2], b[:, 2]))
            & (np.maximum(a[..., 1], b[:, 1]) < np.minimum(a[..., 3], b[:, 3]))
        )
        i, j = np.nonzero(hit)
        i = i + s
        out.extend((int(p), int(q)) for p, q in zip(i, j) if p < q)
    return sorted(out)


def boxes_from_instances(instances) -> np.ndarray:
    """(N, 4) int64 half-open minimum rectangles of labels 1..max, in label order.

    Label values that do not occur are skipped; 0 is background.
    """
    lab = np.asarray(instances)
    if lab.ndim != 2:
        raise InputError(f"Instance labels must be a 2-D image, got shape {lab.shape}.")
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if lab.dtype.kind not in "iu":
        raise InputError(f"Instance labels must be integers, got {lab.dtype}; round or cast them first.")
    if lab.size and lab.min() < 0:
        raise InputError("Instance labels must not be negative; 0 is background, 1, 2, ... are objects.")
    rows = [
        (s[0].start, s[1].start, s[0].stop, s[1].stop)
        for s in ndi.find_objects(lab)
        if s is not None
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def boxes_to_shapes(boxes) -> list[np.ndarray]:
    """(4, 2) float corner arrays, (y0,x0) (y0,x1) (y1,x1) (y1,x0), for a napari Shapes layer.

    ``boxes_from_shapes`` on the result gives back the same boxes.
    """
    b = np.asarray(getattr(boxes, "boxes", boxes), dtype=np.int64).reshape(-1, 4)
    return [
        np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=np.float64)
        for y0, x0, y1, x1 in b.tolist()
    ]


BOX_PRIORS = ("box", "ellipse")


def box_prior_mask(h: int, w: int, prior: str = "box") -> np.ndarray:
    """What an ``h`` × ``w`` box stands for: all of it ("box"), or the ellipse inscribed in
    it ("ellipse": the pixels whose centres lie inside it)."""
    if prior not in BOX_PRIORS:
        raise InputError(f"The box prior must be one of {list(BOX_PRIORS)}, not {prior!r}.")
    if prior == "box":
        return np.ones((h, w), bool)
    yy = (np.arange(h) + 0.5 - h / 2) / (h / 2)
    xx = (np.arange(w) + 0.5 - w / 2) / (w / 2)
    return yy[:, None] ** 2 + xx[None, :] ** 2 <= 1.0


def paint_prior(window: np.ndarray, prior: str) -> None:
    """Label one box's window (a view) with its prior: GLOMERULUS where the prior holds, the
    rest UNKNOWN unless it is GLOMERULUS already (overlapping boxes unite)."""
    _unite(window, box_prior_mask(*window.shape, prior))


def _unite(window: np.ndarray, inside: np.ndarray) -> None:
    window[~inside & (window != GLOMERULUS)] = UNKNOWN
    window[inside] = GLOMERULUS


def fill_boxes(shape, boxes, prior: str = "box") -> np.ndarray:
    """Stage 1 round-1 labels: GLOMERULUS inside every box (their union), BACKGROUND elsewhere;
    with ``prior="ellipse"`` GLOMERULUS in the ellipse inscribed in each box and UNKNOWN (not
    learnt from) in its corners.

    Accepts an (N, 4) array or a :class:`BoxSet`; parts of boxes outside ``shape`` are ignored.
    """
    if len(shape) != 2:
        raise InputError(f"The label image must be 2-D (height, width), got shape {tuple(shape)}.")
    box_prior_mask(1, 1, prior)  # an unknown prior: refused before anything is drawn
    height, width = (int(s) for s in shape)
    out = np.full((height, width), BACKGROUND, np.uint8)
    b = np.asarray(getattr(boxes, "boxes", boxes), dtype=np.int64).reshape(-1, 4)
    for y0, x0, y1, x1 in b.tolist():  # each box's prior drawn whole, then cut to the image and united
        cy0, cx0, cy1, cx1 = max(0, y0), max(0, x0), min(height, y1), min(width, x1)
        if cy1 > cy0 and cx1 > cx0:
            inside = box_prior_mask(y1 - y0, x1 - x0, prior)[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            _unite(out[cy0:cy1, cx0:cx1], inside)
    return out
