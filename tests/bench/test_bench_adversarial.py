"""`bench adversarial`: the three papers' comparisons of issue 7, run end to end with tiny settings."""

from __future__ import annotations

import json

import pytest

CARDIAC = dict(size=32, n_train=6, n_val=1, n_test=1, steps=3, pretrain_steps=1, batch_size=2, val_every=2,
               features=(4, 8), dilations=(2,), d_features=(4, 8))
SEGAN = dict(size=32, spacing=4.5, n_train=2, n_val=1, n_test=1, steps=2, source_steps=2, batch_size=2, val_every=2,
             seg_features=(4, 8), critic_features=(4, 8))
NORM = dict(size=32, spacing=4.5, n_train=2, n_val=2, n_test=2, slice_step=4, patch=16, steps=3, warmup_steps=1,
            batch_size=2, val_every=2, segmenter_features=(4, 8), generator_features=(4, 8),
            discriminator_features=(4, 8))
CARDIAC_CLASSES = ["LV", "myo", "RV", "mean"]
TISSUES = ["CSF", "grey matter", "white matter", "mean"]
PER_CLASS = {f"cardiac_{m}_{k}": CARDIAC_CLASSES for m in ("dice", "hd95") for k in ("unet", "adv", "adv_transfer")}
PER_CLASS.update({f"norm_dice_{k}": TISSUES for k in ("cross_site_no_adaptation", "same_site_no_adaptation",
                                                       "standardized", "adversarial")})
SCALARS = ["segan_dice_multiply", "segan_dice_concat", "transfer_dice_full", "transfer_dice_frozen_critic",
           "transfer_dice_scratch", "transfer_dice_source_only", "transfer_source_dice"]
JSD = ["norm_jsd_before", "norm_jsd_after", "norm_jsd_standardized"]
FLAGS = {"goal_cardiac_met": "cardiac_dice_adv_transfer", "goal_segan_met": "segan_dice_concat",
         "goal_transfer_met": "transfer_dice_full",
         "goal_norm_jsd_met": "norm_jsd_after", "goal_norm_dice_met": "norm_dice_adversarial",
         "goal_norm_checkerboard_met": "norm_checkerboard_ratio"}


def _dice_ok(v) -> bool:
    return v is None or 0.0 <= v <= 1.0


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    import torch

    from napari_medseg.bench.adversarial import run

    out = tmp_path_factory.mktemp("bench") / "sub" / "adversarial.json"
    before = torch.get_num_threads()
    r = run(quick=True, json_path=str(out), seeds=(0, 1), cardiac=CARDIAC, segan=SEGAN, norm=NORM)
    assert torch.get_num_threads() == before  # the bench runs on one thread and gives the setting back
    return r, out


def test_registered():
    from napari_medseg.bench import BENCHMARKS

    assert BENCHMARKS["adversarial"] == "napari_medseg.bench.adversarial:run"


def test_every_key_with_its_classes_and_ranges(result):
    r, _ = result
    for key, classes in PER_CLASS.items():
        assert list(r[key]) == classes, key
        if "hd95" not in key:
            assert all(_dice_ok(v) for v in r[key].values()), (key, r[key])
    for key in SCALARS:
        assert _dice_ok(r[key]), (key, r[key])
    for key in JSD:
        assert r[key] is not None and 0.0 <= r[key] <= 1.0, (key, r[key])
    assert r["norm_jsd_standardized"] < r["norm_jsd_before"]  # z-scoring removes the sites' units
    for k in ("segan_hd95_multiply", "segan_hd95_concat", "transfer_hd95_full", "transfer_hd95_frozen_critic",
              "transfer_hd95_scratch"):
        assert k in r and (r[k] is None or r[k] >= 0)
    by_site = r["norm_dice_by_site"]
    assert {"infant->adult", "adult->infant", "infant->infant", "adult->adult", "standardized (adult)",
            "adversarial (infant)"} <= set(by_site)
    cross = [by_site["infant->adult"]["mean"], by_site["adult->infant"]["mean"]]
    assert r["norm_dice_cross_site_no_adaptation"]["mean"] == pytest.approx(sum(cross) / 2)
    assert r["seeds"] == [0, 1] and [p["seed"] for p in r["per_seed"]] == [0, 1]
    assert set(r["group_seconds"]) >= {"cardiac", "segan", "norm"} and r["seconds"] > 0 and r["peak_rss_mb"] > 0
    assert r["settings"]["cardiac"]["steps"] == 3 and r["settings"]["norm"]["patch"] == 16
    assert isinstance(r["notes"], list) and any("Exp. 3-4" in n for n in r["notes"])


def test_seed_means_and_spread(result):
    r, _ = result
    a, b = (p["segan_dice_concat"] for p in r["per_seed"])
    assert r["segan_dice_concat"] == pytest.approx((a + b) / 2)
    assert r["spread"]["segan_dice_concat"] == pytest.approx(abs(a - b) / 2)
    lv = [p["cardiac_dice_unet"]["LV"] for p in r["per_seed"]]
    assert r["cardiac_dice_unet"]["LV"] == pytest.approx(sum(lv) / 2)
    assert set(r["spread"]["cardiac_dice_unet"]) == set(CARDIAC_CLASSES)


def test_goal_texts_follow_the_flags(result):
    r, _ = result
    for flag, goal in FLAGS.items():
        assert isinstance(r[flag], bool)
        assert ("NOT met" in r["goals"][goal]) != r[flag], (flag, r["goals"][goal])
        assert "of 2 seed(s)" in r["goals"][goal]


def test_json_equals_the_result(result):
    r, out = result
    assert json.loads(out.read_text()) == r


def _fake(card, concat, multiply, jsd, norm, checkerboard=1.0, transfer=(0.5, 0.5, 0.5)):
    def cls(names, v):
        return {**{n: v for n in names[:-1]}, "mean": v}

    adv = card[2] if len(card) > 2 else card[0]  # U+A+D: between the two unless given
    return {"cardiac_dice_unet": cls(CARDIAC_CLASSES, card[0]), "cardiac_dice_adv": cls(CARDIAC_CLASSES, adv),
            "cardiac_dice_adv_transfer": cls(CARDIAC_CLASSES, card[1]), "segan_dice_concat": concat,
            "segan_dice_multiply": multiply, "norm_jsd_before": jsd[0], "norm_jsd_after": jsd[1],
            "norm_jsd_standardized": 0.1, "norm_dice_cross_site_no_adaptation": cls(TISSUES, norm[0]),
            "norm_dice_standardized": cls(TISSUES, norm[1]), "norm_dice_adversarial": cls(TISSUES, norm[2]),
            "norm_checkerboard_ratio": checkerboard,
            **dict(zip((f"transfer_dice_{k}" for k in ("frozen_critic", "full", "scratch")), transfer)),
            "transfer_dice_source_only": 0.3}


def test_goals_directions():
    from napari_medseg.bench.adversarial import goals

    good = _fake((0.6, 0.6), 0.8, 0.8, (0.5, 0.2), (0.3, 0.6, 0.7), 1.2)  # ties count for the ≥ goals
    texts, flags = goals(good, [good])
    assert all(flags.values()) and not any("NOT met" in t for t in texts.values())
    assert "held in 1 of 1 seed(s)" in texts["segan_dice_concat"]
    # adversarial only ties standardized; the frozen critic below full fine-tuning
    bad = _fake((0.6, 0.59), 0.7, 0.8, (0.5, 0.5), (0.3, 0.7, 0.7), 1.3, (0.49, 0.5, 0.4))
    texts, flags = goals(bad, [good, bad])
    assert not any(flags.values())
    assert all("NOT met" in texts[g] for g in FLAGS.values()) and "held in 1 of 2 seed(s)" in texts["norm_jsd_after"]
    below_unet = _fake((0.6, 0.7, 0.5), 0.8, 0.8, (0.5, 0.2), (0.3, 0.6, 0.7))  # U+A+D below the U-Net
    assert not goals(below_unet)[1]["goal_cardiac_met"]
    missing = _fake((0.6, 0.6), None, 0.8, (0.5, 0.2), (0.3, 0.6, 0.7))
    assert not goals(missing)[1]["goal_segan_met"]  # a missing value never meets a goal
    scratch_best = _fake((0.6, 0.6), 0.8, 0.8, (0.5, 0.2), (0.3, 0.6, 0.7), 1.0, (0.5, 0.45, 0.46))
    assert not goals(scratch_best)[1]["goal_transfer_met"]  # full fine-tuning below training from scratch


def test_held_out_data_never_trains():
    from napari_medseg.bench.adversarial_groups import HELD_OUT, TRAIN_DATA_SEED, VAL_DATA_SEED, cardiac_data

    assert HELD_OUT not in (TRAIN_DATA_SEED, VAL_DATA_SEED)
    data = cardiac_data(dict(CARDIAC, n_test=2))
    seeds = {k: {c.seed for c in v} for k, v in data.items()}
    assert not seeds["test"] & (seeds["train"] | seeds["val"]) and not seeds["train"] & seeds["val"]
    assert all(c.role == "fully labelled" for c in data["test"])  # LGE truth to score on
