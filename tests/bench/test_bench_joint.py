"""`bench joint`: the joint model against its baselines, the GMM and MNI152, with tiny models."""

from __future__ import annotations

import json

import pytest

from napari_medseg.core.errors import MedsegError
from napari_medseg.core.jobs import collect
from napari_medseg.core.registry import Registry
from napari_medseg.methods.joint_lesion_tissue.labels import REDUCED
from napari_medseg.methods.joint_lesion_tissue.models import phantom_training_data, train_joint_model
from napari_medseg.methods.joint_lesion_tissue.training import JointConfig

SHAPE, SPACING = (32, 36, 32), (5.0, 5.0, 5.0)



def _train(reg, mode, data):
    controls, patients, val = data
    cfg = JointConfig(patch_size=(16, 16, 16), steps=2, warmup=1, val_every=2, label_set=REDUCED, mode=mode,
                      roi_size=SHAPE)
    _, result = collect(train_joint_model(reg, controls, patients, val, cfg, features=(4, 4, 4), data="phantom",
                                          spacing=SPACING))
    return result["entry"]


def test_missing_models_name_their_train_commands(tmp_path, one_thread):
    from napari_medseg.bench.joint import run

    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    with pytest.raises(MedsegError) as err:
        run(quick=True, registry=reg)
    for mode in ("joint", "tissue_only", "lesion_only"):
        assert f"napari-medseg train joint --mode {mode}" in str(err.value)
    data = phantom_training_data(1, 1, 1, seed=3, shape=SHAPE, spacing=SPACING)
    _train(reg, "joint", data)
    with pytest.raises(MedsegError) as err:
        run(quick=True, registry=reg)
    msg = str(err.value)
    assert "--mode tissue_only" in msg and "--mode lesion_only" in msg and "--mode joint" not in msg


def test_quick_bench_with_tiny_models(tmp_path, one_thread):
    from napari_medseg.bench import BENCHMARKS
    from napari_medseg.bench.joint import HELD_OUT_SEED, run

    assert BENCHMARKS["joint"] == "napari_medseg.bench.joint:run"
    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "models")
    data = phantom_training_data(1, 1, 1, seed=3, shape=SHAPE, spacing=SPACING)
    entries = {m: _train(reg, m, data) for m in ("joint", "tissue_only", "lesion_only")}
    out = tmp_path / "bench" / "joint.json"
    r = run(quick=True, json_path=str(out), registry=reg, n_subjects=1, shape=SHAPE, spacing=SPACING,
            mni_spacing=4.0, timed_runs=1, mni_tissue_spacings=(4.0,))

    tissues = [REDUCED.names[c] for c in REDUCED.tissues]
    assert list(r["dice_joint"]) == [*tissues, "lesion"]
    for key in ("dice_tissue_only", "dice_gmm_baseline", "dice_joint_t1_only_input"):
        assert list(r[key]) == tissues, key
    assert list(r["dice_lesion_only"]) == ["lesion"]
    assert list(r["inter_modality_agreement"]) == [*tissues, "mean"]
    assert set(r["dice_tissue_outside_lesions"]) == {"joint", "tissue_only", "gmm_baseline"}
    dicts = [r[k] for k in ("dice_joint", "dice_tissue_only", "dice_lesion_only", "dice_gmm_baseline",
                            "dice_joint_t1_only_input", "inter_modality_agreement")]
    dicts += list(r["dice_tissue_outside_lesions"].values())
    values = [v for d in dicts for v in d.values()] + [r["dice_mni_gm"], r["dice_mni_wm"]]
    assert all(v is None or 0.0 <= v <= 1.0 for v in values)
    # the GMM sees the true brain mask: far from chance even when the tiny networks are not
    assert all(r["dice_gmm_baseline"][k] > 0.5 for k in tissues)
    assert r["dice_mni_gm"] is not None and r["dice_mni_wm"] is not None
    assert r["volumes_per_s"] > 0 and r["seconds"] > 0 and r["speed_timed_runs"] == 1
    assert r["speed_volume_shape"] == "49x58x47" and r["speed_volume_spacing_mm"] == 4.0  # MNI at 4 mm, uncropped
    assert r["held_out_seeds"] == [HELD_OUT_SEED] and r["n_subjects"] == 1
    assert r["models"] == {m: e.label for m, e in entries.items()}
    for goal, flag in (("dice_joint", "goal_dice_joint_met"), ("dice_gmm_baseline", "goal_above_gmm_met")):
        assert isinstance(r[flag], bool)
        assert ("NOT met" in r["goals"][goal]) != r[flag] and "vs" in r["goals"][goal]
    for key in ("dice_mni4mm_joint", "dice_mni4mm_gmm", "dice_mni4mm_tissue_only", "dice_mni4mm_joint_unrefined"):
        assert list(r[key]) == tissues and all(v is None or 0 <= v <= 1 for v in r[key].values()), key
    assert all(r["dice_mni4mm_gmm"][k] > 0.6 for k in tissues)  # the baseline on the real T1, same mask
    assert r["mni_lesion_fp_ml_clean"] >= 0 and r["mni_lesion_fp_ml_clean_t1_only"] >= 0
    assert r["volume_seconds_cpu"] == r["seconds_per_volume"] and r["mni_lesion_true_ml"] > 0
    assert json.loads(out.read_text()) == r


def test_goals_compare_with_the_margin():
    from napari_medseg.bench.joint import goals

    base = {"CSF": 0.80, "grey matter": 0.80, "white matter": 0.80}
    r = {"dice_joint": {"CSF": 0.79, "grey matter": 0.85, "white matter": 0.90, "lesion": 0.58},
         "dice_tissue_only": base, "dice_lesion_only": {"lesion": 0.60},
         "dice_gmm_baseline": {"CSF": 0.70, "grey matter": 0.70, "white matter": 0.70}}
    texts, flags = goals(r, REDUCED)
    assert flags["goal_dice_joint_met"] and flags["goal_above_gmm_met"]
    assert "CSF 0.790 vs 0.800" in texts["dice_joint"] and "lesion 0.580 vs 0.600" in texts["dice_joint"]
    r["dice_joint"] = {**r["dice_joint"], "lesion": 0.57, "CSF": 0.69}
    texts, flags = goals(r, REDUCED)
    assert not flags["goal_dice_joint_met"] and not flags["goal_above_gmm_met"]
    assert texts["dice_joint"].count("NOT met") == 1 and "NOT met" in texts["dice_gmm_baseline"]
    r["dice_joint"] = {**r["dice_joint"], "CSF": None}  # a class never scored is not met
    assert not goals(r, REDUCED)[1]["goal_above_gmm_met"]


def test_real_mni_goals():
    from napari_medseg.bench.joint import goals

    ok = {"CSF": 0.9, "grey matter": 0.9, "white matter": 0.9}
    r = {"dice_joint": {**ok, "lesion": 0.8}, "dice_tissue_only": ok, "dice_lesion_only": {"lesion": 0.8},
         "dice_gmm_baseline": ok, "dice_mni1mm_joint": ok, "dice_mni1mm_gmm": {**ok, "CSF": 0.91},
         "dice_mni2mm_joint": ok, "dice_mni2mm_gmm": ok, "dice_mni_lesion": 0.71, "mni_lesion_fp_ml_clean": 0.2,
         "mni_lesion_fp_ml_clean_t1_only": 0.6, "volume_seconds_cpu": 8.0}
    texts, flags = goals(r, REDUCED)
    assert not flags["goal_mni1mm_above_gmm_met"] and flags["goal_mni2mm_above_gmm_met"]  # ties count as met
    assert "CSF 0.900 vs 0.910" in texts["dice_mni1mm_joint"] and "NOT met" in texts["dice_mni1mm_joint"]
    assert flags["goal_mni_lesion_met"] and flags["goal_speed_met"]
    assert not flags["goal_mni_clean_fp_met"] and "T1 alone 0.600 mL" in texts["mni_lesion_fp_ml_clean"]
    r.update(mni_lesion_fp_ml_clean_t1_only=0.5, volume_seconds_cpu=8.3, dice_mni_lesion=0.69)
    flags = goals(r, REDUCED)[1]
    assert flags["goal_mni_clean_fp_met"] and not flags["goal_speed_met"] and not flags["goal_mni_lesion_met"]


def test_held_out_subjects_are_never_training_subjects():
    from napari_medseg.bench.joint import HELD_OUT_SEED
    from napari_medseg.methods.joint_lesion_tissue.phantom import subject_seed

    held = set(range(HELD_OUT_SEED, HELD_OUT_SEED + 100))
    used = {subject_seed(s, w, i) for s in (0, 1, 7) for w in ("control", "patient", "test") for i in range(100)}
    assert not held & used
    assert all(s % 1_000_000 >= 300_000 for s in held)


def test_subject_means_skip_classes_absent_from_both():
    from napari_medseg.bench.joint import _mean

    m = _mean([{"a": 0.5, "b": float("nan")}, {"a": 0.7, "b": float("nan")}])
    assert m["a"] == pytest.approx(0.6) and m["b"] is None
    json.dumps(m, allow_nan=False)  # valid JSON
