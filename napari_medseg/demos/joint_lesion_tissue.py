"""The demo step of the Joint lesion + tissue dock (Dorent et al. 2019)."""

from __future__ import annotations

from pathlib import Path

from ..demo import _only, _screenshot, _settle


def run(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Joint lesion + tissue: the brain phantom sample (T1 + FLAIR), segmented by the
    shipped model into named classes with a volume table; one slab of corrections, a
    short retraining into a new version, and the export of the labels as NIfTI."""
    import numpy as np

    from ..methods.joint_lesion_tissue.sample import brain_phantom_sample
    from ..methods.joint_lesion_tissue.labels import REDUCED
    from ..methods.joint_lesion_tissue.metrics import dice_per_class

    w = widgets["Joint lesion + tissue"]
    c = w.controller
    added = _only(viewer, brain_phantom_sample())
    truth = added["true labels"]
    viewer.dims.order = (2, 1, 0)  # axial slices
    viewer.dims.set_point(2, float(truth.data.shape[2] // 2 * truth.scale[2] + truth.translate[2]))
    c.set(t1=added["T1"], flair=added["FLAIR"], retrain_steps=max(2, min(steps, 20)))
    labels = c.segment(block=True)
    viewer.reset_view()
    _settle(app)
    shots = [_screenshot(viewer, out / "joint-1-segmented.png")]
    dice = dice_per_class(labels.data, truth.data, REDUCED)
    edited = np.array(labels.data)
    mid = edited.shape[2] // 2
    edited[:, :, mid - 3:mid + 3] = truth.data[:, :, mid - 3:mid + 3]
    labels.data = edited
    entry = c.retrain(block=True)
    path = c.export(out / "joint-labels.nii.gz")
    return {"method": "joint lesion + tissue (Dorent et al. 2019)", "labels_layer": labels.name,
            "dice": {k: float(v) for k, v in dice.items()}, "volumes_ml": dict(c.volume_table()),
            "retrained_version": None if entry is None else entry.version, "exported": Path(path).name,
            "screenshots": shots}
