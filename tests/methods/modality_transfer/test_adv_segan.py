"""Issue 7, part 2: SegAN (concat / multiply critic input) and transfer across modalities
(Giacomello et al. 2020), on tiny tumour-phantom slices (32x32, CPU, one thread)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_medseg.core.checkpoints import load_checkpoint
from napari_medseg.core.errors import InputError, TrainingError
from napari_medseg.core.jobs import collect
from napari_medseg.core.registry import Registry
from napari_medseg.methods.modality_transfer import segan, tumour

FEATS = dict(seg_features=(8, 16, 32), critic_features=(8, 16, 32))


@pytest.fixture(autouse=True)
def _threads(one_thread):
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def slices():
    return tumour.tumour_slices(6, seed=1, modalities=("FLAIR", "T2"), shape=(32, 32, 24), spacing=(4.5, 4.5, 6.0),
                                split=(4, 1, 1))


def cfg(**kw):
    base = dict(steps=3, batch_size=4, optimizer="adam", lr=2e-3, val_every=2, amp=False)
    return segan.SeganConfig(**{**base, **kw})


def pair(mode="concat", in_channels=1):
    return segan.build_segan(mode, in_channels, seed=0, **FEATS)


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("mode", ["concat", "multiply"])
def test_both_critic_inputs_train_with_finite_losses(slices, mode):
    seg, critic = pair(mode)
    reports, result = collect(segan.train_segan(seg, critic, slices["train"], slices["val"], cfg(critic_input=mode)))
    assert len(reports) == 3 and result["best_step"] in (2, 3)
    for r in reports:
        assert {"loss_s", "loss_c", "l1", "dice_loss"} <= set(r.metrics)
        assert all(math.isfinite(r.metrics[k]) for k in ("loss_s", "loss_c", "l1", "dice_loss"))
        assert r.metrics["loss_c"] <= 0  # the critic maximises the L1 distance
    assert "val_dice" in reports[1].metrics and not seg.training and not critic.training


def test_critic_trains_normally_and_stays_bit_identical_when_frozen(slices):
    seg, critic = pair()
    before = state(critic)
    collect(segan.train_segan(seg, critic, slices["train"], None, cfg(steps=2)))
    assert any(not torch.equal(before[k], v) for k, v in critic.state_dict().items())

    seg, critic = pair()
    before_c, before_s = state(critic), state(seg)
    reports, _ = collect(segan.train_segan(seg, critic, slices["train"], slices["val"],
                                           cfg(steps=2, finetune="frozen_critic")))
    for k, v in critic.state_dict().items():  # weights and batch-norm statistics alike
        assert torch.equal(before_c[k], v), k
    assert any(not torch.equal(before_s[k], v) for k, v in seg.state_dict().items())
    assert all(p.requires_grad for p in critic.parameters())  # flags given back
    assert all(r.metrics["loss_c"] == -r.metrics["l1"] for r in reports)


def test_critic_weight_clipping_holds(slices):
    seg, critic = pair()
    collect(segan.train_segan(seg, critic, slices["train"], None, cfg(steps=2, critic_clip=0.01, lr=0.05)))
    assert max(float(p.detach().abs().max()) for p in critic.parameters()) <= 0.01 + 1e-8


def test_short_training_improves_validation_dice(slices):
    seg, critic = pair()
    untrained = segan.evaluate(seg, slices["val"], "FLAIR")["dice"]
    untrained = 0.0 if math.isnan(untrained) else untrained
    kept = []
    _, result = collect(segan.train_segan(seg, critic, slices["train"], slices["val"],
                                          cfg(steps=80, batch_size=8, val_every=20),
                                          keep=lambda s, m, step: kept.append((step, m["dice"]))))
    best = result["best_metrics"]["dice"]
    assert best > untrained + 0.3 and best > 0.5, (untrained, best)
    assert kept and kept[-1] == (result["best_step"], best)
    # the nets hold the best weights afterwards
    assert segan.evaluate(seg, slices["val"], "FLAIR")["dice"] == pytest.approx(best)
    test = segan.evaluate(seg, slices["test"], "FLAIR", spacing=(4.5, 4.5, 6.0))
    assert set(test) == {"dice", "precision", "sensitivity", "hd95"} and test["dice"] > 0.3


def test_transfer_flair_to_t2_full_frozen_and_scratch(slices):
    seg, critic = pair()
    collect(segan.train_segan(seg, critic, slices["train"], slices["val"], cfg(steps=4)))
    source = {"segmentor": seg, "critic": critic}
    src_c, src_s = state(critic), state(seg)
    reports, out = collect(segan.compare_transfer(source, "T2", slices["train"], slices["val"], slices["test"],
                                                  cfg(steps=2)))
    assert set(out) == {"source_only", "full", "frozen_critic", "scratch"}
    assert all("dice" in v for v in out.values()) and reports[-1].step == reports[-1].total == 6
    assert all(torch.equal(src_c[k], v) for k, v in critic.state_dict().items())  # the source is untouched
    assert all(torch.equal(src_s[k], v) for k, v in seg.state_dict().items())
    _, frozen = collect(segan.transfer(source, "T2", slices["train"], slices["val"], cfg(steps=2), "frozen_critic"))
    assert frozen["modality"] == "T2"
    assert all(torch.equal(src_c[k], v) for k, v in frozen["critic"].state_dict().items())
    with pytest.raises(InputError, match="transfer"):
        collect(segan.transfer(source, "T2", slices["train"], None, cfg(), "partial"))


def test_registry_round_trip_keeps_the_critic(slices, tmp_path):
    reg = Registry(tmp_path / "shipped", tmp_path / "user")
    _, out = collect(segan.train_segan_model(reg, slices["train"], slices["val"], cfg(critic_input="multiply"),
                                             **FEATS))
    entry, critic_entry = out["entry"], out["critic_entry"]
    assert entry.name == "segan_tumour" and critic_entry.name == "segan_tumour_critic"
    meta = entry.meta
    assert meta["method"] == "giacomello2020-segan-multiply" and meta["modality"] == "FLAIR"
    assert meta["critic_input"] == "multiply" and meta["critic"] == {"name": critic_entry.name, "version": 1}
    load_checkpoint(critic_entry.path)  # weights_only=True
    loaded = segan.load_segan(reg)
    assert loaded["critic"].mode == "multiply" and loaded["critic_meta"]["role"] == "critic"
    x = torch.from_numpy(slices["val"]["images"]["FLAIR"][:2, None])
    again = segan.predict_slices(loaded["segmentor"], x[:, 0])
    assert again.dtype == np.uint8 and again.shape == (2, 32, 32)
    # fine-tune the saved pair on T2 with its critic frozen: a second version of both
    _, tuned = collect(segan.train_segan_model(reg, slices["train"], slices["val"],
                                               cfg(modality="T2", finetune="frozen_critic"), resume=loaded))
    assert tuned["entry"].version == 2 and tuned["entry"].meta["modality"] == "T2"
    assert tuned["entry"].meta["config"]["resumed_from"] == {"name": "segan_tumour", "version": 1}
    c2 = segan.load_segan(reg)["critic"].state_dict()
    assert all(torch.equal(loaded["critic"].state_dict()[k], v) for k, v in c2.items())
    with pytest.raises(InputError, match="source model"):
        collect(segan.train_segan_model(reg, slices["train"], slices["val"], cfg(finetune="full")))


def test_predict_pads_odd_grids():
    seg, _ = pair()
    out = segan.predict_slices(seg, np.random.default_rng(0).random((3, 36, 44), np.float32))
    assert out.shape == (3, 36, 44) and out.dtype == np.uint8


def test_bad_input_is_one_clear_error_before_training(slices):
    train, val = slices["train"], slices["val"]
    seg, critic = pair()
    before = state(seg)

    def run(data=train, v=val, **kw):
        collect(segan.train_segan(seg, critic, data, v, cfg(**kw)))

    with pytest.raises(InputError, match="no \\['T1c'\\] images"):
        run(modality="T1c")
    empty = {"images": {"FLAIR": np.zeros((0, 32, 32), np.float32)}, "mask": np.zeros((0, 32, 32), np.uint8)}
    with pytest.raises(InputError, match="empty"):
        run(data=empty)
    with pytest.raises(InputError, match="validation set is empty"):
        run(v=empty)
    off = {"images": {"FLAIR": train["images"]["FLAIR"]}, "mask": train["mask"][:, :16]}
    with pytest.raises(InputError, match="different grids"):
        run(data=off)
    with pytest.raises(InputError, match="critic"):
        run(critic_input="multiply")
    with pytest.raises(InputError, match="finetune"):
        run(finetune="half")
    with pytest.raises(InputError, match="channel"):
        run(modality=("FLAIR", "T2"))
    assert all(torch.equal(before[k], v) for k, v in seg.state_dict().items())
    kept = []
    with torch.no_grad():
        seg.head.conv.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss"):
        collect(segan.train_segan(seg, critic, train, val, cfg(), keep=lambda *a: kept.append(a)))
    assert kept == []


def test_a_killed_run_is_saved_as_its_two_versions_by_models_recover(slices, capsys):
    """kill -9 mid-training: ``models recover`` writes the segmentor and its critic from the
    run's best weights, the segmentor pointing at the critic version actually written."""
    from napari_medseg.cli import main
    from napari_medseg.core.runstate import TrainingRun, interrupted_note

    reg = Registry()
    other = reg.save_new_version("segan_tumour_critic", {"w": torch.zeros(1)}, method="other", arch={"name": "x"})
    gen = segan.train_segan_model(reg, slices["train"], slices["val"], cfg(steps=6, val_every=1), **FEATS)
    for p in gen:
        if p.step == 4:  # killed here: no save, no cleanup
            break
    folder = next((reg.user_root / "segan_tumour" / "runs").iterdir())
    TrainingRun(folder)._write_info({**TrainingRun.open(folder).info, "pid": 2**22 + 999})  # its process died
    best = TrainingRun.open(folder).best()
    assert "models recover segan_tumour" in interrupted_note("segan_tumour")
    assert main(["models", "recover", "segan_tumour"]) == 0
    out = capsys.readouterr().out
    seg_entry = reg.list("segan_tumour")[-1]
    critic_entry = reg.list("segan_tumour_critic")[-1]
    assert critic_entry.version == other.version + 1  # the version written, not the recording's placeholder
    assert seg_entry.meta["critic"] == {"name": "segan_tumour_critic", "version": critic_entry.version}
    assert seg_entry.meta["recovered_from_run"] == folder.name and seg_entry.meta["role"] == "segmentor"
    assert seg_entry.meta["metrics"]["best_step"] == best["step"] <= 4
    assert f"saved {seg_entry.label}" in out and "not made current" in out
    weights, _ = load_checkpoint(seg_entry.path)
    for k, v in weights.items():
        assert torch.equal(v, best["state"][f"segmentor.{k}"])
    loaded = segan.load_segan(reg, version=seg_entry.version)
    assert loaded["critic"].mode == "concat"  # the pair loads together, as a finished run's would
    assert not folder.exists()
    assert main(["models", "recover", "segan_tumour"]) == 2
    assert "No killed training run of segan_tumour" in capsys.readouterr().err
    gen.close()
