"""Precision, recall and F-score of a segmentation against validation labels, per pixel and per object.

The paper reports the object-level F-score and picks the round where it peaks (``best_round``).
An empty ratio (nothing predicted, or nothing to find) is 1.0 when prediction and truth are both
empty and 0.0 otherwise; so is F1.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.measure import label
from skimage.segmentation import relabel_sequential

from ...core.errors import InputError
from .cues import foreground
from .labels import UNKNOWN


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"The validation labels {gt.shape} do not match the image {pred.shape}.")
    if pred.size == 0:
        raise InputError("The validation labels are empty.")
    return pred, gt


def _prf(tp: int, fp: int, fn: int) -> dict:
    empty = 1.0 if tp + fp + fn == 0 else 0.0
    return {"precision": tp / (tp + fp) if tp + fp else empty, "recall": tp / (tp + fn) if tp + fn else empty,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0, "tp": int(tp), "fp": int(fp), "fn": int(fn)}


def pixel_scores(pred, gt, *, gt_instances: bool = False) -> dict:
    """Pixel precision, recall, F1 (and tp, fp, fn) of the foreground; UNKNOWN pixels of ``gt`` are ignored.

    With ``gt_instances`` every non-zero value of ``gt`` is an object id and nothing is ignored.
    """
    pred, gt = _pair(pred, gt)
    p = foreground(pred)
    if gt_instances:
        g = gt > 0
    else:
        g = foreground(gt)
        p &= gt != UNKNOWN
    tp = int(np.count_nonzero(p & g))
    return _prf(tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(g)) - tp)


def object_scores(pred, gt, *, iou: float = 0.5, gt_instances: bool = False, pred_instances: bool = False) -> dict:
    """Object detection precision, recall, F1: predicted and true objects match one to one if IoU >= ``iou``.

    Predicted objects are the 8-connected components of the foreground (or its ids if
    ``pred_instances``: touching instances stay apart); true objects those of ``gt``,
    or its ids if ``gt_instances``. Matching is greedy, highest IoU first (ties: lowest labels first).
    A predicted object lying mostly (> 50 %) on UNKNOWN pixels of a binary ``gt`` is not counted.
    Returns precision, recall, f1, tp, fp, fn, n_pred, n_gt.
    """
    pred, gt = _pair(pred, gt)
    if not 0 < iou <= 1:
        raise InputError(f"The IoU threshold must lie in (0, 1], not {iou}.")
    if pred_instances:
        p_lab = relabel_sequential(np.asarray(pred).astype(np.int64))[0]
    else:
        p_lab = label(foreground(pred), connectivity=pred.ndim).astype(np.int64)
    if gt_instances:
        if not np.issubdtype(gt.dtype, np.integer) or gt.min() < 0:
            raise InputError("Instance validation labels must be non-negative integers (0 = background).")
        g_lab = relabel_sequential(gt.astype(np.int64))[0]
    else:
        g_lab = label(foreground(gt), connectivity=gt.ndim).astype(np.int64)
    n_p, n_g = int(p_lab.max()), int(g_lab.max())
    p_area = np.bincount(p_lab.ravel(), minlength=n_p + 1)
    g_area = np.bincount(g_lab.ravel(), minlength=n_g + 1)
    ignored = np.zeros(n_p + 1, bool)
    if not gt_instances and (gt == UNKNOWN).any():
        ignored = 2 * np.bincount(p_lab[gt == UNKNOWN], minlength=n_p + 1) > p_area
    ignored[0] = False
    both = (p_lab > 0) & (g_lab > 0)
    pairs, inter = np.unique(p_lab[both] * (n_g + 1) + g_lab[both], return_counts=True)
    pi, gi = np.divmod(pairs, n_g + 1)
    ious = inter / (p_area[pi] + g_area[gi] - inter)
    ok = (ious >= iou) & ~ignored[pi]
    pi, gi, ious = pi[ok], gi[ok], ious[ok]
    used_p, used_g = set(), set()
    for k in np.lexsort((gi, pi, -ious)):
        if pi[k] not in used_p and gi[k] not in used_g:
            used_p.add(pi[k])
            used_g.add(gi[k])
    n_pred, tp = n_p - int(ignored.sum()), len(used_p)
    return {**_prf(tp, n_pred - tp, n_g - tp), "n_pred": n_pred, "n_gt": n_g}


def scores(pred, gt, *, iou: float = 0.5, gt_instances: bool = False) -> dict:
    """Object and pixel precision, recall and F1 in one flat dict (``object_f1``, ``pixel_f1``, ...)."""
    obj = object_scores(pred, gt, iou=iou, gt_instances=gt_instances)
    pix = pixel_scores(pred, gt, gt_instances=gt_instances)
    return {f"{kind}_{k}": float(d[k]) for kind, d in (("object", obj), ("pixel", pix))
            for k in ("precision", "recall", "f1")}


def best_round(history, key: str = "object_f1", tie: str | None = "pixel_f1") -> int:
    """Index of the round whose ``key`` score is highest (the paper's peak F-score).

    Rounds level on ``key`` are told apart by ``tie`` (the pixel F1, i.e. outline
    quality, when every glomerulus is found); still level, the earliest wins."""

    def score(i, h, k):
        try:
            v = float(h[k])
        except (KeyError, TypeError, ValueError, IndexError):
            raise InputError(f"Round {i} has no {k!r} score.") from None
        return -math.inf if math.isnan(v) else v

    if not history:
        raise InputError("There are no rounds to choose from.")
    values = [(score(i, h, key), score(i, h, tie) if tie and tie in h else 0.0) for i, h in enumerate(history)]
    return max(range(len(values)), key=lambda i: (values[i], -i))


def pooled_scores(pairs, min_area: int = 0, iou: float = 0.5, gt_instances: bool = False,
                  radius: float | None = None) -> dict:
    """Object- and pixel-level precision, recall and F1 with counts summed over all slides.

    Predicted objects under ``min_area`` pixels are specks, not detections: they are left
    out of the object counts (the pixel scores keep every pixel). A three-class
    prediction (boundary class present) is scored by its instances, so touching objects
    count apart; a binary one by its connected components, or, given the object
    ``radius``, by its instances (:func:`.instances.to_instances`, as the widget shows
    them). ``gt_instances``: the truths are instance ids (touching true objects apart),
    nothing ignored."""
    from skimage.morphology import remove_small_objects

    from .instances import BOUNDARY, to_instances

    def obj_scores(p, g):
        p = np.asarray(p)
        if radius or (p == BOUNDARY).any():
            return object_scores(to_instances(p, radius, min_area), g, iou=iou, pred_instances=True,
                                 gt_instances=gt_instances)
        if min_area > 1:
            p = remove_small_objects(p > 0, max_size=min_area - 1, connectivity=2)
        return object_scores(p, g, iou=iou, gt_instances=gt_instances)

    obj = [obj_scores(p, g) for p, g in pairs]
    pix = [pixel_scores(p, g, gt_instances=gt_instances) for p, g in pairs]
    out = {}
    for prefix, parts in (("object", obj), ("pixel", pix)):
        tp, fp, fn = (sum(float(d[k]) for d in parts) for k in ("tp", "fp", "fn"))
        precision = tp / (tp + fp) if tp + fp else 1.0 if fn == 0 else 0.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update({f"{prefix}_precision": precision, f"{prefix}_recall": recall, f"{prefix}_f1": f1})
    # one number to rank checkpoints by: object F1, with pixel F1 (outline quality) breaking ties
    out["rank_score"] = out["object_f1"] + out["pixel_f1"] / 1000.0
    out["n_true_objects"] = int(sum(d["n_gt"] for d in obj))
    out["min_object_area"] = int(min_area)
    return out
