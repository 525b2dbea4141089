"""The Modality transfer widget, headless, on a tiny brain tumour sample: train a FLAIR
source SegAN (phantom subjects), transfer it to T2 (full, critic frozen, from scratch),
read the layers, the plots, the table and the saved versions; side by side; predict;
Stop keeps the best; bad input gets one message and changes nothing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from napari_medseg.methods.modality_transfer.sample import tumour_sample
from napari_medseg.core.jobs import collect
from napari_medseg.core.registry import Registry
from napari_medseg.methods.modality_transfer import segan

SMALL = dict(seg_features=(8, 16, 32), critic_features=(8, 16, 32), batch_size=4, phantom_shape=(32, 32, 24))


@pytest.fixture
def setup(make_napari_viewer, tmp_path, one_thread):
    from napari_medseg.widgets.modality_transfer import ModalityTransferWidget

    viewer = make_napari_viewer()
    for data, kwargs, kind in tumour_sample(3, shape=(32, 32, 24), spacing=(4.5, 4.5, 6.0)):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    registry = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    w = ModalityTransferWidget(viewer, registry=registry)
    w.controller.set(**SMALL)
    return viewer, w


def _target(viewer, w, held=("sub-02 T2", "sub-03 T2")):
    L = viewer.layers
    w.target_modality.value = "T2"
    w.target_images.value = [L[f"sub-0{i} T2"] for i in (1, 2, 3)]
    w.target_labels.value = [L[f"sub-0{i} tumour"] for i in (1, 2, 3)]
    w.held_out.value = [L[n] for n in held]
    w.show_on.value = L["sub-03 T2"]


def _quick_source(registry, modality="FLAIR"):
    data = {"images": {modality: np.random.default_rng(0).random((4, 32, 32), np.float32)},
            "mask": np.pad(np.ones((4, 8, 8), np.uint8), ((0, 0), (12, 12), (12, 12)))}
    cfg = segan.SeganConfig(modality=modality, steps=1, batch_size=2, amp=False, optimizer="adam")
    return collect(segan.train_segan_model(registry, data, None, cfg, seg_features=(8, 16, 32),
                                           critic_features=(8, 16, 32)))[1]["entry"]


def test_source_compare_side_by_side_predict(setup):
    viewer, w = setup
    c, L = w.controller, viewer.layers
    assert [lay.name for lay in L][:5] == ["sub-01 T1", "sub-01 T1c", "sub-01 T2", "sub-01 FLAIR", "sub-01 tumour"]
    assert L["sub-01 T2"].data.shape == (24, 32, 32) and L["sub-01 T2"].metadata["tumour"]["modality"] == "T2"

    # 1. a FLAIR source model from three phantom subjects, live losses, saved with its critic
    w.source_modality.value, w.phantom_subjects.value, w.source_steps.value = "FLAIR", 3, 4
    w.critic_input.value = "concat"
    entry = c.train_source(block=True)
    assert entry is not None and entry.label == "segan_tumour v1 (user)", c.message
    assert entry.meta["modality"] == "FLAIR" and entry.meta["critic"] == {"name": "segan_tumour_critic", "version": 1}
    assert entry.meta["config"]["transfer"] is None and entry.meta["config"]["steps"] == 4
    assert all(len(w.source_loss_plot.series[k]) == 4 for k in ("loss_s", "loss_c", "l1"))
    assert len(w.source_dice_plot.series["val_dice"]) >= 1
    assert c.settings.source_version == 1 and w.source_version.value == 1
    assert "FLAIR · concat critic" in w.source_info.value and "Trained segan_tumour v1" in c.message

    # 2. Compare on T2: sub-01 trains, sub-02 validates, sub-03 is the test set and the display
    _target(viewer, w)
    w.steps.value, w.scratch.value = 3, True
    n = len(L)
    rows = c.compare(block=True)
    assert set(rows) == {"source_only", "full", "frozen_critic", "scratch"}, c.message
    saved = c.registry.list("segan_tumour_transfer")
    assert [e.version for e in saved] == [1, 2, 3]
    assert [e.meta["config"]["transfer"] for e in saved] == ["full", "frozen_critic", "scratch"]
    assert [e.meta["config"]["finetune"] for e in saved] == ["full", "frozen_critic", None]
    assert all(e.meta["modality"] == "T2" and e.meta["config"]["source"]["version"] == 1 for e in saved)
    assert saved[0].meta["config"]["resumed_from"] == {"name": "segan_tumour", "version": 1}
    # the critic frozen: the saved critic is the source's, bit for bit; full fine-tuning changed it
    src_critic = segan.load_segan(c.registry, "segan_tumour", 1)["critic"].state_dict()
    frozen = segan.load_segan(c.registry, "segan_tumour_transfer", 2)["critic"].state_dict()
    full = segan.load_segan(c.registry, "segan_tumour_transfer", 1)["critic"].state_dict()
    assert all(torch.equal(src_critic[k], v) for k, v in frozen.items())
    assert any(not torch.equal(src_critic[k], v) for k, v in full.items())
    # a Labels layer per mode on the chosen target image, named with the mode
    names = [lay.name for lay in L][n:]
    assert names == ["sub-03 T2 [source only v1]", "sub-03 T2 [full v1]", "sub-03 T2 [critic frozen v2]",
                     "sub-03 T2 [scratch v3]"]
    for name in names:
        assert L[name].data.shape == (24, 32, 32) and set(np.unique(L[name].data)) <= {0, 1}
        assert tuple(L[name].scale) == tuple(L["sub-03 T2"].scale)
    # the table: one row per mode, Dice and HD95 on the held-out slices, the saved model
    table = [[w.table.item(i, j).text() for j in range(w.table.columnCount())] for i in range(w.table.rowCount())]
    assert [r[0] for r in table] == ["source only", "full", "critic frozen", "from scratch"]
    assert table[1][1] == f"{rows['full']['dice']:.3f}" and [r[5] for r in table] == ["source v1", "v1", "v2", "v3"]
    assert w.table.item(2, 5).toolTip() == "segan_tumour_transfer v2 (user)"
    assert all(0.0 <= r["dice"] <= 1.0 for r in rows.values() if np.isfinite(r["dice"]))
    assert "sub-03" in c.message and "Saved segan_tumour_transfer v1" in c.message
    # live plots: each mode's validation Dice (val_every 1), the last mode's losses
    assert [len(w.dice_plot.series[m]) for m in ("full", "frozen_critic", "scratch")] == [3, 3, 3]
    assert len(w.loss_plot.series["loss_s"]) == 3

    # 3. side by side: truth + four results, each over a view of the image, in a grid
    w.side.value = True
    assert viewer.canvas.grid.enabled and len(c.views) == 5 and len(L) == n + 4 + 5
    assert [lay.name for lay in L][-2:] == ["sub-03 T2 · truth", "sub-03 tumour"]
    w.side.value = False
    assert not viewer.canvas.grid.enabled and len(L) == n + 4

    # 4. predict on any layer with any version
    w.predict_image.value, w.predict_name.value = L["sub-01 T1"], "segan_tumour"
    w.predict_version.value = 1
    out = c.predict(block=True)
    assert out.name == "sub-01 T1 [segan_tumour v1]" and out.data.shape == (24, 32, 32)
    assert "trained on FLAIR, the layer is T1" in c.message

    # 5. the dock follows the console
    c.set(target_modality="T1c", steps=7)
    assert w.target_modality.value == "T1c" and w.steps.value == 7


def test_stop_keeps_the_best_and_shows_what_finished(setup):
    viewer, w = setup
    c = w.controller
    _quick_source(c.registry)
    _target(viewer, w, held=("sub-02 T2",))  # one held-out layer: its slices alternate validation / test
    w.steps.value = 6
    c.set(val_every=1)

    def stop(kind, payload):
        if kind == "progress" and payload.get("mode") == "frozen_critic" and payload["step"] == 2:
            c.runner.stop()

    c.listeners.append(stop)
    c.compare()
    c.wait(timeout=120)
    assert set(c.rows) == {"source_only", "full", "frozen_critic"}
    assert c.rows["frozen_critic"]["stopped"] and "Stopped during critic frozen" in c.message
    assert [e.version for e in c.registry.list("segan_tumour_transfer")] == [1, 2]
    assert w.table.rowCount() == 3 and w.table.item(2, 0).text().endswith("(stopped)")


def test_bad_input_one_message_each(setup, tmp_path):
    viewer, w = setup
    c, L = w.controller, viewer.layers
    n = len(L)

    def refused(action, text):
        assert action(block=True) is None, c.message
        assert text in c.message, c.message
        assert len(L) == n and not c.registry.list("segan_tumour_transfer")

    _target(viewer, w)
    refused(c.compare, "no source model")
    refused(c.train_source, "no source data")
    _quick_source(c.registry)
    w.target_images.value, w.target_labels.value = [], []
    refused(c.compare, "no target data")
    refused(c.fine_tune_full, "no target data")
    viewer.add_labels(np.zeros((24, 16, 16), np.uint8), name="coarse labels")
    n += 1
    w.target_images.value, w.target_labels.value = [L["sub-01 T2"]], [L["coarse labels"]]
    refused(c.compare, "different grid")
    _target(viewer, w, held=("sub-01 T2", "sub-02 T2", "sub-03 T2"))
    refused(c.fine_tune_frozen, "Every target layer is held out")
    w.target_images.value = [L[f"sub-0{i} FLAIR"] for i in (1, 2, 3)]
    refused(c.compare, "say(s) otherwise")
    _target(viewer, w)
    # the source model's critic is missing, or was never saved
    shutil.rmtree(tmp_path / "models" / "segan_tumour_critic")
    refused(c.compare, "critic of the source model segan_tumour v1")
    seg, _ = segan.build_segan(seg_features=(8, 16, 32))
    c.registry.save_new_version("segan_tumour", seg.state_dict(), arch=seg.arch(), extra={"modality": "FLAIR"})
    c.set(source_version=None)
    refused(c.from_scratch, "has no critic saved with it")
    assert [e.version for e in c.registry.list("segan_tumour")] == [1, 2]
