"""What a researcher reads off a joint segmentation: Dice per class, tissue volumes,
lesion volume and count, all in physical units from the voxel spacing."""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError
from .labels import LabelSet


def voxel_ml(spacing) -> float:
    """Volume of one voxel in millilitres (spacing in mm)."""
    spacing = np.asarray(spacing, float)
    if spacing.size != 3 or not np.all(spacing > 0):
        raise InputError(f"Voxel spacing must be three positive sizes in mm, not {tuple(spacing)}.")
    return float(np.prod(spacing)) / 1000.0


def volumes_ml(labels, label_set: LabelSet, spacing) -> dict[str, float]:
    """Volume of every class but background, in mL."""
    label_set.check(labels)
    counts = np.bincount(np.asarray(labels, np.int64).ravel(), minlength=label_set.n_classes)
    v = voxel_ml(spacing)
    return {name: float(counts[i] * v) for i, name in enumerate(label_set.names) if i > 0}


def lesion_stats(labels, label_set: LabelSet, spacing) -> dict[str, float]:
    """Total lesion volume (mL) and the number of lesions (26-connected components)."""
    from scipy import ndimage

    lesion = np.asarray(labels) == label_set.lesion
    _, count = ndimage.label(lesion, structure=np.ones((3,) * lesion.ndim))
    return {"lesion_volume_ml": float(lesion.sum() * voxel_ml(spacing)), "lesion_count": int(count)}


def dice_per_class(prediction, reference, label_set: LabelSet, classes=None) -> dict[str, float]:
    """Dice of each class (MONAI's DiceMetric on one-hot maps); NaN where both are empty."""
    import torch
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise InputError(f"Prediction {prediction.shape} and reference {reference.shape} differ in shape.")
    classes = tuple(classes) if classes is not None else tuple(range(1, label_set.n_classes))
    p, r = (one_hot(torch.as_tensor(a, dtype=torch.long)[None, None], label_set.n_classes) for a in
            (prediction, reference))
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=True)
    d = metric(p, r)[0].numpy()
    return {label_set.names[c]: float(d[c]) for c in classes}
