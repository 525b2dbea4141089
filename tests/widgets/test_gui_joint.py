"""The Joint lesion + tissue widget, headless: map modalities on the brain phantom sample,
segment with the shipped model, read the labels and the volume table, correct, retrain,
roll back, export NIfTI with the affine kept; bad input; training from dataset folders."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_medseg.methods.joint_lesion_tissue import sample as _sample_data
from napari_medseg.core import paths
from napari_medseg.core.errors import MedsegError
from napari_medseg.core.registry import Registry
from napari_medseg.methods.joint_lesion_tissue.labels import REDUCED
from napari_medseg.methods.joint_lesion_tissue.metrics import dice_per_class


@pytest.fixture
def setup(make_napari_viewer, tmp_path):
    torch.set_num_threads(2)
    from napari_medseg.widgets.joint_lesion_tissue import JointWidget

    viewer = make_napari_viewer()
    for data, kwargs, kind in _sample_data.brain_phantom_sample():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    registry = Registry(shipped_root=paths.models_dir(), user_root=tmp_path / "models")
    w = JointWidget(viewer, registry=registry)
    return viewer, w


def test_map_segment_correct_retrain_export(setup, tmp_path):
    viewer, w = setup
    c = w.controller
    t1, flair, truth = viewer.layers["T1"], viewer.layers["FLAIR"], viewer.layers["true labels"]
    w.t1.value, w.flair.value = t1, flair
    assert c.settings.t1 is t1 and c.settings.flair is flair and c.settings.t2 is None

    cur = c.registry.get("joint_lesion_tissue").version  # the shipped current version
    labels = c.segment(block=True)
    assert labels is viewer.layers[-1] and labels.name == f"T1 [joint_lesion_tissue v{cur}]"
    assert labels.data.shape == t1.data.shape and tuple(labels.scale) == tuple(t1.scale)
    assert list(labels.features["class"]) == list(REDUCED.names)
    assert w.used.value == "used: T1 + FLAIR"
    # the shipped model segments the held-out phantom: every tissue and the lesions are found
    dice = dice_per_class(labels.data, truth.data, REDUCED)
    assert dice["white matter"] > 0.6 and dice["CSF"] > 0.5 and dice["grey matter"] > 0.4, dice
    assert dice["lesion"] > 0.2, dice
    # the volume table: one row per class and the lesion count, in mL from the 2 mm voxels
    rows = {w.table.item(i, 0).text(): w.table.item(i, 1).text() for i in range(w.table.rowCount())}
    units = {w.table.item(i, 0).text(): w.table.item(i, 2).text() for i in range(w.table.rowCount())}
    assert list(rows) == [*REDUCED.names[1:], "lesion count", "min lesion size"]
    assert units["lesion count"] == "lesions" and {units[n] for n in REDUCED.names[1:]} == {"mL"}
    wm = int((labels.data == REDUCED.names.index("white matter")).sum())
    assert float(rows["white matter"]) == pytest.approx(wm * 8 / 1000, abs=0.01)
    # the table as CSV, with the columns of `predict joint_lesion_tissue`; never over a file
    import csv

    w.csv_path.value = str(tmp_path / "volumes.csv")
    w.csv_button.changed.emit()
    [row] = list(csv.DictReader((tmp_path / "volumes.csv").open()))
    assert float(row["white matter (mL)"]) == pytest.approx(wm * 8 / 1000, abs=0.01)
    assert int(float(row["lesion count"])) == int(rows["lesion count"]) and row["subject"] == t1.name
    before_csv = (tmp_path / "volumes.csv").read_bytes()
    with pytest.raises(MedsegError, match="exists"):
        c.export_volumes(tmp_path / "volumes.csv")
    assert (tmp_path / "volumes.csv").read_bytes() == before_csv

    # correct: paint the true labels into one slab, the table follows, retrain a new version
    before = float(rows["lesion"])
    edited = np.array(labels.data)
    edited[30:50] = truth.data[30:50]
    labels.data = edited
    c.refresh_volumes()
    assert float(w.table.item(REDUCED.lesion - 1, 1).text()) != before or (edited == labels.metadata["medseg"][
        "prediction"]).all()
    w.retrain_steps.value = 3
    entry = c.retrain(block=True)
    assert entry is not None and entry.version == cur + 1 and entry.source == "user", c.message
    assert c.registry.get("joint_lesion_tissue").version == cur + 1
    assert entry.meta["config"]["mode"] == "joint" and entry.meta["config"]["resumed_from"] == cur
    saved = sorted((paths.user_data_dir() / "corrections" / "joint_lesion_tissue").glob("corrections_*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["changed_voxels"] > 0
    assert f"v{cur + 1}" in w.versions.value and w.version.choices == (None, *range(1, cur + 2))
    # the retrained version segments too, as a new layer
    again = c.segment(block=True)
    assert again.name == f"T1 [joint_lesion_tissue v{cur + 1}]" and again.data.shape == t1.data.shape
    c.rollback()
    assert c.registry.get("joint_lesion_tissue").version == cur
    assert f"current: joint_lesion_tissue v{cur}" in w.versions.value

    # export keeps the affine
    out = tmp_path / "labels.nii.gz"
    c.export(out)
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, t1.metadata["medseg_io"]["affine"])
    np.testing.assert_array_equal(np.asarray(img.dataobj), again.data)


def test_bad_input_one_message_each(setup):
    viewer, w = setup
    c = w.controller
    n = len(viewer.layers)
    w.flair.value = viewer.layers["FLAIR"]
    assert c.segment(block=True) is None and "Map a T1 layer" in c.message and len(viewer.layers) == n
    viewer.add_image(np.asarray(viewer.layers["FLAIR"].data)[::2, ::2, ::2], name="small FLAIR", scale=(4, 4, 4))
    w.t1.value, w.flair.value = viewer.layers["T1"], viewer.layers["small FLAIR"]
    assert c.segment(block=True) is None and "resample onto T1" in c.message and len(viewer.layers) == n + 1
    w.resample.value = True
    assert c.segment(block=True) is not None and len(viewer.layers) == n + 2
    viewer.layers["FLAIR"].data = np.zeros(viewer.layers["FLAIR"].data.shape, np.float32)
    w.flair.value = viewer.layers["FLAIR"]
    assert c.segment(block=True) is None and "shows no brain" in c.message
    viewer.layers["T1"].data = np.full(viewer.layers["T1"].data.shape, np.nan, np.float32)
    assert c.segment(block=True) is None and "NaN" in c.message and len(viewer.layers) == n + 2
    c.retrain(block=True)
    assert "paint your corrections first" in c.message


def test_train_from_dataset_folders(setup, tmp_path):
    from napari_medseg.methods.joint_lesion_tissue.phantom import task_datasets, write_dataset

    viewer, w = setup
    c = w.controller
    d = task_datasets(1, 1, 1, seed=7, shape=(40, 48, 40), label_set="reduced", spacing=(2.5, 2.5, 2.5))
    for key in d:
        for s in d[key]:
            s["classes"] = "reduced"
    w.controls.value = write_dataset(d["control"], tmp_path / "controls", "controls.csv")
    w.patients.value = write_dataset(d["patient"], tmp_path / "patients", "patients.yaml")
    w.validation.value = write_dataset(d["test"], tmp_path / "val", "val.csv")
    w.steps.value, w.warmup.value, w.patch.value = 4, 2, 24
    cur = c.registry.get("joint_lesion_tissue").version
    entry = c.train(block=True)
    assert entry is not None and entry.version == cur + 1, c.message  # fine-tuned from the shipped current
    assert entry.meta["config"]["steps"] == 4 and entry.meta["spacing"] == [2.5, 2.5, 2.5]
    assert len(w.loss_plot.series["loss_tissue"]) == 4 and len(w.loss_plot.series["loss_inter"]) == 4
    assert w.loss_plot.series["loss_inter"][0][1] == 0 and w.loss_plot.series["loss_inter"][-1][1] > 0
    assert len(w.dice_plot.series["val_dice"]) >= 1
    # a lesion dataset without FLAIR is refused before anything trains
    d["patient"][0].pop("FLAIR")
    w.patients.value = write_dataset(d["patient"], tmp_path / "bad", "patients.csv")
    assert c.train(block=True) is None and "no FLAIR" in c.message
    assert c.registry.get("joint_lesion_tissue").version == cur + 1


def test_real_template_with_a_brain_mask_and_minimum_lesion_size(make_napari_viewer, tmp_path):
    """The MNI152 sample (real, skull-stripped T1) with its brain mask mapped: labels stay in
    the mask and fill it, lesions below the minimum size are removed, the table says so."""
    from scipy import ndimage

    from napari_medseg.widgets.joint_lesion_tissue import JointWidget

    torch.set_num_threads(2)
    viewer = make_napari_viewer()
    for data, kwargs, kind in _sample_data.mni_lesion_sample():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    w = JointWidget(viewer, registry=Registry(shipped_root=paths.models_dir(), user_root=tmp_path / "models"))
    viewer.window.add_dock_widget(w)  # owned (and closed) by the viewer's window
    layers = viewer.layers
    w.t1.value, w.flair.value, w.mask.value = layers["T1"], layers["FLAIR"], layers["brain mask"]
    w.min_lesion_ml.value = 0.1
    assert w.controller.settings.mask is layers["brain mask"] and w.controller.settings.min_lesion_ml == 0.1
    labels = w.controller.segment(block=True)
    assert labels is not None, w.controller.message
    mask = layers["brain mask"].data > 0
    assert (labels.data[~mask] == 0).all() and (labels.data[mask] > 0).all()
    comp, n = ndimage.label(labels.data == REDUCED.lesion, np.ones((3, 3, 3)))
    sizes_ml = np.bincount(comp.ravel())[1:] * 8 / 1000
    assert (sizes_ml >= 0.1).all()
    rows = {w.table.item(i, 0).text(): w.table.item(i, 1).text() for i in range(w.table.rowCount())}
    assert rows["min lesion size"] == "0.100" and int(rows["lesion count"]) == n
    truth = layers["reference labels (MNI GM/WM maps + lesions)"].data
    gm = REDUCED.names.index("grey matter")
    d = 2 * ((labels.data == gm) & (truth == gm)).sum() / ((labels.data == gm).sum() + (truth == gm).sum())
    assert d > 0.75, d  # real anatomy: grey matter found (reference: GM map > 0.5)
    # a mask on another grid is refused unless 'resample onto T1' is ticked
    viewer.add_labels(np.ones((10, 10, 10), np.uint8), name="small mask")
    w.mask.value = layers["small mask"]
    assert w.controller.segment(block=True) is None and "not on the T1 grid" in w.controller.message
