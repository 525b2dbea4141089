"""The Adversarial segmentation widget (Chen et al. 2019), headless: map the cardiac sample's
patients, show the pseudo-masks, train a few iterations of each flavour with the live G/D
losses and validation Dice, predict LGE labels; bad input gets one message each."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.methods.adversarial_segmentation.sample import TRUTH_SUFFIX, cardiac_sample
from napari_medseg.core.registry import Registry
from napari_medseg.methods.adversarial_segmentation.cardiac import LABEL_NAMES, map_slices

SIZE = (48, 48)


@pytest.fixture
def setup(make_napari_viewer, tmp_path, one_thread):
    from napari_medseg.widgets.adversarial_segmentation import AdversarialSegmentationWidget

    viewer = make_napari_viewer()
    for data, kwargs, kind in cardiac_sample(n_patients=2, size=SIZE):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    registry = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    w = AdversarialSegmentationWidget(viewer, registry=registry)
    w.steps.value, w.pretrain_steps.value, w.batch_size.value = 4, 2, 4
    return viewer, w


def test_sample_layers():
    layers = {kw["name"]: (data, kw, kind) for data, kw, kind in cardiac_sample(n_patients=1, size=SIZE)}
    assert set(layers) == {"P1 bSSFP", "P1 T2", "P1 LGE", "P1 bSSFP labels", "P1 T2 labels", f"P1 {TRUTH_SUFFIX}"}
    truth = layers[f"P1 {TRUTH_SUFFIX}"]
    assert truth[2] == "labels" and not truth[1]["visible"] and truth[1]["metadata"]["cardiac"]["what"] == "truth"
    lge = layers["P1 LGE"]
    assert lge[0].ndim == 3 and lge[0].shape[1:] == SIZE and lge[1]["metadata"]["cardiac"]["sequence"] == "LGE"
    assert truth[0].shape == lge[0].shape and truth[1]["scale"] == lge[1]["scale"]


def test_map_pseudo_masks_train_predict(setup, qtbot):
    viewer, w = setup
    c, L = w.controller, setup[0].layers
    w.patient.value = "P1"  # fills the six pickers from the layers' metadata
    assert c.settings.bssfp is L["P1 bSSFP"] and c.settings.t2_labels is L["P1 T2 labels"]
    assert c.settings.lge is L["P1 LGE"] and c.settings.lge_labels is L[f"P1 {TRUTH_SUFFIX}"]
    assert w.lge.value is L["P1 LGE"]
    c.set(steps=4, method="U-Net")  # from the console: the dock shows it
    assert w.steps.value == 4 and w.method.value == "unet" and c.settings.method == "unet"
    w.method.value = "adversarial_transfer"
    assert c.settings.method == "adversarial_transfer"

    # the pseudo-masks: LGE slice j of m carries bSSFP (T2) slice floor(j*n/m), on the LGE grid
    shown = c.show_pseudo_masks()
    assert [lay.name for lay in shown] == ["P1 LGE pseudo-masks from bSSFP", "P1 LGE pseudo-masks from T2"]
    lge, src = L["P1 LGE"].data, L["P1 bSSFP labels"].data
    idx = map_slices(len(src), len(lge))
    np.testing.assert_array_equal(shown[0].data, src[idx])
    assert shown[0].data.shape == lge.shape and tuple(shown[0].scale) == tuple(L["P1 LGE"].scale)
    assert "floor(j*n/m)" in c.message and str(idx.tolist()) in c.message
    assert len(c.show_pseudo_masks()) == 2 and len([x for x in L if "pseudo-masks" in x.name]) == 2  # updated

    # a cohort: P1 (validated on its LGE truth), P2 (no LGE labels), one phantom
    w.add_button.native.click()
    w.patient.value = "P2"
    w.lge_labels.value = None
    c.add_patient()
    assert c.patient_list() == ["P1", "P2"] and w.patients.value == "added: P1, P2"
    w.phantoms.value = 1
    entry = c.train(block=True)
    assert entry is not None and entry.version == 1, c.message
    assert entry.meta["config"]["method"] == "adversarial_transfer" and entry.meta["config"]["paper_name"] == "U+A+D+T"
    assert entry.meta["config"]["data"] == "2 patient(s) from layers + 1 phantom(s) in napari"
    assert "Saved chen_cardiac v1" in c.message and "best validation Dice" in c.message
    assert [len(w.g_plot.series[k]) for k in ("loss_g", "loss_id", "loss_dt")] == [4, 4, 4]
    # D warms up during the 2 pre-training steps (d_warmup); G's adversarial term follows them
    assert [len(w.d_plot.series[k]) for k in ("loss_d", "loss_adv")] == [4, 2]
    assert len(w.dice_plot.series["val_dice"]) == 4 and all(0 <= y <= 1 for _, y in w.dice_plot.series["val_dice"])
    assert w.version.choices == ("current", 1) and "chen_cardiac v1" in w.models.value

    # predict P2's LGE: labels with class names and colours, on the image, scored against its truth
    w.predict_image.value = L["P2 LGE"]
    labels = c.predict(block=True)
    assert labels is L[-1] and labels.name == "P2 LGE [chen_cardiac v1]"
    assert labels.data.shape == L["P2 LGE"].data.shape and tuple(labels.scale) == tuple(L["P2 LGE"].scale)
    assert set(np.unique(labels.data)) <= {0, 1, 2, 3} and list(labels.features["class"]) == list(LABEL_NAMES)
    assert f"Dice against 'P2 {TRUTH_SUFFIX}'" in c.message

    # U-Net: no discriminator, so the D plot stays empty; a second version
    c.set(method="unet", steps=2, pretrain_steps=0, phantoms=0)
    entry = c.train(block=True)
    assert entry.version == 2 and entry.meta["method"] == "chen2019-unet", c.message
    assert len(w.g_plot.series["loss_g"]) == 2 and w.d_plot.series["loss_d"] == []
    assert w.g_plot.series["loss_dt"] == []
    w.version.value = 1
    assert c.predict(block=True).name == "P2 LGE [chen_cardiac v1]" and c.settings.version == 1

    # Stop keeps the weights so far as a new version
    c.set(steps=1000)
    c.train()
    while len(c.runner.history) < 2:
        qtbot.wait(20)
    c.runner.stop()
    c.wait()
    assert c.registry.get("chen_cardiac").version == 3 and "Stopped: saved chen_cardiac v3" in c.message


def test_slice_axis_last(setup):
    viewer, w = setup
    c, L = w.controller, viewer.layers
    for name in ("P1 bSSFP", "P1 bSSFP labels", "P1 LGE"):
        lay = L[name]
        getattr(viewer, "add_labels" if "labels" in name else "add_image")(
            np.moveaxis(np.asarray(lay.data), 0, -1), name=f"{name} (H,W,slices)")
    c.set(bssfp=L["P1 bSSFP (H,W,slices)"], bssfp_labels=L["P1 bSSFP labels (H,W,slices)"],
          lge=L["P1 LGE (H,W,slices)"], slice_axis="last")
    assert w.slice_axis.value == "last"
    shown = c.show_pseudo_masks()
    assert len(shown) == 1 and shown[0].data.shape == L["P1 LGE (H,W,slices)"].data.shape
    expected = np.asarray(L["P1 bSSFP labels"].data)[map_slices(len(L["P1 bSSFP"].data), len(L["P1 LGE"].data))]
    np.testing.assert_array_equal(shown[0].data, np.moveaxis(expected, 0, -1))


def test_bad_input_one_message_each(setup):
    viewer, w = setup
    c, L = w.controller, viewer.layers
    n = len(L)

    def refused(action, text):
        assert action() is None, c.message
        assert text in c.message, c.message
        assert len(L) == n and c.registry.list("chen_cardiac") == []

    refused(lambda: c.train(block=True), "Map a patient")
    refused(lambda: c.predict(block=True), "Pick the LGE (target) image")
    w.patient.value = "P1"
    refused(lambda: c.predict(block=True), "There is no chen_cardiac model yet")

    # labels on another grid than their image: another shape, or the same shape placed elsewhere
    bad = viewer.add_labels(np.zeros((3, *SIZE), np.uint8), name="three slices")
    n += 1
    c.set(bssfp_labels=bad)
    refused(lambda: c.train(block=True), "labels must be on the image's grid")
    shifted = viewer.add_labels(np.asarray(L["P1 bSSFP labels"].data), name="shifted labels",
                                scale=L["P1 bSSFP"].scale, translate=(0.0, 5.0, 0.0))
    n += 1
    c.set(bssfp_labels=shifted)
    refused(lambda: c.train(block=True), "placed differently from the image")
    w.add_button.native.click()  # the dock's button: the same one message
    assert "placed differently" in c.message and c.patient_list() == []
    c.set(bssfp_labels=L["P1 bSSFP labels"])

    # sequences with no slices in common: T2 placed beyond the LGE stack's end
    L["P1 T2"].translate = (500.0, 0.0, 0.0)
    L["P1 T2 labels"].translate = (500.0, 0.0, 0.0)
    refused(lambda: c.show_pseudo_masks(), "Sequences with no slices in common")
    refused(lambda: c.train(block=True), "Sequences with no slices in common")
    L["P1 T2"].translate = L["P1 T2 labels"].translate = L["P1 LGE"].translate
    # T2 on another in-plane grid than the LGE: no pseudo-masks
    small = np.asarray(L["P1 T2"].data)[:, :40, :40]
    viewer.add_image(small, name="small T2", scale=L["P1 T2"].scale)
    viewer.add_labels(np.asarray(L["P1 T2 labels"].data)[:, :40, :40], name="small T2 labels", scale=L["P1 T2"].scale)
    n += 2
    c.set(t2=L["small T2"], t2_labels=L["small T2 labels"])
    refused(lambda: c.show_pseudo_masks(), "Patient P1, T2 -> LGE: The source labels are (40, 40) in-plane")
    c.set(t2=L["P1 T2"], t2_labels=L["P1 T2 labels"])

    # an empty target set: weak transfer without any LGE image
    c.set(lge=None, lge_labels=None, method="adversarial_transfer")
    refused(lambda: c.train(block=True), "Empty target set")
    refused(lambda: c.show_pseudo_masks(), "Empty target set")
    # and the engine's own checks reach the same one message
    c.set(lge=L["P1 LGE"], steps=2, pretrain_steps=5)
    refused(lambda: c.train(block=True), "0 <= pretrain_steps <= steps")
    L["P1 LGE"].data = np.full(L["P1 LGE"].data.shape, np.nan, np.float32)
    c.set(pretrain_steps=1)
    refused(lambda: c.train(block=True), "NaN")
