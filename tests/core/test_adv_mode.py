"""Adversarial mode of the engine's supervised training: the mask discriminator's two
steps, its frozen parameters in the model's step, ignored pixels, and the tissue method
trained with it switched on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.training import train_supervised
from napari_medseg.core.adversarial.mode import MaskAdversary

pytestmark = pytest.mark.usefixtures("one_thread")


def _toy(seed=0, n=4, size=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    y = (x > 0.5).long()[:, 0]
    return x, y


def test_generator_term_leaves_the_discriminator_without_gradients():
    torch.manual_seed(0)
    x, y = _toy()
    adv = MaskAdversary(image_channels=1, n_classes=2, weight=0.5, features=(8, 8, 8, 8))
    model = torch.nn.Conv2d(1, 2, 3, padding=1)
    term = adv.generator_term(x, model(x), y)
    term.backward()
    assert term.item() > 0 and model.weight.grad is not None and model.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in adv.discriminator.parameters())
    assert all(p.requires_grad for p in adv.discriminator.parameters())  # restored afterwards


def test_discriminator_step_learns_real_from_fake():
    torch.manual_seed(0)
    x, y = _toy()
    adv = MaskAdversary(image_channels=1, n_classes=2, features=(8, 8, 8, 8), lr=2e-3)
    logits = torch.zeros(4, 2, 32, 32)  # an undecided model: softmax 0.5 everywhere
    first = adv.discriminator_step(x, y, logits)["loss_d"]
    for _ in range(30):
        last = adv.discriminator_step(x, y, logits)["loss_d"]
    assert last < 0.5 * first


def test_ignored_pixels_show_the_models_softmax_on_both_sides():
    x, y = _toy()
    y[:, :8] = 255
    adv = MaskAdversary(image_channels=1, n_classes=2, ignore=255, features=(8, 8, 8, 8))
    probs = torch.softmax(torch.randn(4, 2, 32, 32), 1)
    real = adv._real(y, probs)
    assert torch.equal(real[:, :, :8], probs[:, :, :8])
    assert torch.equal(real[:, 1, 8:], (y[:, 8:] == 1).float())


def test_train_supervised_in_adversarial_mode_updates_both_and_reports_losses():
    torch.manual_seed(0)
    x, y = _toy(n=8)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    adv = MaskAdversary(image_channels=1, n_classes=2, weight=0.1, features=(8, 8, 8, 8))
    d_before = [p.detach().clone() for p in adv.discriminator.parameters()]
    reports = list(train_supervised(model, lambda _s: (x, y), torch.nn.functional.cross_entropy, steps=5,
                                    adversary=adv))
    assert len(reports) == 5
    assert all("loss_adv" in r.metrics and "loss_d" in r.metrics for r in reports)
    assert all(np.isfinite(r.metrics["loss_adv"]) and r.metrics["loss_adv"] > 0 for r in reports)
    assert any(not torch.equal(a, b) for a, b in zip(d_before, adv.discriminator.parameters()))
    plain = list(train_supervised(model, lambda _s: (x, y), torch.nn.functional.cross_entropy, steps=1))
    assert "loss_adv" not in plain[0].metrics


def test_tissue_training_switches_adversarial_mode_on(tmp_path):
    from napari_medseg.core.registry import Registry
    from napari_medseg.methods.tissue import train_tissue

    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "user")
    gen = train_tissue(reg, steps=2, patch=64, batch_size=2, slide_size=256, adversarial=0.2)
    metrics = []
    try:
        while True:
            metrics.append(next(gen).metrics)
    except StopIteration:
        pass
    assert len(metrics) == 2 and all(m["loss_adv"] > 0 and "loss_d" in m for m in metrics)
    assert reg.list("tissue")


def test_box_training_switches_adversarial_mode_on_from_the_controller(tmp_path):
    from napari_medseg.core.registry import Registry
    from napari_medseg.core.adversarial.mode import MaskAdversary
    from napari_medseg.methods.box_iterative.labels import UNKNOWN
    from napari_medseg.methods.box_iterative.stages import IterativeTraining
    from napari_medseg.widgets.box_iterative.controller import BoxController

    c = BoxController(None, None, Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "user"))
    assert c._config().adversarial == 0 and IterativeTraining(c.registry, c._config())._adversary() is None
    c.set(adversarial=0.3)
    adv = IterativeTraining(c.registry, c._config())._adversary()
    assert isinstance(adv, MaskAdversary) and adv.weight == 0.3 and adv.ignore == UNKNOWN
