"""Pixel and object precision / recall / F-score on hand-made masks with known answers; best round."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from napari_medseg.core.errors import InputError
from napari_medseg.methods.box_iterative import metrics
from napari_medseg.methods.box_iterative.labels import UNKNOWN


def test_pixel_scores_known_counts():
    pred = np.array([[1, 1, 1, 1, 0, 0]])
    gt = np.array([[1, 1, 1, 0, 1, 1]])
    s = metrics.pixel_scores(pred, gt)
    assert (s["tp"], s["fp"], s["fn"]) == (3, 1, 2)
    assert s["precision"] == pytest.approx(0.75) and s["recall"] == pytest.approx(0.6)
    assert s["f1"] == pytest.approx(2 / 3)
    gt[0, 3] = UNKNOWN  # the false positive lies where the truth is unknown
    s = metrics.pixel_scores(pred, gt)
    assert (s["tp"], s["fp"], s["fn"]) == (3, 0, 2) and s["precision"] == 1.0


def test_empty_cases():
    z = np.zeros((5, 5), np.uint8)
    one = z.copy()
    one[2, 2] = 1
    for f in (metrics.pixel_scores, metrics.object_scores):
        s = f(z, z)
        assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)
        s = f(one, z)  # only false positives
        assert (s["precision"], s["recall"], s["f1"], s["fp"]) == (0.0, 0.0, 0.0, 1)
        s = f(z, one)  # only misses
        assert (s["precision"], s["recall"], s["f1"], s["fn"]) == (0.0, 0.0, 0.0, 1)


def object_scene():
    gt = np.zeros((20, 20), np.uint8)
    gt[0:4, 0:4] = 1  # G1: found exactly
    gt[10:14, 0:4] = 1  # G2: found with IoU 1/3
    gt[0:4, 10:14] = 1  # G3: found with IoU 0.75
    gt[15:18, 15:18] = 1  # G4: missed
    pred = np.zeros_like(gt)
    pred[0:4, 0:4] = 1
    pred[10:14, 2:6] = 1
    pred[0:4, 10:13] = 1
    pred[7:9, 7:9] = 1  # false positive
    return pred, gt


def test_object_scores_known_counts():
    pred, gt = object_scene()
    s = metrics.object_scores(pred, gt)
    assert (s["tp"], s["fp"], s["fn"], s["n_pred"], s["n_gt"]) == (2, 2, 2, 4, 4)
    assert (s["precision"], s["recall"], s["f1"]) == (0.5, 0.5, 0.5)
    s = metrics.object_scores(pred, gt, iou=0.3)
    assert (s["tp"], s["fp"], s["fn"]) == (3, 1, 1) and s["precision"] == 0.75
    s = metrics.object_scores(pred, gt, iou=0.8)
    assert s["tp"] == 1


def test_object_matching_is_one_to_one():
    gt = np.zeros((6, 6), np.uint8)
    gt[0:4, 0:4] = 1
    pred = np.zeros_like(gt)
    pred[0:4, 0:2] = 1  # IoU 0.5
    pred[0:4, 3] = 1  # IoU 0.25, a separate object (column 2 is empty)
    s = metrics.object_scores(pred, gt, iou=0.2)
    assert (s["tp"], s["fp"], s["fn"], s["n_pred"]) == (1, 1, 0, 2)


def test_objects_are_8_connected_and_instances_are_kept_apart():
    diag = np.eye(4, dtype=np.uint8)
    assert metrics.object_scores(diag, diag)["n_pred"] == 1
    gt = np.zeros((6, 8), np.int32)
    gt[1:5, 1:3] = 1
    gt[1:5, 3:5] = 2  # touching the first: one component, two instances
    pred = (gt > 0).astype(np.uint8)
    s = metrics.object_scores(pred, gt)
    assert (s["tp"], s["n_gt"], s["f1"]) == (1, 1, 1.0)
    s = metrics.object_scores(pred, gt, gt_instances=True)
    assert (s["tp"], s["fn"], s["n_gt"], s["n_pred"]) == (1, 1, 2, 1)
    assert metrics.pixel_scores(pred, gt, gt_instances=True)["f1"] == 1.0
    with pytest.raises(InputError):
        metrics.object_scores(pred, -gt, gt_instances=True)


def test_predicted_objects_on_unknown_truth_are_not_counted():
    gt = np.zeros((20, 20), np.uint8)
    gt[10:15, 10:15] = UNKNOWN
    pred = np.zeros_like(gt)
    pred[11:13, 11:13] = 1  # all on unknown ground
    s = metrics.object_scores(pred, gt)
    assert (s["n_pred"], s["fp"], s["f1"]) == (0, 0, 1.0)
    pred[0:4, 11:13] = 1  # a separate object, truly false
    s = metrics.object_scores(pred, gt)
    assert (s["n_pred"], s["fp"]) == (1, 1)


def test_scores_flat_dict_and_zarr_input(tmp_path):
    pred, gt = object_scene()
    z = zarr.open_array(str(tmp_path / "gt.zarr"), mode="w", shape=gt.shape, dtype=gt.dtype, chunks=(8, 8))
    z[...] = gt
    s = metrics.scores(pred, z)
    assert set(s) == {"object_precision", "object_recall", "object_f1", "pixel_precision", "pixel_recall", "pixel_f1"}
    assert s["object_f1"] == 0.5
    px = metrics.pixel_scores(pred, gt)
    assert s["pixel_f1"] == pytest.approx(px["f1"]) and px["tp"] == 16 + 8 + 12


def test_bad_input():
    with pytest.raises(InputError, match="do not match"):
        metrics.scores(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError):
        metrics.object_scores(np.zeros((4, 4)), np.zeros((4, 4)), iou=0)


def test_best_round_picks_the_peak_earliest_on_ties():
    history = [{"object_f1": math.nan}, {"object_f1": 0.5}, {"object_f1": 0.8}, {"object_f1": 0.8},
               {"object_f1": 0.7, "pixel_f1": 0.9}]
    assert metrics.best_round(history) == 2
    assert metrics.best_round([{"pixel_f1": 0.1}, {"pixel_f1": 0.2}], key="pixel_f1") == 1
    with pytest.raises(InputError, match="Round 0"):
        metrics.best_round(history, key="pixel_f1")
    with pytest.raises(InputError):
        metrics.best_round([])


def test_best_round_breaks_object_f1_ties_by_pixel_f1():
    history = [{"object_f1": 1.0, "pixel_f1": 0.87}, {"object_f1": 1.0, "pixel_f1": 0.90},
               {"object_f1": 0.9, "pixel_f1": 0.95}, {"object_f1": 1.0, "pixel_f1": 0.90}]
    assert metrics.best_round(history) == 1  # level on both: the earliest
    assert metrics.best_round(history, tie=None) == 0


def test_model_card_says_which_stage_2_and_which_validation_slides(tmp_path):
    import json

    from napari_medseg.core import paths
    from napari_medseg.methods.box_iterative.card import write_model_card
    from napari_medseg.methods.box_iterative.recipe import SEEDS

    meta = json.loads((paths.models_dir() / "glomeruli" / "v0003.json").read_text())
    for replay in (True, False):
        meta["config"]["stage2_replay"] = replay
        text = write_model_card(tmp_path, meta, "napari-medseg train box_iterative --ship").read_text()
        assert ("replayed, on IS-train1" in text) is replay and ("the paper's Stage 2" in text) is not replay
        assert f"{len(SEEDS['val'])} hard synthetic slides, seeds {', '.join(map(str, SEEDS['val']))}" in text
        assert f"{int(meta['metrics']['n_true_objects'])} glomeruli" in text and "Stage 2 round 3" in text
