"""Stage 0/1/2 rounds, corrections, stopping and bad input of the box-supervised session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.core.jobs import Job, collect
from napari_medseg.core.registry import Registry
from napari_medseg.methods.box_iterative.boxes import fill_boxes
from napari_medseg.methods.box_iterative.labels import GLOMERULUS, UNKNOWN
from napari_medseg.methods.box_iterative.model import build_model, segmentation_loss
from napari_medseg.methods.box_iterative.sampling import PatchSampler, TrainingSlide
from napari_medseg.methods.box_iterative.stages import IterativeTraining, StageConfig
from napari_medseg.methods.box_iterative.synthetic import synthetic_kidney


@pytest.fixture(scope="module")
def slides():
    return [synthetic_kidney((512, 512), seed, density=3.0) for seed in (11, 12, 13)]


def _session(tmp_path, steps=3):
    torch.set_num_threads(2)
    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    return IterativeTraining(reg, StageConfig(steps=steps, patch=128, batch_size=2, tile=512), workdir=tmp_path / "w")


def test_stage1_rounds_save_versions_and_refine_labels_with_cues1(tmp_path, slides):
    s = _session(tmp_path)
    a, b, val = slides
    s.set_stage1([a.rgb, b.rgb], [a.boxes, b.boxes])
    s.set_validation([val.rgb], [val.mask])
    progress, _ = collect(s.stage1(1))
    # round 1 trains on the boxes, as the default prior reads them
    assert np.array_equal(s.slides[1][0].labels, fill_boxes(a.rgb.shape[:2], a.boxes, s.config.box_prior))
    progress2, _ = collect(s.stage1(1))
    r1, r2 = s.history
    assert (r1.stage, r1.round, r2.round) == (1, 1, 2) and r2.version == r1.version + 1
    assert s.registry.get("glomeruli").version == r2.version
    assert {"object_f1", "object_precision", "pixel_f1"} <= r2.metrics.keys()
    # round 2's labels come from Cues 1: one report per slide, every box judged once
    rep = r2.cues[0]
    assert rep["n_boxes"] == len(a.boxes) == rep["n_missed"] + rep["n_under_covered"] + rep["n_kept"]
    labels = np.asarray(s.slides[1][0].labels)
    assert not labels[fill_boxes(labels.shape, a.boxes) == 0].any()  # nothing outside the boxes
    assert [p.metrics.get("round") for p in progress + progress2 if "round" in p.metrics] == [1, 2]
    assert len(r2.predictions) == 2 and all(p.endswith(".zarr") for p in r2.predictions)


def test_corrections_are_fixed_truth_that_cues_never_overwrite(tmp_path, slides):
    s = _session(tmp_path)
    a = slides[0]
    s.set_stage1([a.rgb], [a.boxes])
    collect(s.stage1(1))
    corrected = a.mask.copy()  # the user paints the true outlines
    info = s.correct(1, 0, corrected)
    assert info["fixed_pixels"] > 0 and info["changed_pixels"] > 0
    fixed_mask, fixed_labels = s.slides[1][0].fixed
    collect(s.stage1(1))
    labels = np.asarray(s.slides[1][0].labels)
    assert np.array_equal(labels[fixed_mask], fixed_labels[fixed_mask])
    # the sampler gives corrected pixels more weight
    sampler = PatchSampler(s.slides[1], 128, fixed_weight=5.0, seed=0, augment=False)
    weights = torch.cat([sampler.sample()[1][1].flatten() for _ in range(20)])
    assert set(np.unique(weights.numpy())) <= {1.0, 5.0} and (weights == 5.0).any()


def test_stage2_uses_cues2_from_stage1_and_records_it(tmp_path, slides):
    s = _session(tmp_path)
    a, b, c = slides
    s.set_stage1([a.rgb, b.rgb], [a.boxes, b.boxes])
    collect(s.stage1(1))
    s.set_stage2([c.rgb])
    collect(s.stage2(1))
    rec = s.history[-1]
    assert rec.stage == 2 and rec.round == 1
    meta = s.registry.get("glomeruli", rec.version).meta
    lo, hi = meta["cues2"]["area_range"]
    assert 0 < lo <= hi
    assert meta["stage"] == 2 and rec.cues[0]["n_objects"] == rec.cues[0]["n_kept"] + rec.cues[0]["n_outliers"]


def test_stage2_replay_also_trains_on_the_stage1_slides(tmp_path, slides, monkeypatch):
    """With ``stage2_replay`` Stage 2's patches come from the unlabelled slides and from the
    Stage-1 slides (with their labels from the best Stage-1 model); without, only the former."""
    import napari_medseg.methods.box_iterative.stages as stages_mod

    seen = []

    class Spy(PatchSampler):
        def __init__(self, slides_, *a, **kw):
            seen.append([sl.name for sl in slides_])
            super().__init__(slides_, *a, **kw)

    monkeypatch.setattr(stages_mod, "PatchSampler", Spy)
    a, b, c = slides
    for replay in (False, True):
        seen.clear()
        s = _session(tmp_path / str(replay))
        s.config = StageConfig(steps=3, patch=128, batch_size=2, tile=512, stage2_replay=replay)
        s.set_stage1([a.rgb, b.rgb], [a.boxes, b.boxes], names=["A", "B"])
        collect(s.stage1(1))
        s.set_stage2([c.rgb], names=["C"])
        collect(s.stage2(1))
        assert seen[-1] == (["C", "A", "B"] if replay else ["C"])
        assert all((np.asarray(sl.labels) == GLOMERULUS).any() for sl in s.slides[1])  # labelled, not empty


def test_restart_stage2_runs_stage2_again_from_the_best_stage1_round(tmp_path, slides):
    """A second Stage 2 (here with replay) starts from the best Stage-1 weights, not from the
    first Stage 2's; the first one's versions stay in the registry."""
    a, b, c = slides
    s = _session(tmp_path)
    s.set_stage1([a.rgb, b.rgb], [a.boxes, b.boxes], names=["A", "B"])
    collect(s.stage1(1))
    stage1 = s.history[-1].version
    s.set_stage2([c.rgb], names=["C"])
    collect(s.stage2(1))
    first = s.history[-1]
    old_dir = s.workdir
    loaded = []
    real_use = s.use_version
    s.use_version = lambda v=None: (loaded.append(v), real_use(v))[1]
    s.restart_stage2()
    assert [r.stage for r in s.history] == [1] and s.workdir != old_dir and s.workdir.is_dir()
    s.config.stage2_replay = True
    collect(s.stage2(1))
    second = s.history[-1]
    assert loaded == [stage1]  # back to the Stage-1 model before training again
    assert (second.stage, second.round) == (2, 1) and second.version > first.version
    assert [r.stage for r in s.history] == [1, 2]
    assert {first.version, second.version} <= {e.version for e in s.registry.list("glomeruli")}
    assert all(str(s.workdir) in p for p in second.predictions)


def test_stage0_trains_on_full_masks(tmp_path, slides):
    s = _session(tmp_path)
    a, _, val = slides
    s.set_stage0([a.rgb], [a.instances])
    s.set_validation([val.rgb], [val.mask])
    collect(s.stage0(4))
    assert s.history[-1].stage == 0 and s.registry.get("glomeruli").meta["stage"] == 0
    assert len(s.slides[0][0].objects) == len(a.boxes)


def test_stopping_mid_round_saves_nothing_for_that_round(tmp_path, slides):
    s = _session(tmp_path, steps=50)
    a = slides[0]
    s.set_stage1([a.rgb], [a.boxes])
    job = Job(s.stage1(1))
    for i, _p in enumerate(job):
        if i == 2:
            job.stop()
    assert job.stopped and s.history == [] and s.registry.list("glomeruli") == []
    # the half-trained weights are dropped: the model is what it was before the round
    fresh = build_model(s.config.seed).state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in s.model.state_dict().items())


def test_bad_slides_and_labels_get_one_clear_error(tmp_path, slides):
    s = _session(tmp_path)
    a = slides[0]
    with pytest.raises(InputError, match="not a stack"):
        s.set_stage1([np.stack([a.rgb[..., 0]] * 2, -1)], [a.boxes])
    with pytest.raises(InputError, match="NaN"):
        s.set_stage1([np.full(a.rgb.shape[:2], np.nan, np.float32)], [a.boxes])
    with pytest.raises(InputError, match="no boxes"):
        s.set_stage1([a.rgb], [np.zeros((0, 4))])
    with pytest.raises(InputError, match="do not match"):
        s.set_validation([a.rgb], [a.mask[:100]])
    rgba = np.concatenate([a.rgb, np.full(a.rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    s.set_stage1([rgba], [a.boxes])
    assert s.slides[1][0].image.shape[-1] == 3 and "alpha" in s.notes[-1]
    with pytest.raises(InputError, match="Stage 2 needs"):
        collect(s.stage2(1))


def test_sampler_keeps_the_papers_two_to_one_ratio(slides):
    a = slides[0]
    slide = TrainingSlide(a.rgb, boxes=a.boxes, labels=a.mask, objects=a.boxes)
    sampler = PatchSampler([slide], 128, seed=3, augment=False)
    n = 600
    for _ in range(n):
        sampler._origin()
    frac = sampler.drawn["object"] / n
    assert abs(frac - 2 / 3) < 0.06
    # an object patch contains the centre of the object it was drawn for
    sampler = PatchSampler([slide], 128, object_ratio=(1, 0), seed=4, augment=False)
    x, y = sampler.batch(8)
    assert x.shape == (8, 3, 128, 128) and y.shape == (8, 2, 128, 128)
    assert all((y[i, 0] == GLOMERULUS).any() for i in range(8))


def test_loss_ignores_unknown_pixels():
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    labels = torch.zeros(1, 8, 8)
    labels[0, :4] = UNKNOWN
    labels[0, 6:, 6:] = GLOMERULUS
    target = torch.stack([labels, torch.ones(1, 8, 8)], 1)
    segmentation_loss(logits, target).backward()
    assert torch.all(logits.grad[0, :, :4] == 0) and torch.any(logits.grad[0, :, 4:] != 0)


def test_lazy_pyramid_slide_trains_with_labels_on_disk(tmp_path, monkeypatch):
    """The gigapixel path, small: a pyramidal TIFF read lazily (dask), labels in zarr."""
    import dask.array as da
    import zarr

    from napari_medseg.core.io import read_image
    from napari_medseg.methods.box_iterative import rounds
    from napari_medseg.methods.box_iterative.slides import write_kidney_pyramid

    info = write_kidney_pyramid(tmp_path / "slide.tif", 1024, seed=5, block=512, tile=256)
    levels, _meta = read_image(tmp_path / "slide.tif")
    assert isinstance(levels[0], da.Array) and levels[0].shape == (1024, 1024, 3)
    monkeypatch.setattr(rounds, "IN_MEMORY", 1000)  # anything bigger goes to zarr
    s = _session(tmp_path, steps=2)
    s.set_stage1([levels[0]], [info["boxes"]])
    collect(s.stage1(2))
    labels = s.slides[1][0].labels
    assert isinstance(labels, zarr.Array) and labels.shape == (1024, 1024)
    assert s.history[-1].cues[0]["n_boxes"] == len(info["boxes"])


def test_shipped_glomeruli_model_finds_held_out_glomeruli():
    from napari_medseg.core.segment import POSTPROCESS, PREPROCESS
    from napari_medseg.core.tiling import predict_whole
    from napari_medseg.methods.box_iterative.model import IO, model_from_entry
    from napari_medseg.methods.box_iterative.metrics import pooled_scores

    entry = Registry().get("glomeruli")
    assert entry.source == "shipped" and (entry.path.parent / "MODEL_CARD.md").is_file()
    model, meta = model_from_entry(entry)
    assert meta["io"] == IO
    held = synthetic_kidney((768, 768), 90999)  # a seed no training or benchmark set uses
    prob = predict_whole(model, held.rgb, stride=IO["stride"], channel_axis=-1, preprocess=PREPROCESS["rgb_uint8"],
                         postprocess=POSTPROCESS["softmax"])
    scores = pooled_scores([(prob.argmax(0), held.mask)], min_area=400)
    assert scores["object_f1"] >= 0.8 and scores["pixel_f1"] >= 0.75, scores
    # trained on the hard generator: a held-out hard slide (touching, faint, sclerotic glomeruli,
    # its own stain and focus), scored on the instances a user gets
    from napari_medseg.methods.box_iterative.instances import expected_radius
    from napari_medseg.methods.box_iterative.synthetic import HARD

    hard = synthetic_kidney((1024, 1024), 90999, density=2.0, **HARD)
    prob = predict_whole(model, hard.rgb, stride=IO["stride"], channel_axis=-1, preprocess=PREPROCESS["rgb_uint8"],
                         postprocess=POSTPROCESS["softmax"])
    scores = pooled_scores([(prob.argmax(0), hard.instances)], min_area=400, gt_instances=True,
                           radius=expected_radius(hard.boxes))
    assert scores["object_f1"] >= 0.7 and scores["pixel_f1"] >= 0.8, scores


# ------------------------------------------------------------ the instance head (issue 17, item 2)
def test_sampler_draws_the_three_class_target_from_boxes_and_from_true_instances():
    from napari_medseg.methods.box_iterative.instances import BOUNDARY, instances_from_classes
    from napari_medseg.methods.box_iterative.model import BOUNDARY_WEIGHT
    from napari_medseg.methods.box_iterative.synthetic import HARD

    k = synthetic_kidney((512, 512), 7, density=3.0, **HARD)
    box_slide = TrainingSlide(k.rgb, boxes=k.boxes, labels=fill_boxes((512, 512), k.boxes), objects=k.boxes)
    sampler = PatchSampler([box_slide], 128, object_ratio=(1, 0), seed=1, augment=False, boundary=True)
    _, y = sampler.batch(6)
    labels, weights = y[:, 0].numpy(), y[:, 1].numpy()
    assert set(np.unique(labels)) <= {0, GLOMERULUS, BOUNDARY, UNKNOWN} and (labels == BOUNDARY).any()
    np.testing.assert_array_equal(weights == BOUNDARY_WEIGHT, labels == BOUNDARY)
    # true instances (Stage 0): the target's instances are the true ones, touching pairs apart
    true = TrainingSlide(k.rgb, labels=k.mask, objects=k.boxes, instances=k.instances)
    s0 = PatchSampler([true], 512, object_ratio=(0, 1), seed=0, augment=False, boundary=True)
    target = s0.sample()[1][0].numpy().astype(np.uint8)
    inst = instances_from_classes(target)
    assert inst.max() == k.instances.max()
    assert np.array_equal(inst > 0, k.mask > 0)
    # without the head the labels stay binary
    plain = PatchSampler([box_slide], 128, object_ratio=(1, 0), seed=1, augment=False)
    assert set(np.unique(plain.batch(3)[1][:, 0].numpy())) <= {0, GLOMERULUS}


def test_loss_of_three_classes_ignores_unknown_and_counts_boundary_as_foreground():
    from napari_medseg.methods.box_iterative.instances import BOUNDARY

    labels = torch.zeros(1, 8, 8)
    labels[0, :4] = UNKNOWN
    labels[0, 5:, 5:] = GLOMERULUS
    labels[0, 5, 5:] = BOUNDARY
    target = torch.stack([labels, torch.ones(1, 8, 8)], 1)
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    segmentation_loss(logits, target).backward()
    assert torch.all(logits.grad[0, :, :4] == 0) and torch.any(logits.grad[0, :, 4:] != 0)
    good = torch.full((1, 3, 8, 8), -9.0)
    good[0, 0] = 9.0
    good[0, 1, 5:, 5:] = 9.0
    good[0, 0, 5:, 5:] = -9.0
    wrong_boundary = good.clone()
    good[0, 2, 5, 5:], good[0, 1, 5, 5:] = 9.0, -9.0
    assert segmentation_loss(good, target) < segmentation_loss(wrong_boundary, target)


def test_a_loaded_model_keeps_its_head_when_training_continues(tmp_path, slides):
    from napari_medseg.core import nets
    from napari_medseg.methods.box_iterative.model import ARCH, IO, METHOD

    torch.set_num_threads(2)
    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    boundary = StageConfig(steps=2, patch=128, batch_size=2, tile=512, head="boundary")
    s = IterativeTraining(reg, boundary, workdir=tmp_path / "w")
    reg.save_new_version("glomeruli", nets.build(ARCH).state_dict(), method=METHOD, arch=ARCH, extra={"io": IO})
    a = slides[0]
    s.set_stage1([a.rgb], [a.boxes])
    s.use_version()  # a two-class model: the session continues it as it is
    collect(s.stage1(1))
    entry = reg.get("glomeruli")
    assert entry.version == 2 and entry.meta["arch"]["kwargs"]["out_channels"] == 2
    assert entry.meta["io"]["classes"] == ["background", "glomerulus"]
    pred = np.asarray(collect(s.predict(a.rgb, tmp_path / "p.zarr"))[1][...])
    assert pred.max() <= 1  # a binary model's labels: no boundary class
    # a fresh session builds the head its settings ask for
    fresh = IterativeTraining(Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "m2"), boundary,
                              workdir=tmp_path / "w2")
    fresh.set_stage1([a.rgb], [a.boxes])
    collect(fresh.stage1(1))
    meta = fresh.registry.get("glomeruli").meta
    assert meta["io"]["classes"][-1] == "boundary" and meta["arch"]["kwargs"]["out_channels"] == 3
    with pytest.raises(InputError):
        IterativeTraining(reg, StageConfig(head="contour"), workdir=tmp_path / "w3")


def test_the_ellipse_prior_reaches_round_one_and_a_bad_prior_is_refused(tmp_path, slides):
    with pytest.raises(InputError, match="box prior"):
        StageConfig(box_prior="circle")
    torch.set_num_threads(2)
    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    s = IterativeTraining(reg, StageConfig(steps=2, patch=128, batch_size=2, tile=512, box_prior="ellipse"),
                          workdir=tmp_path / "w")
    a = slides[0]
    s.set_stage1([a.rgb], [a.boxes])
    collect(s.stage1(1))
    labels = np.asarray(s.slides[1][0].labels)
    np.testing.assert_array_equal(labels, fill_boxes(a.rgb.shape[:2], a.boxes, "ellipse"))
    assert (labels == UNKNOWN).any() and s.history[0].cues == [{"labels": "boxes as their ellipses"}]
    assert s.registry.get("glomeruli").meta["config"]["box_prior"] == "ellipse"
