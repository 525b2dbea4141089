"""`bench box_iterative`'s whole-slide part: a pyramidal TIFF segmented lazily in a child."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.core.registry import Registry
from napari_medseg.methods.box_iterative.model import ARCH, IO, METHOD, build_model


def test_wsi_study_segments_a_pyramid_in_a_child_and_reports_memory(tmp_path):
    from napari_medseg.bench.box_iterative import wsi_study

    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    entry = reg.save_new_version("glomeruli", build_model(0).state_dict(), method=METHOD, arch=ARCH, extra={"io": IO})
    rows = wsi_study([1024], str(entry.path), tmp_path)
    row = rows[1024]
    assert row["megapixels"] == 1024 * 1024 / 1e6 and row["megapixels_per_s"] > 0
    assert row["peak_rss_mb"] >= row["rss_before_mb"] > 0 and row["n_glomeruli"] > 0
    assert not list(tmp_path.glob("kidney_1024*"))  # the slide and its labels are removed


def test_pooled_scores_count_objects_over_slides_and_skip_specks():
    from napari_medseg.methods.box_iterative.metrics import pooled_scores

    gt = np.zeros((64, 64), np.uint8)
    gt[10:30, 10:30] = 1
    pred = gt.copy()
    pred[50:52, 50:52] = 1  # a 4-px speck
    both = pooled_scores([(pred, gt), (np.zeros_like(gt), gt)])
    assert both["object_recall"] == 0.5 and both["object_precision"] == 0.5
    assert pooled_scores([(pred, gt)], min_area=10)["object_precision"] == 1.0
    assert pooled_scores([(pred, gt)], min_area=10)["pixel_precision"] < 1.0  # pixels keep every pixel


def test_results_over_seeds_keep_each_seed_and_the_verdicts():
    from napari_medseg.bench.box_iterative import over_seeds, verdicts

    a = {"f1_supervised": 1.0, "f1_stage1_best": 0.95, "f1_stage2": 0.96, "f1_stage1_by_round": [0.5, 0.9],
         "f1_iou75_by_round": [0.2, 0.6, 0.7], "quick": True}
    b = {**a, "f1_stage1_best": 0.85, "f1_stage2": 0.8, "f1_iou75_by_round": [0.3, 0.2, 0.4]}
    r = over_seeds([a, b])
    assert r["f1_stage1_best"] == pytest.approx(0.9) and r["f1_stage1_best_by_seed"] == [0.95, 0.85]
    assert r["f1_iou75_by_round"] == [0.25, 0.4, 0.55] and r["quick"] is True
    assert verdicts(a) == {"stage1_vs_supervised": True, "stage2_vs_stage1": True, "iou75_rises": True}
    assert verdicts(b) == {"stage1_vs_supervised": False, "stage2_vs_stage1": False, "iou75_rises": False}
    # the other Stage 2 (run from the same Stage-1 round) gets its own verdict
    c = {**b, "f1_stage2_replay": 0.9}
    assert verdicts(c)["stage2_replay_vs_stage1"] is True and verdicts(c)["stage2_vs_stage1"] is False


def test_foreground_first_decision_keeps_objects_whole():
    import torch

    from napari_medseg.core.segment import POSTPROCESS

    p = torch.tensor([0.4, 0.3, 0.3]).log().view(1, 3, 1, 1)  # background most probable alone, not together
    out = POSTPROCESS["softmax_foreground"](p)
    assert int(out.argmax(1)) == 1 and torch.allclose(out.sum(1), torch.ones(1, 1, 1))
    two = torch.randn(2, 2, 5, 5)
    assert torch.allclose(POSTPROCESS["softmax_foreground"](two), POSTPROCESS["softmax"](two))
