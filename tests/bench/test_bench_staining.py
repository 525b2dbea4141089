"""`bench staining`: classical despecklers and their tuning, the matched noise level, seams, goals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_medseg.bench import despeckle_baselines as db


def _clean(size=64, seed=0, freq=6.0):
    """A smooth tissue-like image in [0.1, 0.9]: blurred blobs plus a wave."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    blobs = gaussian_filter(rng.random((size, size)), 3.0)
    blobs = (blobs - blobs.min()) / np.ptp(blobs)
    yy, xx = np.mgrid[0:size, 0:size]
    wave = 0.5 + 0.5 * np.sin(xx / freq) * np.cos(yy / (freq * 1.3))
    return (0.1 + 0.8 * (0.6 * blobs + 0.4 * wave)).astype(np.float32)


def test_every_classical_despeckler_beats_the_noisy_image():
    clean_tune, clean = _clean(seed=1), _clean(seed=2)
    noisy_tune = db.speckle([clean_tune], 0.3, 50)[0]
    noisy = db.speckle([clean], 0.3, 60)[0]
    base = db.psnr(clean, noisy)
    for name, fn in db.CLASSICAL.items():
        param, table = db.tune(name, clean_tune, noisy_tune)
        assert param in db.GRIDS[name] and set(table) == set(db.GRIDS[name])
        out = fn(noisy, param)
        assert out.shape == clean.shape and np.isfinite(out).all()
        assert db.psnr(clean, out) > base + 1.0, name
        assert db.ssim(clean, out) > db.ssim(clean, noisy), name


def test_log_gaussian_survives_negative_speckle_draws():
    y = np.full((16, 16), 0.5, np.float32)
    y[3, 3] = -0.2  # a draw of N(1, std) below zero
    out = db.log_gaussian(y, 1.0)
    assert np.isfinite(out).all() and out.min() >= 0.0


def test_tuning_uses_the_tuning_crop_only():
    # a flat tuning crop wants the strongest smoothing, fine scored texture the weakest:
    # the chosen parameters must be the tuning crop's argmax, not the scored crops'
    tuning = np.full((48, 48), 0.5, np.float32)
    yy, xx = np.mgrid[0:48, 0:48]
    scored = [(0.2 + 0.6 * ((yy // 2 + xx // 2) % 2)).astype(np.float32) for _ in range(2)]
    std, seed = 0.2, 3
    out = db.operating_point(None, tuning, scored, std, seed)
    tune_noisy = db.speckle([tuning], std, seed + 10_000)[0]
    scored_noisy = db.speckle(scored, std, seed)
    differ = 0
    for name, fn in db.CLASSICAL.items():
        on_tuning = {p: db.psnr(tuning, fn(tune_noisy, p)) for p in db.GRIDS[name]}
        on_scored = {p: np.mean([db.psnr(c, fn(n, p)) for c, n in zip(scored, scored_noisy)]) for p in db.GRIDS[name]}
        assert out[f"param_{name}"] == max(on_tuning, key=on_tuning.get), name
        differ += max(on_tuning, key=on_tuning.get) != max(on_scored, key=on_scored.get)
        assert out[f"psnr_{name}"] == pytest.approx(on_scored[out[f"param_{name}"]])
    assert differ >= 3  # the test tells the two apart
    assert out["best_classical"] in db.CLASSICAL
    assert out["psnr_best_classical"] == max(out[f"psnr_{n}"] for n in db.CLASSICAL)
    assert "psnr_despeckled" not in out  # no network given


def test_matched_std_hits_the_target_noisy_psnr():
    crops = [_clean(seed=s) for s in range(3)]
    std = db.matched_std(crops, 16.2, seed=5)
    assert abs(db.noisy_psnr(crops, std, 5) - 16.2) <= 0.5
    assert db.matched_std(crops, 20.0, seed=5) < std  # less noise for a higher PSNR
    with pytest.raises(ValueError):
        db.matched_std(crops, 80.0, seed=5)


def test_despeckle_study_on_held_out_crops_with_the_shipped_network():
    from napari_medseg.bench.staining_slide import shipped_models

    despeckler, _, labels = shipped_models("cpu")
    assert labels["despeckle"].endswith("(shipped)")
    tuning, scored = db.held_out_crops(2, 64)
    assert tuning.shape == (64, 64) and len(scored) == 2
    assert not any(np.array_equal(tuning, s) for s in scored)
    r = db.despeckle_study(despeckler, n_crops=2, size=64)
    assert abs(r["psnr_noisy_matched"] - 16.2) <= 0.5 and r["std_matched"] > 0.2
    assert r["psnr_noisy"] > r["psnr_noisy_matched"]
    assert r["psnr_despeckled"] > r["psnr_noisy"] and r["psnr_despeckled_matched"] > r["psnr_noisy_matched"]
    for name in db.CLASSICAL:
        assert f"psnr_{name}" in r and f"ssim_{name}_matched" in r


def test_tiled_staining_has_no_seams_and_staining_scores_are_sane():
    from napari_medseg.bench.staining import SEAM_TOL, seam_check, staining_study
    from napari_medseg.bench.staining_slide import shipped_models
    from napari_medseg.methods.staining.pipeline import StainingNet

    d, g, _ = shipped_models("cpu")
    diff = seam_check(StainingNet(d, g).eval(), size=384, tile=256)
    assert 0.0 <= diff <= SEAM_TOL
    s = staining_study(d, g, n_crops=1, size=256)
    for k in ("gareau", "cyclegan"):
        assert 0 < s[f"color_distance_{k}"] < 100 and 0 < s[f"ssim_{k}"] < 1
    assert s["color_distance_gareau"] != s["color_distance_cyclegan"]


def test_goal_flags_and_the_h100_figure(tmp_path):
    from napari_medseg.bench.staining import goals_met, h100_figures

    r = {"psnr_despeckled": 26.0, "psnr_best_classical": 24.0, "ssim_despeckled": 0.80, "ssim_best_classical": 0.78,
         "gain_db_matched": 8.0, "psnr_noisy_matched": 16.3, "ssim_despeckled_matched": 0.70,
         "color_distance_cyclegan": 3.0, "color_distance_gareau": 6.0, "seam_max_abs_diff": 0.5 / 255,
         "peak_rss_ratio": 1.4}
    met = goals_met(r)
    assert met["goal_psnr_vs_classical_met"] and not met["goal_ssim_vs_classical_met"]
    assert met["goal_matched_gain_met"] and not met["goal_matched_ssim_met"]
    assert met["goal_color_met"] and met["goal_seam_met"] and not met["goal_memory_flat_met"]
    assert not goals_met({**r, "psnr_noisy_matched": 17.0})["goal_matched_gain_met"]  # off the operating point
    f = tmp_path / "h100.json"
    f.write_text(json.dumps({"seconds": 10.5}))
    assert h100_figures(f)["slide_10000x15000_seconds_h100"] == 10.5
    assert h100_figures(tmp_path / "missing.json") == {}
