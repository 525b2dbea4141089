"""`bench box_iterative --real`: keys, protocol and goals on stardist's real nuclei image (tiny budget)."""

import json

import numpy as np
import pytest


def test_real_bench_keys_and_protocol(tmp_path, monkeypatch, one_thread):
    from napari_medseg.bench import BENCHMARKS
    from napari_medseg.bench import box_iterative_real as b

    assert BENCHMARKS["box_iterative_real"] == "napari_medseg.bench.box_iterative_real:run"
    image, mask = b.nuclei()
    boxes, left, right = b.split_halves(mask)
    assert (boxes[:, 3] <= left.stop).all() and len(boxes) > 40  # boxes only from the left half
    monkeypatch.setitem(b.SIZES, True, {"rounds": 2, "steps": 2, "seeds": (0, 1)})
    out = tmp_path / "real.json"
    r = b.run(quick=True, json_path=str(out))
    for prefix in ("real_", "otsu_ws_real_", "supervised_real_"):
        for k in ("f1_iou50", "f1_iou75", "pixel_dice"):
            assert 0.0 <= r[prefix + k] <= 1.0, prefix + k
    assert len(r["real_f1_iou50_by_round"]) == 2 and r["seeds"] == [0, 1] and len(r["real_f1_iou75_by_seed"]) == 2
    assert r["real_f1_iou50"] == pytest.approx(np.mean(r["real_f1_iou50_by_seed"]), abs=1e-4)
    assert r["real_f1_iou50_by_round"][-1] == pytest.approx(r["real_f1_iou50"], abs=1e-4)
    assert len(r["supervised_real_pixel_dice_by_seed"]) == 2
    assert r["otsu_ws_real_f1_iou50"] > 0.6  # the classical pipeline works on this image
    assert r["n_nuclei_right"] == len(np.unique(mask[:, right])) - 1
    assert ("NOT met" in r["goals"]["real_vs_otsu_ws"]) != r["goal_real_vs_otsu_ws_met"]
    assert "inverted" in r["input_note"] and json.loads(out.read_text()) == r


def test_the_full_real_bench_runs_the_methods_own_defaults(monkeypatch):
    """What the bench reports is what a user gets from `train box_iterative` and the dock."""
    from napari_medseg.bench import box_iterative_real as b
    from napari_medseg.methods.box_iterative import options

    monkeypatch.setitem(options.DEFAULTS, "steps", 7)
    full = b._full_size()
    assert full["steps"] == 7 and full["rounds"] == options.TrainOptions().rounds1
    assert len(full["seeds"]) >= 3 and b.SIZES[False] is None
