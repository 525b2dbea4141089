"""The Box-supervised training widget, headless: boxes in, two Stage-1 rounds, a correction,
another round, and the metrics plot following along."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.corrections import corrections_dir
from napari_medseg.core.registry import Registry
from napari_medseg.methods.box_iterative.boxes import boxes_to_shapes
from napari_medseg.methods.box_iterative.synthetic import synthetic_kidney


@pytest.fixture
def setup(make_napari_viewer, tmp_path):
    torch.set_num_threads(1)
    from napari_medseg.widgets.box_iterative import BoxIterativeWidget

    viewer = make_napari_viewer()
    a, v = synthetic_kidney((384, 384), 21, density=3.0), synthetic_kidney((384, 384), 22, density=3.0)
    viewer.add_image(a.rgb, name="slide A", rgb=True)
    viewer.add_shapes(boxes_to_shapes(a.boxes), shape_type="rectangle", name="boxes A")
    viewer.add_image(v.rgb, name="val", rgb=True)
    viewer.add_labels(v.mask, name="val labels")
    registry = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    w = BoxIterativeWidget(viewer, registry=registry)
    w.image.value, w.boxes.value = viewer.layers["slide A"], viewer.layers["boxes A"]
    w.val_image.value, w.val_labels.value = viewer.layers["val"], viewer.layers["val labels"]
    w.steps.value, w.patch.value, w.batch_size.value, w.rounds1.value = 3, 128, 2, 2
    return viewer, w, a


def test_boxes_two_rounds_correct_retrain_plot_updates(setup):
    viewer, w, a = setup
    c = w.controller
    assert c.settings.steps == 3 and c.settings.boxes is viewer.layers["boxes A"]
    c.set(steps=4)  # from the console: the dock shows it, and the next click keeps it
    assert w.steps.value == 4
    w.rounds1.value = 2
    assert c.settings.steps == 4
    c.set(steps=3)
    c.stage1(block=True)
    rounds = [lay for lay in viewer.layers if lay.name.startswith("slide A [stage 1 round")]
    assert [lay.name for lay in rounds] == ["slide A [stage 1 round 1]", "slide A [stage 1 round 2]"]
    assert not rounds[0].visible and rounds[1].visible  # earlier rounds stay, hidden, to toggle
    assert len(w.plot.series["object_f1"]) == 2 and "stage 1 round 2" in w.rounds.value
    versions = [e.version for e in c.registry.list("glomeruli")]
    assert len(versions) == 2

    # correct round 2: paint the true outlines, then train one more round
    latest = rounds[1]
    latest.data = a.mask.astype(latest.data.dtype)
    c.stage1(rounds=1, block=True)
    saved = list(corrections_dir("glomeruli").glob("corrections_*.zarr"))
    assert len(saved) == 1  # autosaved before training
    fixed_mask, _ = c.session.slides[1][0].fixed
    assert fixed_mask.any()
    assert len(w.plot.series["object_f1"]) == 3 and "stage 1 round 3" in w.rounds.value
    assert len(c.registry.list("glomeruli")) == 3

    # roll back one version; the next round continues from it
    assert c.rollback() == 2 and c.registry.get("glomeruli").version == 2


def test_non_rectangles_and_missing_layers_get_one_message(setup):
    viewer, w, a = setup
    c = w.controller
    viewer.layers["boxes A"].add_ellipses(np.array([[10, 10], [40, 40]]))
    c.stage1(block=True)
    assert "rectangle" in c.message and c.registry.list("glomeruli") == []
    c.set(boxes=None)
    c.stage1(block=True)
    assert "Shapes layer" in c.message
    c.stage2(block=True)
    assert "unlabelled" in c.message


def test_predict_adds_labels_layer(setup):
    viewer, w, a = setup
    c = w.controller
    c.stage1(rounds=1, block=True)
    c.set(predict_image=viewer.layers["val"])
    lay = c.predict(block=True)
    assert lay is not None and lay.data.shape == (384, 384)
    assert lay.metadata["medseg"]["model"] == "glomeruli"
    # instances (on by default): split by the predicted boundary class (the instance head), or,
    # where a round this short predicts none, by the distance watershed with the boxes' radius
    assert c.settings.instances and ("split by the predicted boundaries" in c.message
                                     or "objects (touching ones split; object radius" in c.message)
    n = int(lay.data.max())
    assert n == len(np.unique(lay.data)) - (1 if (lay.data == 0).any() else 0)  # ids 1..n, one per object


def test_the_box_prior_is_the_commands_default_and_settable_from_the_console(setup):
    from napari_medseg.core.options import defaults
    from napari_medseg.methods.box_iterative.options import TrainOptions

    _, w, _ = setup
    c = w.controller
    assert c._config().box_prior == defaults(TrainOptions)["box_prior"]
    c.set(box_prior="ellipse")  # round 1 (and every box Cues 1 resets) then reads the boxes as ellipses
    assert c._config().box_prior == "ellipse"



def _killed_round(tmp_path, seed: int):
    """A registry with Stage-1 round 1 saved and round 2 "killed" at step 12 (last.pt: step 10):
    ``(registry, slide, session, suspended generator, run folder)``."""
    from napari_medseg.core.jobs import collect
    from napari_medseg.core.runstate import TrainingRun
    from napari_medseg.methods.box_iterative.stages import IterativeTraining, StageConfig

    torch.set_num_threads(1)
    a = synthetic_kidney((256, 256), seed, density=3.0)
    registry = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    s = IterativeTraining(registry, StageConfig(steps=14, patch=96, batch_size=2, tile=256), workdir=tmp_path / "w")
    s.set_stage1([a.rgb], [a.boxes])
    collect(s.stage1(1))
    gen = s.stage1(1)
    for p in gen:
        if p.message.startswith("stage 1: step 12"):
            break  # the process "dies" here: the generator is never closed
    [folder] = (registry.user_root / "glomeruli" / "runs").iterdir()
    TrainingRun(folder)._write_info({**TrainingRun.open(folder).info, "pid": 2**22 + 99})
    return registry, a, s, gen, folder


def test_the_dock_says_how_to_continue_a_killed_round(make_napari_viewer, tmp_path):
    """A round killed in a napari that crashed: the next dock names it and says to roll back to
    its start version; once that round has run to its end, the line is gone."""
    from napari_medseg.core.jobs import collect
    from napari_medseg.methods.box_iterative.stages import IterativeTraining, StageConfig
    from napari_medseg.widgets.box_iterative import BoxIterativeWidget

    registry, a, s, gen, _folder = _killed_round(tmp_path, 21)
    w = BoxIterativeWidget(make_napari_viewer(), registry=registry)
    v = s.history[-1].version
    assert "step 10 of 14" in w.interrupted.value and f"Roll back to v{v}" in w.interrupted.value
    assert not w.interrupted.native.isHidden()
    again = IterativeTraining(registry, StageConfig(steps=14, patch=96, batch_size=2, tile=256),
                              workdir=tmp_path / "w2")
    again.set_stage1([a.rgb], [a.boxes])
    again.use_version(v)
    collect(again.stage1(1))  # the round goes on and ends: a new version, which the dock hears of
    w._on_registry("glomeruli")
    assert w.interrupted.value == "" and w.interrupted.native.isHidden() and w.discard_button.native.isHidden()
    gen.close()


def test_forget_the_killed_round_removes_its_saved_steps_only(make_napari_viewer, tmp_path):
    from napari_medseg.widgets.box_iterative import BoxIterativeWidget

    registry, _a, s, gen, folder = _killed_round(tmp_path, 23)
    w = BoxIterativeWidget(make_napari_viewer(), registry=registry)
    assert not w.discard_button.native.isHidden()
    assert w.discard_interrupted() == 1
    assert not folder.exists() and w.interrupted.value == "" and w.discard_button.native.isHidden()
    assert [e.version for e in registry.list("glomeruli")] == [s.history[0].version]  # round 1 stays
    gen.close()
