"""bench tracking --real: keys, the stored references, and sane baselines."""

from __future__ import annotations

import numpy as np
import pytest


def test_references_follow_ridges_and_stay_in_the_images():
    from napari_medseg.bench.tracking_real import load_references, real_images
    from napari_medseg.methods.tracking.greedy import ridge_map

    images = real_images()
    fibres = load_references()
    assert len(fibres) >= 10 and {f["image"] for f in fibres} == {"retina", "microaneurysms"}
    assert sum(bool(f.get("through_junction")) for f in fibres) >= 3
    for f in fibres:
        ref = np.asarray(f["reference"])
        img = images[f["image"]]
        assert np.allclose(ref[0], f["start"]) and np.allclose(ref[-1], f["end"])
        assert (ref >= 0).all() and (ref < np.array(img.shape)).all()
        r = ridge_map(img)[tuple(np.round(ref).astype(int).T)]
        assert np.median(r) > 2 * np.median(ridge_map(img))  # on a vessel, not across background


def test_quick_real_bench_reports_every_key_for_ours_and_both_baselines(tmp_path):
    import json

    from napari_medseg.bench.tracking_real import run

    out = run(quick=True, json_path=str(tmp_path / "r.json"))
    keys = ["real_coverage_pct", "real_error_px", "real_reached_end_rate", "real_overshoot_px",
            "real_wrong_branches_per_10", "real_ms_per_fibre"]
    for k in keys:
        for prefix in ("", "greedy_", "minpath_"):
            assert np.isfinite(out[prefix + k]), prefix + k
    assert 0 <= out["real_coverage_pct"] <= 100 and out["minpath_real_reached_end_rate"] == 1.0
    assert out["greedy_real_coverage_pct"] > 50  # the classical follower works on these vessels
    assert np.isfinite(out["real_entropy_within"]) and np.isfinite(out["real_entropy_outside"])
    assert 0 <= out["real_auto_heading_ok_rate"] <= 1 and 0 <= out["real_auto_coverage_pct"] <= 100
    assert set(out["goals_met"]) == set(out["goals"]) and all(isinstance(v, bool) for v in out["goals_met"].values())
    assert out["minpath_real_overshoot_n"] == out["fibres"] and out["greedy_real_overshoot_n"] <= out["fibres"]
    assert len(out["per_fibre"]["fibre"]) == out["fibres"]
    # with ends: from both sides never reaches fewer ends than one way (the join is only a fallback)
    assert out["real_reached_end_rate"] >= out["real_reached_end_rate_one_way"]
    assert out["greedy_real_reached_end_rate_both_ways"] >= out["greedy_real_reached_end_rate"]
    assert 0 <= out["real_joined_rate"] <= out["real_reached_end_rate"]
    assert 0 <= out["real_end_coverage_pct"] <= 100
    assert json.loads((tmp_path / "r.json").read_text())["fibres"] == out["fibres"]
    from napari_medseg.bench.tracking_real import TIMING_REPEATS

    ratios = out["real_time_ratio_to_minpath_by_round"]
    assert len(ratios) == TIMING_REPEATS and all(r > 0 for r in ratios)
    assert out["real_time_ratio_to_minpath_median"] == pytest.approx(float(np.median(ratios)), abs=1e-3)


def test_timing_rounds_run_the_trackers_in_turn():
    from napari_medseg.bench.tracking_real import _interleaved

    calls = []
    results, seconds = _interleaved({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2},
                                    repeats=3)
    assert calls == ["a", "b"] * 3 and results == {"a": 1, "b": 2}
    assert [len(v) for v in seconds.values()] == [3, 3] and all(t >= 0 for v in seconds.values() for t in v)


def test_symmetries_reach_our_tracker_and_other_benches_refuse_them(monkeypatch, capsys):
    import pytest

    from napari_medseg.bench.tracking_real import run
    from napari_medseg.cli import main
    from napari_medseg.methods.tracking import track as T

    class Seen(Exception):
        pass

    def spy(image, starts, ends=None, *, policy=None, config=None, **kw):
        raise Seen(config.symmetries)

    monkeypatch.setattr(T, "track", spy)
    with pytest.raises(Seen) as seen:
        run(quick=True, symmetries=8)
    assert seen.value.args == (8,)
    assert main(["bench", "tracking", "--quick", "--symmetries", "8"]) == 2  # refused before anything runs
    assert "--symmetries applies to `bench tracking --real` only" in capsys.readouterr().err
