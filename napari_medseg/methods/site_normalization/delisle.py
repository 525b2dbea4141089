"""Adversarial normalisation across imaging sites (Delisle et al. 2019), and its two baselines.

Three modes, the directions of the paper's Table 1:

* ``"adversarial"``: a generator G (U-Net) maps a raw patch to a normalised one, a segmenter S
  segments G(x) and a K+1-class discriminator D tells the K input domains and "generated"
  apart. Warm-up (the paper's first three epochs): G learns the identity on MSE; S already
  learns on the detached G(x), as in the authors' public code (G never sees the Dice loss
  then); no D. Afterwards, each step: D on cross-entropy over the raw domains and
  "generated" (Eq. 3-4), then G and S together on Dice(S(G(x))) plus the adversarial term
  pushing G(x) away from "generated", D frozen (no parameter gradients). D sees real and
  generated patches in one batch in both steps, so its batch-norm statistics cannot give the
  generated ones away; it stays in train mode (its running statistics are never used).
* ``"standardized"``: the paper's Exp. 5, "Gaussian standardization": every image is z-scored
  with the mean and standard deviation of its brain (non-zero) voxels, then S alone trains.
  Per image rather than per dataset, so a new scan needs no site statistics.
* ``"none"``: S alone on raw images ("no adaptation"); one training domain is allowed here,
  for the paper's cross-site rows (train on one site, test on another).

Optimiser defaults are the paper's: SGD, momentum 0.9, weight decay 0.1, the learning rate
divided by 10 when validation stops improving (patience 3). The rates are missing from our copy
of the paper; G 1e-4, S 1e-3 and D 1e-4 are the authors' public configuration (DeepNormalize).
Short CPU runs need ``optimizer="adam"`` and larger rates.

Settings, sampling and checks live in :mod:`.delisle_config`; whole-image inference, Dice per
site and the JSD in :mod:`.delisle_eval`. Everything is importable from here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ...core.adversarial import losses
from ...core.adversarial.gan import AdversarialTrainer
from ...core.device import preflight
from ...core.errors import InputError
from ...core.jobs import Progress
from ...core import distributed
from .delisle_config import DomainPatches, NormalizationConfig, check_data
from .delisle_eval import MODES, _stride, evaluate_sites, normalize_volume, segment, site_dice, standardize

__all__ = ["MODES", "DomainPatches", "NormalizationConfig", "build_networks", "check_data", "evaluate_sites",
           "load_normalization", "normalize_volume", "segment", "site_dice", "standardize", "train_normalization",
           "train_normalization_model"]


def _check_nets(generator, segmenter, discriminator, n_domains: int, cfg: NormalizationConfig) -> None:
    if segmenter is None:
        raise InputError("A segmenter is needed in every mode.")
    nets_ = [segmenter]
    if cfg.mode == "adversarial":
        if generator is None or discriminator is None:
            raise InputError("Adversarial mode needs a generator and a domain discriminator.")
        if discriminator.n_domains != n_domains:
            raise InputError(f"The discriminator knows {discriminator.n_domains} domains; {n_domains} are given.")
        nets_.append(generator)
    stride = math.lcm(*[_stride(m) for m in nets_])
    if any(p % stride for p in cfg.patch):
        raise InputError(f"The patch {cfg.patch} must be a multiple of the networks' stride {stride} on every axis.")


def _optimizer(groups, cfg: NormalizationConfig) -> torch.optim.Optimizer:
    params = [{"params": list(m.parameters()), "lr": lr} for m, lr in groups]
    if cfg.optimizer == "sgd":
        wd = 0.1 if cfg.weight_decay is None else cfg.weight_decay
        return torch.optim.SGD(params, momentum=cfg.momentum, weight_decay=wd)
    return torch.optim.Adam(params, weight_decay=cfg.weight_decay or 0.0)


def _seg_only(S, x, y, w):
    seg = losses.dice_loss(S(x), y, weight=w)
    return seg, {"loss_seg": seg}


def _warmup(G, S, x, y, w, train_s: bool):
    gx = G(x)
    ident = losses.identity_loss(gx, x)
    if not train_s:
        return ident, {"loss_identity": ident}
    seg = losses.dice_loss(S(gx.detach()), y, weight=w)  # S learns; G sees the MSE only
    return ident + seg, {"loss_identity": ident, "loss_seg": seg}


def _d_loss(G, D, x, d):
    with torch.no_grad():
        gx = G(x)
    logits = D(torch.cat([x, gx]))  # one batch: batch-norm statistics cannot tell real from generated
    return losses.domain_discriminator_loss(logits[: len(x)], d, logits[len(x):])


def _g_loss(G, S, D, x, y, w, cfg: NormalizationConfig):
    gx = G(x)
    seg = losses.dice_loss(S(gx), y, weight=w)
    adv = losses.normalization_adversarial_loss(D(torch.cat([x, gx]))[len(x):])  # same batch as D's step
    ident = losses.identity_loss(gx, x)
    loss = seg + cfg.adv_weight * adv + (cfg.identity_weight * ident if cfg.identity_weight else 0.0)
    return loss, {"loss_seg": seg, "loss_adv": adv, "loss_identity": ident}


def train_normalization(generator, segmenter, discriminator, domains: Mapping, val: Mapping | None,
                        config: NormalizationConfig, keep=None):
    """Yield :class:`Progress` each step; return ``{"best_metrics", "best_step", "history"}``.

    ``domains``/``val``: ``{site: [(image, labels), ...]}``. Modes "none"/"standardized" train
    the segmenter only (pass ``generator=discriminator=None``). Metrics: ``loss`` (what G and S
    minimise), ``loss_seg``, ``loss_identity``, and after the warm-up ``loss_adv``, ``loss_d``;
    every ``val_every`` steps ``val_dice`` (mean over sites) and ``val_dice_<site>``.
    ``keep(state, metrics, step)`` gets a CPU copy of the weights on each new best ``val_dice``
    (a NormalizeAndSegment state in adversarial mode, the segmenter's otherwise); without
    ``val``, the last weights at the end. A non-finite loss raises TrainingError.
    """
    cfg = config
    check_data(domains, val, cfg)
    adversarial = cfg.mode == "adversarial"
    G, S, D = (generator, segmenter, discriminator) if adversarial else (None, segmenter, None)
    _check_nets(G, S, D, len(domains), cfg)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    # under torchrun, each rank its own patches; rank 0 saves
    sampler = DomainPatches(domains, cfg.patch, np.random.default_rng(distributed.rank_seed(cfg.seed)), cfg.mode)
    keep = keep if distributed.is_main() else None
    trained = [m for m in (G, S, D) if m is not None]
    for m in trained:
        m.to(device).train()
    opt_g = _optimizer([(S, cfg.lr_segmenter)] + ([(G, cfg.lr_generator)] if adversarial else []), cfg)
    opt_d = _optimizer([(D, cfg.lr_discriminator)], cfg) if adversarial else None
    trainer = AdversarialTrainer([G, S] if adversarial else [S], D if adversarial else nn.Module(), opt_g, opt_d,
                                 device=device, amp=cfg.amp, freeze_discriminator=not adversarial)
    scheds = [] if cfg.plateau_patience is None else [
        torch.optim.lr_scheduler.ReduceLROnPlateau(o, "max", factor=0.1, patience=cfg.plateau_patience)
        for o in (opt_g, opt_d) if o is not None]
    w = list(cfg.dice_weights) if cfg.dice_weights else None
    best = {"score": -math.inf, "metrics": {}, "step": 0, "kept": False}
    history: list[dict] = []
    step, failed = 0, False

    def state() -> dict:
        parts = {"generator.": G, "segmenter.": S} if adversarial else {"": S}
        return {p + k: v.detach().cpu().clone() for p, m in parts.items() for k, v in m.state_dict().items()}

    def validate(at_step: int) -> dict:
        res = site_dice((G, S) if adversarial else S, val, cfg.mode, device, cfg.n_classes)
        for m in trained:
            m.train()
        flat = {"dice": res["dice_overall"], **{f"dice_{s}": v for s, v in res["dice_site"].items()}}
        if flat["dice"] > best["score"]:
            best.update(score=flat["dice"], metrics=flat, step=at_step, kept=True)
            if keep is not None:
                keep(state(), flat, at_step)
        return flat

    try:
        for step in range(1, cfg.steps + 1):
            x, y, d = (t.to(device) for t in sampler.batch(cfg.batch_size))
            if step == 1:  # memory: G, S and D graphs of up to two batches alive at once
                preflight(S, device, cfg.patch, (3 if adversarial else 1) * x.shape[0], 1, training=True)
            warm = adversarial and step <= cfg.warmup_steps
            try:
                if not adversarial:
                    logs = trainer.g_step(lambda: _seg_only(S, x, y, w))
                elif warm:
                    logs = trainer.g_step(lambda: _warmup(G, S, x, y, w, cfg.warmup_segmenter))
                else:
                    logs = trainer.d_step(lambda: _d_loss(G, D, x, d))
                    logs.update(trainer.g_step(lambda: _g_loss(G, S, D, x, y, w, cfg)))
            except Exception:
                failed = True
                raise
            metrics = {"loss": logs.pop("loss_g"), **logs}
            if val and (step % cfg.val_every == 0 or step == cfg.steps):
                v = validate(step)
                metrics.update({f"val_{k}": val_k for k, val_k in v.items()})
                for sc in scheds if not warm else ():
                    sc.step(v["dice"])
            history.append({"step": step, **metrics})
            yield Progress(step, cfg.steps, f"{'warm-up' if warm else cfg.mode} step {step}/{cfg.steps}", metrics)
    finally:
        if step > 0 and not failed and not best["kept"]:  # stopped before validating, or no val
            if val:
                validate(step)
            elif keep is not None:
                keep(state(), {}, step)
        trainer.close()
        for m in trained:
            m.eval()
    return {"best_metrics": best["metrics"], "best_step": best["step"], "history": history}


def build_networks(config: NormalizationConfig, n_domains: int):
    """(model, its arch, discriminator): a NormalizeAndSegment pair and a K+1 DomainDiscriminator
    in adversarial mode, else the segmenter alone and None. He initialisation (the paper)."""
    from ...core import nets
    from ...core.adversarial.networks import kaiming_init
    from .networks import DomainDiscriminator, NormalizeAndSegment, segmenter_arch

    cfg = config
    if cfg.mode not in MODES:
        raise InputError(f"Unknown mode {cfg.mode!r}; choose one of {list(MODES)}.")
    seg = segmenter_arch(cfg.spatial_dims, 1, cfg.n_classes, cfg.segmenter_features)
    if cfg.mode != "adversarial":
        return kaiming_init(nets.build(seg)), seg, None
    model = NormalizeAndSegment(generator={"spatial_dims": cfg.spatial_dims, "channels": 1,
                                           "features": list(cfg.generator_features),
                                           "upsample": cfg.generator_upsample}, segmenter=seg)
    kaiming_init(model.segmenter)
    return model, model.arch(), DomainDiscriminator(cfg.spatial_dims, 1, n_domains, cfg.discriminator_features)


def plain_config(cfg: NormalizationConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def train_normalization_model(registry, domains: Mapping, val: Mapping | None, config: NormalizationConfig,
                              name: str = "delisle_normalization", data: str = "user images"):
    """Generator: train in ``config.mode`` and save the best validation Dice as a new registry
    version of ``name`` (method ``delisle2019-<mode>``; extra ``sites``, ``mode``,
    ``n_classes``). Adversarial mode saves G and S as one NormalizeAndSegment; D is not kept.
    Returns ``{"best_metrics", "best_step", "entry"}``."""
    from ...core.checkpoints import data_fingerprint
    from ...core.training import save_best_on_exit

    check_data(domains, val, config)
    torch.manual_seed(config.seed)
    model, arch, disc = build_networks(config, len(domains))
    G, S = (model.generator, model.segmenter) if config.mode == "adversarial" else (None, model)
    best: dict = {}

    def keep(state, metrics, step):
        best.update(state=state, metrics=metrics, step=step)

    def save(b):
        return registry.save_new_version(
            name, b["state"], method=f"delisle2019-{config.mode}", arch=arch,
            config={**plain_config(config), "data": data}, metrics={**b["metrics"], "best_step": b["step"]},
            data_fingerprint=data_fingerprint(*[np.asarray(i[0]) for items in domains.values() for i in items]),
            extra={"sites": [str(s) for s in domains], "mode": config.mode, "n_classes": config.n_classes})

    result = yield from save_best_on_exit(train_normalization(G, S, disc, domains, val, config, keep=keep), best,
                                          save, name=name)
    return {**{k: v for k, v in (result or {}).items() if k != "history"}, "entry": best.get("entry")}


def load_normalization(entry, device="cpu"):
    """``(model, mode, meta)`` of a saved version (a registry entry or a checkpoint path):
    ``segment(model, image, device, mode)`` segments a new image the way it was trained."""
    from ...core.checkpoints import load_model

    model, meta = entry.load(device) if hasattr(entry, "load") else load_model(entry, device)
    return model, meta.get("mode", "adversarial"), meta
