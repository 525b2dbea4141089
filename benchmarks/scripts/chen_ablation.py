"""Issue 20: ablations of Chen et al.'s U+A+D+T on bench adversarial's cardiac group (full
settings), 3 training seeds, same data. A choice may use the validation Dice (mean LV,
myo, RV on the validation patients' LGE, the kept checkpoint's); the held-out test Dice is
printed beside it.

    python benchmarks/scripts/chen_ablation.py unet,uadt,uadt_adv0.1 [OUT.json]
"""
import dataclasses
import sys

import _ablation
import numpy as np
import torch

torch.set_num_threads(1)  # as the bench
from napari_medseg.bench import adversarial_groups as groups
from napari_medseg.bench.adversarial import CARDIAC as p
from napari_medseg.core.adversarial.networks import ConditionalMaskDiscriminator
from napari_medseg.methods.adversarial_segmentation.chen import ChenConfig, evaluate_target, train_chen
from napari_medseg.methods.adversarial_segmentation.chen_data import chen_training_data, chen_validation_data
from napari_medseg.methods.adversarial_segmentation.networks import DilatedResUNet

VARIANTS = {
    "unet": {"method": "unet"},
    "uadt": {},
    "uadt_adv0.1": {"adv_weight": 0.1},
    "uadt_adv0.01": {"adv_weight": 0.01},
    "uadt_adv0": {"adv_weight": 0.0},
    "uadt_lr2e-4": {"lr": 2e-4},
    "uadt_pretrain200": {"pretrain_steps": 200},
    "uadt_adv0.03": {"adv_weight": 0.03},
    "uad": {"method": "adversarial"},
    "uad_adv0.01": {"method": "adversarial", "adv_weight": 0.01},
    "uad_adv0.01_dwarm": {"method": "adversarial", "adv_weight": 0.01, "d_warmup": True},
    "uad_adv0.1_dwarm": {"method": "adversarial", "adv_weight": 0.1, "d_warmup": True},
    "uad_adv0.03_dwarm": {"method": "adversarial", "adv_weight": 0.03, "d_warmup": True},
    "uadt_adv0.01_dwarm": {"adv_weight": 0.01, "d_warmup": True},
    "unet_steps900": {"method": "unet", "steps": 900, "pretrain_steps": 300},
    "uad_adv0.01_dwarm_steps900": {"method": "adversarial", "adv_weight": 0.01, "d_warmup": True, "steps": 900,
                                   "pretrain_steps": 300},
    "uadt_adv0.01_dwarm_steps900": {"adv_weight": 0.01, "d_warmup": True, "steps": 900, "pretrain_steps": 300},
    # 2026-12-06: a discriminator without batch norm (real and fake batches pass it apart), with spectral
    # normalisation of every weight (Miyato et al. 2018), at three adversarial weights
    "uad_adv0.01_dwarm_sn": {"method": "adversarial", "adv_weight": 0.01, "d_warmup": True, "d_sn": True},
    "uad_adv0.1_dwarm_sn": {"method": "adversarial", "adv_weight": 0.1, "d_warmup": True, "d_sn": True},
    "uad_adv1_dwarm_sn": {"method": "adversarial", "adv_weight": 1.0, "d_warmup": True, "d_sn": True},
    "uadt_adv0.01_dwarm_sn": {"adv_weight": 0.01, "d_warmup": True, "d_sn": True},
    "uadt_adv0.1_dwarm_sn": {"adv_weight": 0.1, "d_warmup": True, "d_sn": True},
    # 2026-12-06 (later): D's real masks scaled towards G's (Luc et al. 2016), so that softness alone
    # does not tell them apart; the one setting is chosen for both adversarial methods on validation
    "uad_adv0.01_dwarm_scale0.9": {"method": "adversarial", "adv_weight": 0.01, "d_warmup": True, "real_scaling": 0.9},
    "uadt_adv0.01_dwarm_scale0.9": {"adv_weight": 0.01, "d_warmup": True, "real_scaling": 0.9},
    "uad_adv0.1_dwarm_scale0.9": {"method": "adversarial", "adv_weight": 0.1, "d_warmup": True, "real_scaling": 0.9},
    "uadt_adv0.1_dwarm_scale0.9": {"adv_weight": 0.1, "d_warmup": True, "real_scaling": 0.9},
}


def spectral_d(disc):
    """The discriminator with spectral normalisation on every convolution and linear layer."""
    from torch.nn.utils.parametrizations import spectral_norm

    for name, mod in list(disc.named_modules()):
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            spectral_norm(mod)
    return disc
data = groups.cardiac_data(p)


def run_one(overrides: dict, seed: int) -> dict:
    cfg = ChenConfig(method="adversarial_transfer", steps=p["steps"], pretrain_steps=p["pretrain_steps"],
                     batch_size=p["batch_size"], lr=p["lr"], seed=seed, val_every=p["val_every"], amp=False)
    overrides = dict(overrides)
    sn = overrides.pop("d_sn", False)
    cfg = dataclasses.replace(cfg, **overrides)
    train, val = chen_training_data(data["train"], cfg), chen_validation_data(data["val"], cfg)
    torch.manual_seed(seed)
    model = DilatedResUNet(2, 1, cfg.n_classes, features=p["features"], dilations=p["dilations"])
    disc = None if cfg.method == "unet" else ConditionalMaskDiscriminator(2, 1, cfg.n_classes, features=p["d_features"],
                                                                          norm=None if sn else "batch")
    if sn and disc is not None:
        disc = spectral_d(disc)
    best = {}
    res = groups._drain(train_chen(model, disc, train, val, cfg,
                                   keep=lambda state, metrics, step: best.update(state=state)))
    model.load_state_dict(best["state"])
    test = evaluate_target(model, data["test"], "cpu", cfg.target)["dice"]
    return {"val": res["best_metrics"].get("val_dice", res["best_metrics"].get("dice")),
            "test": float(np.mean([v for v in test.values() if v is not None])), "test_by_class": test,
            "best_step": res["best_step"]}


_ablation.run(VARIANTS, run_one, sys.argv)
