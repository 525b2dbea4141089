"""Joint lesion + tissue model (Dorent et al. 2019): network, decomposed risk, training, GMM baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core import nets
from napari_medseg.core.errors import InputError, TrainingError
from napari_medseg.core.jobs import collect
from napari_medseg.methods.joint_lesion_tissue import losses
from napari_medseg.methods.joint_lesion_tissue.baseline_gmm import gmm_tissue_segmentation
from napari_medseg.methods.joint_lesion_tissue.labels import FULL, REDUCED
from napari_medseg.methods.joint_lesion_tissue.network import HeteroModalNet
from napari_medseg.methods.joint_lesion_tissue.training import JointConfig, PatchSampler, predict_volume, train_joint

# toy anatomy: a disc/ball with CSF rim, grey-matter ring, white-matter core, a lesion in
# the white matter that is bright on FLAIR and grey-matter-like on T1
T1 = np.array([0.0, 0.3, 0.6, 1.0, 0.55], np.float32)
FLAIR = np.array([0.0, 0.15, 0.6, 0.45, 1.3], np.float32)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny nets run faster on one thread


def _subject(rng, shape, lesion: bool):
    grid = np.indices(shape).astype(np.float32)
    col = (-1,) + (1,) * len(shape)
    c = np.array(shape, np.float32) / 2 + rng.uniform(-2, 2, len(shape))
    R = min(shape) * rng.uniform(0.38, 0.45)
    r = np.sqrt(((grid - c.reshape(col)) ** 2).sum(0))
    lab = np.zeros(shape, np.uint8)
    lab[r <= R], lab[r <= 0.85 * R], lab[r <= 0.6 * R] = 1, 2, 3
    if lesion:
        cl = c + rng.uniform(-0.25, 0.25, len(shape)) * R
        lab[(np.sqrt(((grid - cl.reshape(col)) ** 2).sum(0)) <= 0.22 * R) & (lab == 3)] = REDUCED.lesion
    noise = lambda: rng.normal(0, 0.05, shape).astype(np.float32)  # noqa: E731
    return lab, T1[lab] + noise(), FLAIR[lab] + noise()


def _toy(shape=(48, 48), n=3, seed=0):
    rng = np.random.default_rng(seed)
    controls, patients = [], []
    for _ in range(n):
        lab, t1, _ = _subject(rng, shape, False)
        controls.append({"T1": t1, "tissue": lab})
        lab, t1, fl = _subject(rng, shape, True)
        patients.append({"T1": t1, "FLAIR": fl, "lesion": (lab == REDUCED.lesion).astype(np.uint8)})
    lab, t1, fl = _subject(rng, shape, True)
    return controls, patients, [{"T1": t1, "FLAIR": fl, "labels": lab}]


def _net(nd=2, **kw):
    torch.manual_seed(0)
    return HeteroModalNet(("T1", "FLAIR"), REDUCED.n_classes, nd, features=(8, 16), repeat=1, **kw)


# -- network ---------------------------------------------------------------------------


@pytest.mark.parametrize("nd,backbone,shape", [(3, "highresnet", (24, 24, 24)), (2, "highresnet", (30, 26)),
                                               (2, "unet", (32, 32)), (3, "unet", (24, 24, 24))])
def test_forward_shapes_and_rebuild(nd, backbone, shape):
    m = _net(nd, backbone=backbone).eval()
    x = torch.randn(2, 2, *shape)
    y = m(x)
    assert y.shape == (2, REDUCED.n_classes, *shape)
    assert m.total_stride == (1 if backbone == "highresnet" else 2)
    assert m.receptive_radius >= 3 + (6 if backbone == "highresnet" else 0)
    again = nets.build(m.arch())
    again.load_state_dict(m.state_dict())
    assert torch.allclose(again.eval()(x), y)


def test_more_modalities_by_configuration():
    m = HeteroModalNet(("T1", "T1c", "T2", "FLAIR"), FULL.n_classes, 2, features=(4,), repeat=1).eval()
    x = torch.randn(1, 4, 16, 16)
    assert m(x, ["T2", "T1"]).shape == (1, FULL.n_classes, 16, 16)
    assert m(x, [False, True, False, False]).shape == (1, FULL.n_classes, 16, 16)
    with pytest.raises(InputError, match="Unknown modalities"):
        m(x, ["PD"])
    with pytest.raises(InputError, match="At least one"):
        m(x, [False] * 4)


def test_absent_modality_is_truly_ignored():
    m = _net(3).eval()
    x = torch.randn(1, 2, 20, 20, 20)
    y = m(x, ["T1"])
    x2 = x.clone()
    x2[:, 1] = float("nan")  # garbage in the FLAIR channel: never read
    assert torch.equal(m(x2, ["T1"]), y)
    assert torch.equal(m(x2, [True, False]), y)
    x3 = x.clone()
    x3[:, 1] += 5.0
    assert not torch.allclose(m(x3, ["T1", "FLAIR"]), m(x, ["T1", "FLAIR"]))  # present FLAIR matters


def test_fusion_is_a_mean_over_present_modalities():
    m = _net(2).eval()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        e1, e2 = m.encoders["T1"](x[:, :1]), m.encoders["FLAIR"](x[:, 1:])
        assert torch.allclose(m.fuse(x, ["T1", "FLAIR"]), (e1 + e2) / 2, atol=1e-6)
        # separate weights: the same image through both encoders gives different features
        same = torch.cat([x[:, :1], x[:, :1]], 1)
        assert not torch.allclose(m.fuse(same), m.fuse(same, ["T1"]))
        # with equal weights, two identical modalities average to one (a mean, not a sum)
        m.encoders["FLAIR"].load_state_dict(m.encoders["T1"].state_dict())
        assert torch.allclose(m.fuse(same), m.fuse(same, ["T1"]), atol=1e-6)


# -- losses ----------------------------------------------------------------------------


@pytest.mark.parametrize("ls", [REDUCED, FULL])
def test_class_weights_split_half_tissue_half_lesion(ls):
    w = losses.class_weights(ls)
    side = list(losses.tissue_side(ls))
    assert side == [0, *ls.tissues]
    assert w[side].sum().item() == pytest.approx(0.5)
    assert w[ls.lesion].item() == pytest.approx(0.5)
    assert torch.allclose(w[side], torch.full((len(side),), 0.5 / len(side)))
    assert w.sum().item() == pytest.approx(1.0)


def _logits(labels, n, scale=30.0):
    return scale * torch.nn.functional.one_hot(labels.long(), n).movedim(-1, 1).float()


def test_perfect_prediction_gives_zero_loss_and_wrong_one_does_not():
    rng = np.random.default_rng(0)
    lab = torch.from_numpy(_subject(rng, (32, 32), True)[0]).long()[None]
    n = REDUCED.n_classes
    tissue = torch.where(lab == REDUCED.lesion, torch.full_like(lab, 3), lab)
    assert losses.tissue_loss(_logits(tissue, n), tissue, REDUCED).item() < 1e-4
    assert losses.lesion_loss(_logits(lab, n), lab == REDUCED.lesion, REDUCED).item() < 1e-4
    assert sum(losses.supervised_loss(_logits(lab, n), lab, REDUCED)).item() < 1e-4
    wrong = torch.where(tissue == 2, torch.full_like(tissue, 3), tissue)
    assert losses.tissue_loss(_logits(wrong, n), tissue, REDUCED).item() > 0.05
    assert losses.lesion_loss(_logits(tissue, n), lab == REDUCED.lesion, REDUCED).item() == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(InputError, match="Control tissue labels"):
        losses.tissue_loss(_logits(lab, n), lab, REDUCED)


def test_inter_modality_term_warmup_masking_and_gradients():
    n = REDUCED.n_classes
    lab = torch.zeros(1, 16, 16, dtype=torch.long)
    lab[:, 2:14, 2:14], lab[:, 5:11, 5:11] = 3, REDUCED.lesion
    lesion = (lab == REDUCED.lesion).long()
    full = _logits(lab, n).requires_grad_()
    t1_view = torch.where(lab == REDUCED.lesion, torch.full_like(lab, 2), lab)  # T1 calls the lesion GM
    shared = _logits(t1_view, n).requires_grad_()
    ctrl = _logits(t1_view, n)
    args = (ctrl, t1_view, full, lesion, shared)
    _, before = losses.joint_risk(*args, step=10, warmup=10, label_set=REDUCED)
    assert before["loss_inter"].item() == 0.0
    _, unmasked = losses.joint_risk(*args, step=11, warmup=10, label_set=REDUCED, mask_lesion=False)
    assert unmasked["loss_inter"].item() > 0.05
    # the predictions differ only inside the annotated lesion, which is left out
    _, masked = losses.joint_risk(*args, step=11, warmup=10, label_set=REDUCED)
    assert masked["loss_inter"].item() < 1e-4
    # outside the lesion a disagreement counts
    shared2 = _logits(torch.where(lab == 3, torch.full_like(lab, 1), t1_view), n).requires_grad_()
    inter = losses.inter_modality_loss(full, shared2, REDUCED, lesion)
    assert inter.item() > 0.05
    inter.backward()
    assert shared2.grad.abs().sum() > 0 and full.grad.abs().sum() > 0  # paper: both sides learn
    shared3 = shared2.detach().clone().requires_grad_()
    losses.inter_modality_loss(full, shared3, REDUCED, lesion, detach_reference=True).backward()
    assert shared3.grad is None


# -- training --------------------------------------------------------------------------


def _cfg(**kw):
    base = dict(patch_size=(32, 32), batch_size=2, warmup=20, steps=60, val_every=20, label_set=REDUCED, seed=0)
    return JointConfig(**{**base, **kw})


def test_patches_are_lesion_weighted_for_patients_and_uniform_for_controls():
    rng = np.random.default_rng(0)
    lesion = np.zeros((64, 64), np.uint8)
    lesion[50:53, 8:11] = 1  # one small lesion near a corner
    subj = [{"T1": rng.normal(size=(64, 64)).astype(np.float32), "FLAIR": np.zeros((64, 64), np.float32),
             "lesion": lesion}]
    weighted = PatchSampler(subj, ("T1", "FLAIR"), "lesion", (16, 16), rng, weighted=True)
    uniform = PatchSampler(subj, ("T1", "FLAIR"), "lesion", (16, 16), rng, weighted=False)
    hit = lambda s: np.mean([s.batch(1)[1].sum().item() > 0 for _ in range(200)])  # noqa: E731
    assert hit(weighted) > 0.95 and hit(uniform) < 0.3
    x, y = PatchSampler(subj, ("T1",), "lesion", (80, 70), rng, weighted=False).batch(2)  # padded up
    assert x.shape == (2, 1, 80, 70) and y.shape == (2, 1, 80, 70) and y.dtype == torch.long


def test_train_joint_learns_the_toy_and_keeps_the_best():
    controls, patients, val = _toy()
    model, kept = _net(2), []
    reports, result = collect(train_joint(model, controls, patients, _cfg(), val=val,
                                          keep=lambda s, m, k: kept.append((s, m, k))))
    assert len(reports) == 60
    first, last = reports[0].metrics, reports[-1].metrics
    assert {"loss", "loss_tissue", "loss_lesion", "loss_inter"} <= set(first)
    assert all(r.metrics["loss_inter"] == 0.0 for r in reports[:20])
    assert any(r.metrics["loss_inter"] > 0.0 for r in reports[20:])
    early = np.mean([r.metrics["loss"] for r in reports[:5]])
    late = np.mean([r.metrics["loss"] for r in reports[-10:]])
    assert late < 0.5 * early
    assert "val_dice" in last and "val_dice_lesion" in last and "val_dice_grey_matter" in last
    best = result["best_metrics"]
    assert best["dice"] > 0.6 and best["dice_lesion"] > 0.5, best
    assert kept and kept[-1][2] == result["best_step"]
    assert all(v.device.type == "cpu" for v in kept[-1][0].values())
    labels, probs = predict_volume(model, val[0], ["T1", "FLAIR"], REDUCED, roi_size=(32, 32))
    assert labels.dtype == np.uint8 and labels.shape == (48, 48)
    assert probs.shape == (REDUCED.n_classes, 48, 48) and np.allclose(probs.sum(0), 1, atol=1e-4)
    t1_only, _ = predict_volume(model, {"T1": val[0]["T1"]}, ["T1"], REDUCED, roi_size=(32, 32))
    assert set(np.unique(t1_only)) <= set(range(REDUCED.n_classes))


@pytest.mark.parametrize("mode,allowed", [("tissue_only", {0, 1, 2, 3}), ("lesion_only", {0, REDUCED.lesion}),
                                          ("supervised", set(range(REDUCED.n_classes)))])
def test_baselines_run_and_predict_their_classes(mode, allowed):
    controls, patients, val = _toy(n=2)
    if mode == "supervised":
        patients, controls = val, []
    elif mode == "tissue_only":
        patients = []
    else:
        controls = []
    model = _net(2)
    reports, result = collect(train_joint(model, controls, patients, _cfg(mode=mode, steps=8, val_every=8), val=val))
    scored = {k for k in result["best_metrics"] if k.startswith("dice_")}
    expected = {"tissue_only": {"dice_CSF", "dice_grey_matter", "dice_white_matter"},
                "lesion_only": {"dice_lesion"}}.get(mode, {"dice_CSF", "dice_grey_matter", "dice_white_matter",
                                                           "dice_lesion"})
    assert scored == expected
    present = ["T1"] if mode == "tissue_only" else ["T1", "FLAIR"]
    labels, _ = predict_volume(model, val[0], present, REDUCED, roi_size=(32, 32), mode=mode)
    assert set(np.unique(labels).tolist()) <= allowed


def test_joint_3d_runs_and_stopping_keeps_a_model():
    controls, patients, val = _toy((24, 24, 24), n=1)
    kept = []
    gen = train_joint(_net(3), controls, patients,
                      _cfg(patch_size=(16, 16, 16), batch_size=1, warmup=1, steps=50, val_every=100),
                      val=val, keep=lambda s, m, k: kept.append(k))
    for _ in range(3):
        report = next(gen)
    assert report.metrics["loss_inter"] > 0.0
    gen.close()  # the user pressed stop before the first validation
    assert kept == [3]


def test_input_errors_and_divergence():
    controls, patients, val = _toy(n=1)
    with pytest.raises(InputError, match="control"):
        next(train_joint(_net(2), [], patients, _cfg()))
    with pytest.raises(InputError, match="lesion scan"):
        next(train_joint(_net(2), controls, [], _cfg(mode="lesion_only")))
    with pytest.raises(InputError, match="lacks"):
        next(train_joint(_net(2), controls, [{"T1": patients[0]["T1"], "lesion": patients[0]["lesion"]}], _cfg()))
    broken = _net(2)
    with torch.no_grad():
        next(broken.backbone.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan"):
        collect(train_joint(broken, controls, patients, _cfg(steps=3)))
    with pytest.raises(InputError, match="T1") as err:
        predict_volume(_net(2), {"FLAIR": val[0]["FLAIR"]}, ["FLAIR"], REDUCED)
    assert "tissue" in str(err.value)


# -- classical baseline ----------------------------------------------------------------


@pytest.mark.parametrize("smooth", [0.0, 0.7])
def test_gmm_baseline_recovers_three_intensity_classes(smooth):
    rng = np.random.default_rng(1)
    lab, t1, _ = _subject(rng, (40, 40, 40), False)
    pred = gmm_tissue_segmentation(t1, REDUCED, smooth_sigma=smooth)
    assert pred.dtype == np.uint8
    for c in (1, 2, 3):
        a, b = pred == c, lab == c
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9, c
    full = gmm_tissue_segmentation(t1, FULL, mask=lab > 0)
    assert set(np.unique(full)) == {0, 1, 2, 3}
