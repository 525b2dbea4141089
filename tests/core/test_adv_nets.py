"""Issue 7: the adversarial networks, losses, GAN step and metrics (tiny tensors, CPU)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_medseg.core import nets
from napari_medseg.core.errors import InputError, TrainingError
from napari_medseg.core.adversarial import gan, losses
from napari_medseg.core.adversarial import networks as shared_nets
from napari_medseg.core.adversarial.metrics import mean_over_classes, segmentation_metrics
from napari_medseg.methods.adversarial_segmentation import networks as chen_nets
from napari_medseg.methods.modality_transfer import networks as segan_nets
from napari_medseg.methods.site_normalization import networks as delisle_nets

# every adversarial network, shared or one paper's, under one name
N = SimpleNamespace(**{k: getattr(m, k) for m in (shared_nets, chen_nets, segan_nets, delisle_nets) for k in dir(m)
                       if not k.startswith("__")})

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("sd,shape", [(2, (2, 1, 32, 32)), (3, (1, 1, 8, 16, 16))])
def test_segmentors_keep_the_grid(sd, shape):
    x = torch.randn(shape)
    assert N.DilatedResUNet(spatial_dims=sd, out_channels=4)(x).shape == (shape[0], 4, *shape[2:])
    seg = N.SegANSegmentor(spatial_dims=sd, out_channels=1, features=(8, 16, 16) if sd == 3 else (16, 32, 64, 128))
    assert seg(x).shape == (shape[0], 1, *shape[2:])
    gen = N.NormalizationGenerator(spatial_dims=sd, channels=1, features=(8, 16))
    assert gen(x).shape == x.shape


def test_dilated_res_unet_is_as_small_as_the_papers():
    n = N.n_parameters(N.DilatedResUNet())
    assert 0.7 * 160_000 <= n <= 1.3 * 160_000, n


@pytest.mark.parametrize("sd", [2, 3])
def test_discriminators_give_one_score_per_image(sd):
    grid = (16, 16) if sd == 2 else (8, 8, 8)
    image, mask = torch.randn(3, 1, *grid), torch.softmax(torch.randn(3, 4, *grid), 1)
    d = N.ConditionalMaskDiscriminator(spatial_dims=sd, image_channels=1, mask_channels=4, features=(8, 16))
    assert d(image, mask).shape == (3, 1)
    with pytest.raises(InputError, match="mask"):
        d(image, mask[:, :3])
    dd = N.DomainDiscriminator(spatial_dims=sd, in_channels=1, n_domains=3, features=(8, 16))
    assert dd(image).shape == (3, 4) and dd.generated_class == 3


@pytest.mark.parametrize("sd", [2, 3])
def test_critic_returns_multiscale_features(sd):
    grid = (32, 32) if sd == 2 else (16, 16, 16)
    critic = N.SegANCritic(spatial_dims=sd, image_channels=2, mask_channels=1, mode="concat", features=(8, 16, 32))
    feats = critic(torch.randn(2, 2, *grid), torch.rand(2, 1, *grid))
    assert len(feats) >= 3
    assert feats[0].shape == (2, 3, *grid)  # the critic input itself, as in SegAN
    assert [f.shape[1] for f in feats[1:]] == [8, 16, 32]
    assert [f.shape[2] for f in feats] == [grid[0] // 2**i for i in range(4)]


def test_critic_input_modes():
    image = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).reshape(2, 2, 4, 4)
    mask = torch.rand(2, 3, 4, 4)
    cat = N.critic_input(image, mask, "concat")
    assert cat.shape == (2, 5, 4, 4)
    assert torch.equal(cat[:, :2], image) and torch.equal(cat[:, 2:], mask)
    mul = N.critic_input(image, mask, "multiply")
    assert mul.shape == (2, 6, 4, 4)
    for c in range(2):
        for m in range(3):
            assert torch.allclose(mul[:, c * 3 + m], image[:, c] * mask[:, m])
    # a binary mask multiplied in hides the background: concat keeps it
    binary = torch.zeros(2, 1, 4, 4)
    assert N.critic_input(image, binary, "multiply").abs().sum() == 0
    with pytest.raises(InputError, match="critic input"):
        N.critic_input(image, mask, "add")
    with pytest.raises(InputError, match="grid"):
        N.critic_input(image, mask[..., :2], "concat")
    critic = N.SegANCritic(image_channels=2, mask_channels=3, mode="multiply", features=(4, 8))
    assert critic(image, mask)[0].shape == (2, 6, 4, 4)


@pytest.mark.parametrize("net", [
    lambda: N.DilatedResUNet(features=(8, 16), dilations=(2,)),
    lambda: N.ConditionalMaskDiscriminator(mask_channels=3, features=(8,)),
    lambda: N.SegANSegmentor(in_channels=2, features=(8, 16)),
    lambda: N.SegANCritic(mode="multiply", mask_channels=2, features=(4, 8)),
    lambda: N.NormalizationGenerator(spatial_dims=2, features=(8, 16)),
    lambda: N.DomainDiscriminator(spatial_dims=2, n_domains=2, features=(8, 16)),
    lambda: N.NormalizeAndSegment({"spatial_dims": 2, "features": (8, 16)},
                                  N.segmenter_arch(2, 1, 3, features=(8, 16))),
])
def test_arch_round_trip(net):
    a = net().eval()
    arch = a.arch()
    assert arch["name"].split(".")[0] in ("chen2019", "giacomello2020", "delisle2019")
    b = nets.build(arch).eval()
    b.load_state_dict(a.state_dict())
    assert b.arch() == arch
    x = torch.randn(2, 1, 16, 16)
    if isinstance(a, (N.ConditionalMaskDiscriminator, N.SegANCritic)):
        args = (x, torch.rand(2, a._kwargs["mask_channels"], 16, 16))
    else:
        args = (x.repeat(1, a._kwargs.get("in_channels", 1), 1, 1),)
    out_a, out_b = a(*args), b(*args)
    for oa, ob in zip(out_a if isinstance(out_a, list) else [out_a], out_b if isinstance(out_b, list) else [out_b]):
        assert torch.allclose(oa, ob)


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError):
        N.DilatedResUNet(spatial_dims=1)
    with pytest.raises(InputError):
        N.SegANCritic(mode="mask")
    with pytest.raises(InputError):
        N.DomainDiscriminator(n_domains=0)


# -- losses ---------------------------------------------------------------------------------


def _perfect_logits(labels: torch.Tensor, n: int) -> torch.Tensor:
    return 40.0 * torch.nn.functional.one_hot(labels, n).movedim(-1, 1).float() - 20.0


def test_segmentation_loss_values():
    labels = torch.arange(4).repeat_interleave(16).reshape(1, 8, 8)  # 16 pixels of each of 4 classes
    assert losses.segmentation_loss(_perfect_logits(labels, 4), labels) < 1e-4
    assert losses.dice_loss(_perfect_logits(labels, 4), labels.unsqueeze(1)) < 1e-4
    # uniform softmax: CE = log 4, soft Dice = 1/4 for every class
    uniform = torch.zeros(1, 4, 8, 8)
    assert losses.cross_entropy(uniform, labels).item() == pytest.approx(math.log(4), rel=1e-5)
    assert losses.dice_loss(uniform, labels).item() == pytest.approx(0.75, abs=1e-4)
    assert losses.segmentation_loss(uniform, labels, beta=0.9).item() == pytest.approx(
        0.9 * math.log(4) + 0.1 * 0.75, abs=1e-4)
    assert losses.segmentation_loss(uniform, labels, beta=0.0).item() == pytest.approx(0.75, abs=1e-4)
    # binary masks: one logit channel
    mask = (torch.arange(64).reshape(1, 1, 8, 8) % 2)
    assert losses.dice_loss(40.0 * mask.float() - 20.0, mask) < 1e-4
    with pytest.raises(InputError, match="Labels"):
        losses.segmentation_loss(uniform, labels[:, :4])


def test_generator_loss_weights():
    l_id, l_dt, adv = torch.tensor(1.0), torch.tensor(3.0), torch.tensor(0.5)
    assert losses.generator_loss(l_id, l_dt).item() == pytest.approx(0.9 * 1 + 0.1 * 3)
    assert losses.generator_loss(l_id, l_dt, adv, lam=0.5, adv_weight=2.0).item() == pytest.approx(2.0 + 1.0)
    assert losses.generator_loss(l_id, None, adv).item() == pytest.approx(1.5)


def test_adversarial_losses_on_known_logits():
    zero = torch.zeros(4, 1)
    assert losses.discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert losses.adversarial_loss(zero).item() == pytest.approx(math.log(2), rel=1e-6)
    assert losses.discriminator_loss(torch.full((4, 1), 30.0), torch.full((4, 1), -30.0)) < 1e-6
    # LSGAN through MONAI's PatchAdversarialLoss, on a patch map
    assert losses.discriminator_loss(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), "least_squares") == 0
    assert losses.adversarial_loss(torch.zeros(2, 1, 4, 4), "least_squares").item() == pytest.approx(1.0)
    with pytest.raises(InputError):
        losses.adversarial_loss(zero, "wasserstein")


def test_scaled_real_masks_keep_the_true_class_above_tau_and_sum_to_one():
    """Luc et al.'s scaling: the true class gets max(tau, its predicted probability), the others
    keep the segmentor's proportions; a confident correct prediction changes nothing."""
    y = torch.tensor([[0, 1], [2, 1]])
    one_hot = torch.nn.functional.one_hot(y, 3).permute(2, 0, 1)[None].float()
    fake = torch.softmax(torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0)), 1)
    real = losses.scaled_real_masks(one_hot, fake, 0.9)
    assert torch.allclose(real.sum(1), torch.ones(1, 2, 2))
    s_true = (fake * one_hot).sum(1)
    assert torch.allclose((real * one_hot).sum(1), torch.clamp(s_true, min=0.9))
    others = real * (1 - one_hot)
    ratio = others / fake  # the segmentor's proportions among the wrong classes, scaled per pixel
    for c1, c2 in ((0, 1), (1, 2), (0, 2)):
        both = (one_hot[:, c1] == 0) & (one_hot[:, c2] == 0)
        assert torch.allclose(ratio[:, c1][both], ratio[:, c2][both])
    assert torch.allclose(losses.scaled_real_masks(one_hot, one_hot, 0.9), one_hot)
    assert not torch.allclose(real, one_hot)
    with pytest.raises(InputError, match="tau"):
        losses.scaled_real_masks(one_hot, fake, 0.0)


def test_multiscale_l1():
    feats = [torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 8, 2, 2)]
    assert losses.multiscale_l1(feats, [f.clone() for f in feats]) == 0
    a, b = [torch.zeros(1, 1, 4, 4), torch.ones(1, 2, 2, 2)], [torch.ones(1, 1, 4, 4), torch.ones(1, 2, 2, 2)]
    assert losses.multiscale_l1(a, b).item() == pytest.approx(0.5)  # (1 + 0) / 2 scales
    assert losses.segan_critic_loss(a, b).item() == pytest.approx(-0.5)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.long)
    loss = losses.segan_segmentor_loss(a, b, torch.full((1, 1, 4, 4), 20.0), mask)  # perfect mask: Dice 0
    assert loss.item() == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(InputError):
        losses.multiscale_l1(a, b[:1])


def test_delisle_losses():
    zero = torch.zeros(5, 3)  # K = 2 domains + "generated"
    domains = torch.tensor([0, 1, 1, 0, 1])
    assert losses.domain_discriminator_loss(zero, domains, zero).item() == pytest.approx(2 * math.log(3), rel=1e-6)
    assert losses.domain_discriminator_loss(zero, domains).item() == pytest.approx(math.log(3), rel=1e-6)
    # pushing away from "generated": -log(1 - p_K) = -log(2/3) on uniform logits
    assert losses.normalization_adversarial_loss(zero).item() == pytest.approx(math.log(1.5), rel=1e-6)
    assert losses.normalization_adversarial_loss(zero, "minimax").item() == pytest.approx(-math.log(3), rel=1e-6)
    sure_generated = torch.tensor([[-10.0, -10.0, 10.0]])
    sure_real = torch.tensor([[10.0, -10.0, -10.0]])
    assert losses.normalization_adversarial_loss(sure_generated) > 15
    assert losses.normalization_adversarial_loss(sure_real) < 1e-6
    with pytest.raises(InputError, match="0..1"):
        losses.domain_discriminator_loss(zero, torch.tensor([0, 1, 2, 0, 1]))
    x = torch.randn(2, 1, 4, 4)
    assert losses.identity_loss(x, x) == 0
    assert losses.identity_loss(x + 2, x).item() == pytest.approx(4.0)


# -- the GAN step ---------------------------------------------------------------------------


def _tiny_gan():
    g = torch.nn.Conv2d(1, 2, 3, padding=1)
    d = N.ConditionalMaskDiscriminator(image_channels=1, mask_channels=2, features=(4,))
    return g, d, torch.optim.Adam(g.parameters(), 1e-2), torch.optim.Adam(d.parameters(), 1e-2)


def _closures(g, d, x, y):
    seen = {}

    def d_loss():
        fake = torch.softmax(g(x), 1).detach()
        return losses.discriminator_loss(d(x, y), d(x, fake))

    def g_loss():
        seen["d_requires_grad"] = any(p.requires_grad for p in d.parameters())
        logits = g(x)
        return losses.adversarial_loss(d(x, torch.softmax(logits, 1))), {"mean_logit": logits.mean()}

    return d_loss, g_loss, seen


def test_discriminator_is_frozen_during_the_generator_step():
    g, d, opt_g, opt_d = _tiny_gan()
    x = torch.randn(2, 1, 8, 8)
    y = torch.nn.functional.one_hot(torch.randint(0, 2, (2, 8, 8)), 2).movedim(-1, 1).float()
    d_loss, g_loss, seen = _closures(g, d, x, y)
    trainer = gan.AdversarialTrainer(g, d, opt_g, opt_d)
    d_before = [p.detach().clone() for p in d.parameters()]
    g_before = [p.detach().clone() for p in g.parameters()]
    logs = trainer.g_step(g_loss)
    assert seen["d_requires_grad"] is False
    assert all(torch.equal(a, b) for a, b in zip(d_before, d.parameters()))
    assert all(p.grad is None for p in d.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g_before, g.parameters()))  # the gradient went through D
    assert all(p.requires_grad for p in d.parameters())  # restored
    assert set(logs) == {"loss_g", "mean_logit"}
    # a full iteration: D moves in its step, and no gradient is left on D afterwards
    logs = trainer.step(d_loss, g_loss)
    assert {"loss_d", "loss_g"} <= set(logs) and trainer.step_count == 1
    assert any(not torch.equal(a, b) for a, b in zip(d_before, d.parameters()))
    assert all(p.grad is None for p in d.parameters())
    logs = gan.gan_step(g, d, opt_g, opt_d, d_loss, g_loss)
    assert math.isfinite(logs["loss_d"]) and math.isfinite(logs["loss_g"])


def test_frozen_restores_mode_and_flags():
    d = N.ConditionalMaskDiscriminator(image_channels=1, mask_channels=2, features=(4,)).train()
    d.classifier.bias.requires_grad_(False)  # a flag that was already off stays off
    with gan.frozen(d):
        assert not d.training and not any(m.training for m in d.modules())
        assert not any(p.requires_grad for p in d.parameters())
    assert d.training and all(m.training for m in d.modules())
    assert d.classifier.weight.requires_grad and not d.classifier.bias.requires_grad
    d.body[0].eval()  # submodule modes are restored one by one
    with gan.frozen([d]):
        pass
    assert d.training and not d.body[0].training


def test_fine_tuning_with_the_critic_frozen():
    g, d, opt_g, _ = _tiny_gan()
    x = torch.randn(2, 1, 8, 8)
    y = torch.softmax(torch.randn(2, 2, 8, 8), 1)
    d_loss, g_loss, _ = _closures(g, d, x, y)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    with gan.AdversarialTrainer(g, d, opt_g, None, freeze_discriminator=True) as trainer:
        assert not d.training
        logs = trainer.step(d_loss, g_loss)
        assert "loss_d" not in logs and "loss_g" in logs
    # nothing of D changed, batch-norm statistics included; mode and flags are back
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
    assert d.training and all(p.requires_grad for p in d.parameters())
    with pytest.raises(TrainingError):
        gan.AdversarialTrainer(g, d, opt_g, None)


def test_non_finite_loss_and_critic_clip():
    g, d, opt_g, opt_d = _tiny_gan()
    trainer = gan.AdversarialTrainer(g, d, opt_g, opt_d, critic_clip=0.01)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(TrainingError, match="generator loss"):
        trainer.g_step(lambda: g(x).sum() * float("nan"))
    trainer.d_step(lambda: -d(x, torch.softmax(g(x), 1).detach()).mean())
    assert max(p.abs().max().item() for p in d.parameters()) <= 0.01 + 1e-7


# -- metrics --------------------------------------------------------------------------------


def test_metrics_identical_masks():
    a = np.zeros((6, 20, 20), np.int64)
    a[1:5, 4:10, 4:10] = 1
    a[1:5, 12:18, 12:18] = 2
    m = segmentation_metrics(a, a, spacing=(2.0, 1.0, 1.0), labels={1: "LV", 2: "myo", 3: "RV"})
    assert m["dice"]["LV"] == 1 and m["jaccard"]["myo"] == 1
    assert m["hd95"]["LV"] == 0 and m["msd"]["myo"] == 0
    assert all(math.isnan(m[k]["RV"]) for k in m)  # absent from both
    assert mean_over_classes(m["dice"]) == 1


def test_metrics_shifted_square():
    a = np.zeros((20, 20), np.int64)
    a[5:15, 5:15] = 1
    b = np.zeros_like(a)
    b[5:15, 7:17] = 1  # shifted by 2 pixels along x
    m = segmentation_metrics(b, a)
    assert m["dice"]["1"] == pytest.approx(0.8, abs=1e-6)  # 2*80 / 200
    assert m["jaccard"]["1"] == pytest.approx(80 / 120, abs=1e-6)
    assert m["hd95"]["1"] == pytest.approx(2.0)
    assert m["msd"]["1"] == pytest.approx(1.0)  # brute force over the contour pixels gives 1.0
    # spacing scales distances along its axis only
    m = segmentation_metrics(b, a, spacing=(1.0, 0.5))
    assert m["hd95"]["1"] == pytest.approx(1.0) and m["dice"]["1"] == pytest.approx(0.8, abs=1e-6)
    # present in one array only: no overlap, infinite distance
    m = segmentation_metrics(np.zeros_like(a), a)
    assert m["dice"]["1"] == 0 and math.isinf(m["hd95"]["1"])


def test_metrics_bad_input():
    with pytest.raises(InputError, match="same grid"):
        segmentation_metrics(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(InputError, match="integer"):
        segmentation_metrics(np.zeros((4, 4)), np.zeros((4, 4), int))
    with pytest.raises(InputError, match="Spacing"):
        segmentation_metrics(np.zeros((4, 4), int), np.zeros((4, 4), int), spacing=(1.0, 1.0, 1.0))
