"""Per-class Dice, Jaccard, 95th-percentile Hausdorff and mean surface distance (MONAI).

The metrics of the MS-CMR challenge tables (Chen et al., Tables 1-3) and of the
benchmarks, on integer label arrays (2D or 3D numpy). Distances are in the units of
``spacing`` (mm for a NIfTI's voxel size); the mean surface distance is symmetric (the
average over both contours' points). A class absent from both prediction and
reference gets NaN everywhere; a class in only one of them gets Dice and Jaccard 0
and infinite distances.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU, SurfaceDistanceMetric

from ..errors import InputError

METRICS = ("dice", "jaccard", "hd95", "msd")


def _class_names(pred: np.ndarray, target: np.ndarray, labels) -> dict[int, str]:
    if labels is None:
        found = np.union1d(np.unique(pred), np.unique(target))
        return {int(v): str(int(v)) for v in found if v != 0}
    if isinstance(labels, Mapping):
        return {int(k): str(v) for k, v in labels.items()}
    return {int(v): str(int(v)) for v in labels}


def segmentation_metrics(pred, target, spacing: float | Sequence[float] = 1.0,
                         labels: Sequence[int] | Mapping[int, str] | None = None) -> dict[str, dict[str, float]]:
    """``{"dice" | "jaccard" | "hd95" | "msd": {class name: value}}`` for one image.

    ``labels``: the classes to score, as values or ``{value: name}``; by default every
    non-zero value found in either array (named by its value). ``spacing``: one number,
    or one per axis.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise InputError(f"Prediction {pred.shape} and reference {target.shape} must be on the same grid.")
    if pred.ndim not in (2, 3):
        raise InputError(f"Expected 2D or 3D label arrays, got {pred.ndim} dimensions.")
    for name, a in (("prediction", pred), ("reference", target)):
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
            raise InputError(f"The {name} must hold integer labels, got {a.dtype}.")
    spacing = [float(spacing)] * pred.ndim if np.isscalar(spacing) else [float(s) for s in spacing]
    if len(spacing) != pred.ndim or min(spacing) <= 0:
        raise InputError(f"Spacing {spacing} must give one positive value per axis ({pred.ndim}).")
    names = _class_names(pred, target, labels)
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    if not names:
        return out
    values = list(names)
    # one-hot (1, C, *S), one channel per scored class, no background channel
    p = torch.from_numpy(np.stack([pred == v for v in values])[None].astype(np.float32))
    t = torch.from_numpy(np.stack([target == v for v in values])[None].astype(np.float32))
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p, t)[0]
    iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)(p, t)[0]
    in_p, in_t = p.flatten(2).any(-1)[0], t.flatten(2).any(-1)[0]
    both = in_p & in_t
    hd = torch.full((len(values),), math.inf)
    msd = torch.full((len(values),), math.inf)
    if both.any():  # MONAI warns (and gives inf/nan) on empty masks: score only the shared classes
        idx = torch.nonzero(both)[:, 0]
        with warnings.catch_warnings():  # MONAI's own call of a deprecated argument of get_mask_edges
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
            hd[idx], msd[idx] = _distances(p[:, idx], t[:, idx], spacing)
    for i, v in enumerate(values):
        absent = not (bool(in_p[i]) or bool(in_t[i]))
        row = {"dice": dice[i], "jaccard": iou[i], "hd95": hd[i], "msd": msd[i]}
        for m in METRICS:
            out[m][names[v]] = math.nan if absent else float(row[m])
    return out


def _distances(p: torch.Tensor, t: torch.Tensor, spacing: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """HD95 and symmetric mean surface distance per channel of one-hot (1, C, *S) masks."""
    hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(p, t, spacing=spacing)
    msd = SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")(p, t, spacing=spacing)
    return hd[0].float(), msd[0].float()


def mean_over_classes(scores: Mapping[str, float]) -> float:
    """Mean of the finite-or-infinite, non-NaN values of one metric (NaN if none)."""
    vals = [v for v in scores.values() if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan
