"""`bench tracking` on a handful of images: every key, sane values, the JSON file."""

import json

import torch

from napari_medseg.bench.tracking import run
from napari_medseg.core.registry import Registry
from napari_medseg.methods.tracking.model import MODEL_NAME
from napari_medseg.methods.tracking.policy import BetaPolicy


def test_bench_tracking_reports_ours_and_the_baseline_side_by_side(tmp_path):
    torch.manual_seed(0)
    entry = Registry().save_new_version(MODEL_NAME, BetaPolicy().state_dict(), method="dai2019-tracking",
                                        arch=BetaPolicy().arch, metrics={"train_minutes_to_90pct": 12.5})
    out = tmp_path / "bench.json"
    r = run(json_path=str(out), n=3, seconds=0.5)
    assert json.loads(out.read_text())["n_images"] == 3
    for key in ("coverage_pct", "baseline_coverage_pct", "coverage_pct_crossing", "baseline_coverage_pct_crossing",
                "coverage_pct_crossing_both_ways"):
        assert 0.0 <= r[key] <= 100.0
    # the minimal path is given both ends of a clean synthetic axon: it finds it
    assert r["baseline_coverage_pct"] > 90.0 and r["baseline_error_px"] < 1.0
    assert r["env_steps_per_s"] > 0 and r["single_env_steps_per_s"] > 0
    assert r["batched_speedup"] == r["env_steps_per_s"] / r["single_env_steps_per_s"]
    assert r["train_minutes_to_90pct"] == 12.5 and r["model_version"] == entry.version  # the current one
    assert set(r["goals"]) >= {"coverage_pct", "error_px", "batched_speedup", "train_minutes_to_90pct"}
