"""Issue 7, part 1: Chen et al. 2019 - data assembly, the three methods, prediction, bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_medseg.core.errors import InputError, TrainingError
from napari_medseg.core.registry import Registry
from napari_medseg.methods.adversarial_segmentation import cardiac, chen
from napari_medseg.methods.adversarial_segmentation.chen import (METHODS, ChenConfig, evaluate_target, predict_slices, train_chen, train_chen_model, validation_dice)
from napari_medseg.methods.adversarial_segmentation.chen_data import chen_training_data, chen_validation_data
from napari_medseg.core.adversarial.networks import ConditionalMaskDiscriminator
from napari_medseg.methods.adversarial_segmentation.networks import DilatedResUNet

torch.set_num_threads(1)
SIZE = (32, 32)
TINY = dict(features=(8, 16), dilations=(2,), d_features=(8, 16))


@pytest.fixture(scope="module")
def train_cohort():  # 1 fully labelled, 4 partly labelled (bSSFP + T2), 1 unlabelled
    return cardiac.cardiac_cohort(6, seed=0, size=SIZE)


@pytest.fixture(scope="module")
def val_cohort():
    return cardiac.cardiac_cohort(2, seed=1, size=SIZE, n_fully_labelled=2, n_unlabelled=0)


def cfg(**kw) -> ChenConfig:
    base = dict(steps=4, pretrain_steps=2, batch_size=4, lr=3e-3, val_every=2)
    return ChenConfig(**{**base, **kw})


def nets(seed=0):
    torch.manual_seed(seed)
    return (DilatedResUNet(2, 1, 4, features=(8, 16), dilations=(2,)),
            ConditionalMaskDiscriminator(2, 1, 4, features=(8, 16)))


def run(gen):
    reports = []
    try:
        while True:
            reports.append(next(gen))
    except StopIteration as done:
        return reports, done.value


# -- data -----------------------------------------------------------------------------------


def test_data_assembly(train_cohort):
    unet = chen_training_data(train_cohort, cfg(method="unet"))
    tr = chen_training_data(train_cohort, cfg(method="adversarial_transfer"))
    n_id = sum(len(c.labels[s]) for c in train_cohort for s in c.labels)
    assert len(unet.identity) == len(tr.identity) == n_id and unet.transfer is None
    partly = [c for c in train_cohort if c.role == "partly labelled"]
    assert len(tr.transfer) == sum(2 * len(c.images["LGE"]) for c in partly)  # one pair per source and LGE slice
    p = partly[0]
    rows = [i for i, o in enumerate(tr.transfer.origin) if o == (p.id, "LGE<-T2")]
    assert len(rows) == len(p.images["LGE"])
    np.testing.assert_array_equal(tr.transfer.labels[rows], cardiac.patient_pseudo_masks(p)["T2"])
    assert np.allclose(tr.transfer.images[rows].mean((1, 2)), 0, atol=1e-4)  # z-scored per slice
    assert np.allclose(tr.transfer.images[rows].std((1, 2)), 1, atol=1e-3)
    assert not any(o[0] == train_cohort[0].id for o in tr.transfer.origin)  # its LGE is labelled: in S instead
    assert (train_cohort[0].id, "LGE") in tr.identity.origin
    val = chen_validation_data(train_cohort, cfg())
    assert len(val) == len(train_cohort[0].images["LGE"]) and {o[1] for o in val.origin} == {"LGE"}
    fitted = chen_training_data(train_cohort, cfg(method="unet", size=(40, 24)))
    assert fitted.identity.images.shape[1:] == (40, 24) and fitted.identity.labels.shape[1:] == (40, 24)


# -- training -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_short_run_saves_a_registry_version(tmp_path, train_cohort, val_cohort, method):
    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "user")
    reports, out = run(train_chen_model(reg, train_cohort, val_cohort, cfg(method=method), **TINY))
    assert [r.step for r in reports] == [1, 2, 3, 4]
    for r in reports:
        assert all(math.isfinite(v) for v in r.metrics.values())
        assert {"loss_g", "loss_id"} <= set(r.metrics)
        assert ("loss_dt" in r.metrics) == (method == "adversarial_transfer")
        adv_phase = method != "unet" and r.step > 2
        assert ("loss_d" in r.metrics) == adv_phase and ("loss_adv" in r.metrics) == adv_phase
    assert "val_dice" in reports[1].metrics and "val_dice_myo" in reports[3].metrics
    entry = out["entry"]
    assert entry is not None and entry.meta["method"] == f"chen2019-{method}"
    assert entry.meta["config"]["method"] == method and entry.meta["target"] == "LGE"
    assert entry.meta["class_names"][1] == "LV blood pool"
    model, meta = entry.load()
    assert isinstance(model, DilatedResUNet) and meta["metrics"]["best_step"] == out["best_step"]
    labels = predict_slices(model, val_cohort[0].images["LGE"])
    assert labels.dtype == np.uint8 and labels.shape == val_cohort[0].images["LGE"].shape


def test_stopping_early_keeps_the_weights_so_far(tmp_path, train_cohort, val_cohort):
    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "user")
    gen = train_chen_model(reg, train_cohort, val_cohort, cfg(method="adversarial", steps=50, val_every=20), **TINY)
    next(gen), next(gen)
    gen.close()  # Stop, before the first validation
    entry = reg.get("chen_cardiac")
    assert entry.meta["metrics"]["best_step"] == 2 and "dice" in entry.meta["metrics"]


@pytest.mark.parametrize("method", METHODS)
def test_discriminator_untouched_only_in_unet_mode(train_cohort, method):
    config = cfg(method=method, steps=3, pretrain_steps=1)
    g, d = nets()
    before = {k: v.clone() for k, v in d.state_dict().items()}
    run(train_chen(g, d, chen_training_data(train_cohort, config), None, config))
    changed = [k for k, v in d.state_dict().items() if not torch.equal(v, before[k])]
    assert (not changed) if method == "unet" else any(k.endswith("weight") for k in changed)
    assert all(p.requires_grad for p in d.parameters())  # frozen only during the G steps


def test_pretraining_leaves_d_alone(train_cohort):
    config = cfg(method="adversarial", steps=3, pretrain_steps=3)
    g, d = nets()
    before = {k: v.clone() for k, v in d.state_dict().items()}
    reports, _ = run(train_chen(g, d, chen_training_data(train_cohort, config), None, config))
    assert all("loss_d" not in r.metrics for r in reports)
    assert all(torch.equal(v, before[k]) for k, v in d.state_dict().items())


def test_d_warmup_trains_d_during_pretraining_and_leaves_g_as_without_it(train_cohort):
    """Issue 20: with ``d_warmup`` D learns on G's masks during the pre-training; G's
    pre-training (weights and losses) is exactly what it is without it."""
    out = {}
    for warm in (False, True):
        config = cfg(method="adversarial", steps=3, pretrain_steps=3, d_warmup=warm)
        g, d = nets()
        before = {k: v.clone() for k, v in d.state_dict().items()}
        reports, _ = run(train_chen(g, d, chen_training_data(train_cohort, config), None, config))
        changed = any(not torch.equal(v, before[k]) for k, v in d.state_dict().items() if k.endswith("weight"))
        out[warm] = (g.state_dict(), [r.metrics["loss_g"] for r in reports], changed,
                     all("loss_d" in r.metrics for r in reports))
    assert out[True][2] and out[True][3] and not out[False][2]
    assert out[True][1] == out[False][1]
    assert all(torch.equal(v, out[False][0][k]) for k, v in out[True][0].items())


def test_real_scaling_changes_what_d_learns_from_and_is_checked(train_cohort):
    """Issue 20: with ``real_scaling`` D's real masks are scaled towards G's; the same seeds
    then give another D (and the paper's one-hot masks are the default)."""
    assert cfg().real_scaling == 0
    ds = {}
    for tau in (0.0, 0.9):
        config = cfg(method="adversarial", steps=2, pretrain_steps=1, real_scaling=tau)
        g, d = nets()
        run(train_chen(g, d, chen_training_data(train_cohort, config), None, config))
        ds[tau] = d.state_dict()
    assert any(not torch.equal(v, ds[0.9][k]) for k, v in ds[0.0].items() if k.endswith("weight"))
    with pytest.raises(InputError, match="real_scaling"):
        chen.check_config(cfg(real_scaling=1.5))


def test_short_training_improves_validation_dice(train_cohort, val_cohort):
    config = cfg(method="unet", steps=80, pretrain_steps=0, batch_size=8, val_every=20)
    g, _ = nets()
    val = chen_validation_data(val_cohort, config)
    before = validation_dice(g, val, "cpu")["dice"]
    kept = []
    reports, out = run(train_chen(g, None, chen_training_data(train_cohort, config), val, config,
                                  keep=lambda state, metrics, step: kept.append(step)))
    assert out["best_metrics"]["dice"] > before + 0.1, (before, out["best_metrics"])
    assert kept and kept[-1] == out["best_step"]
    scores = evaluate_target(g, val_cohort)
    assert set(scores["dice"]) == {"LV", "myo", "RV"} and set(scores["hd95"]) == {"LV", "myo", "RV"}
    assert 0 <= scores["mean_dice"] <= 1 and set(scores["per_case"]) == {c.id for c in val_cohort}


def test_predict_slices_any_size():
    g, _ = nets()
    rng = np.random.default_rng(0)
    assert predict_slices(g, rng.normal(size=(3, 30, 27))).shape == (3, 30, 27)
    assert predict_slices(g, rng.normal(size=(17, 21))).shape == (1, 17, 21)
    with pytest.raises(InputError, match="NaN"):
        predict_slices(g, np.full((2, 16, 16), np.nan))


def test_non_finite_loss_is_a_training_error(train_cohort, monkeypatch):
    config = cfg(method="unet", steps=2, pretrain_steps=0)
    monkeypatch.setattr(chen.losses, "segmentation_loss", lambda logits, y, beta: logits.sum() * float("nan"))
    g, _ = nets()
    kept = []
    with pytest.raises(TrainingError, match="nan"):
        run(train_chen(g, None, chen_training_data(train_cohort, config), None, config,
                       keep=lambda *a: kept.append(a)))
    assert not kept


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_is_one_clear_error(train_cohort, val_cohort):
    with pytest.raises(InputError, match="no labelled slices"):
        chen_training_data([c for c in train_cohort if c.role == "unlabelled"], cfg())
    c = train_cohort[1]
    no_lge = dataclasses.replace(c, images={k: v for k, v in c.images.items() if k != "LGE"})
    with pytest.raises(InputError, match="no LGE slices"):
        chen_training_data([no_lge], cfg(method="adversarial_transfer"))
    with pytest.raises(InputError, match="Empty target set"):  # all LGE labelled: nothing to transfer to
        chen_training_data(val_cohort, cfg(method="adversarial_transfer"))
    with pytest.raises(InputError, match="Empty target set"):
        chen_validation_data(train_cohort[1:], cfg())
    shifted = dataclasses.replace(c, labels={**c.labels, "T2": c.labels["T2"][:, :-2]})
    with pytest.raises(InputError, match="grid"):
        chen_training_data([shifted], cfg(method="unet"))
    with pytest.raises(InputError, match="method"):
        chen.check_config(cfg(method="gan"))
    g, _ = nets()
    with pytest.raises(InputError, match="discriminator"):
        run(train_chen(g, None, chen_training_data(train_cohort, cfg(method="adversarial")), None,
                       cfg(method="adversarial")))
    with pytest.raises(InputError, match="pretrain_steps"):
        chen.check_config(cfg(steps=2, pretrain_steps=5))
