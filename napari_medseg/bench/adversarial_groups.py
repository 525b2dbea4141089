"""The three groups of ``napari-medseg bench adversarial``, one per paper of issue 7.

Each function trains every compared variant with the same settings (steps, batch, learning
rate, network sizes) and the same seed, keeps each variant's best weights on a validation
set, and scores them on held-out phantom data whose seeds no training or validation set
uses. They return one dict per training seed; :mod:`.adversarial` averages over seeds.

* :func:`cardiac_group` (Chen et al. 2019, Table 1): U+D, U+A+D and U+A+D+T on an
  MS-CMR-like cohort, Dice and HD95 per class on the LGE stacks of held-out patients.
* :func:`segan_group` (Giacomello et al. 2020, Tables I and III): SegAN with the
  mask-multiplied and the concatenated critic input on all four modalities; then a FLAIR
  model (concatenated input) fine-tuned on a target modality fully or with the critic
  frozen, against the same architecture trained on the target from scratch.
* :func:`norm_group` (Delisle et al. 2019, Table 1): a segmenter trained on one site and
  tested on the other (Exp. 3-4, both directions), one trained on both sites' z-scored
  images (Exp. 5), and the adversarial normaliser + segmenter on both sites (Exp. 7).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

# held-out seeds: cardiac_cohort(seed=s) draws patients s*100000+i, tumour_slices(seed=s)
# subjects s*1e6+500000+i, multi_site(seed=s) subjects s*1e6+k*10000+i; training uses s=0,
# validation s=1 (cardiac, sites) or the validation split of s=0 (tumour)
HELD_OUT = 7
TRAIN_DATA_SEED, VAL_DATA_SEED = 0, 1


def _finite(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _with_mean(per_class: dict) -> dict:
    """Per-class values (NaN -> None) plus ``mean`` over the classes that have a value."""
    out = {k: _finite(v) for k, v in per_class.items()}
    vals = [v for v in out.values() if v is not None]
    out["mean"] = float(np.mean(vals)) if vals else None
    return out


def _drain(gen):
    """Run a training generator to its end; its return value."""
    try:
        while True:
            next(gen)
    except StopIteration as done:
        return done.value


# -- Chen et al. 2019 ----------------------------------------------------------------------


def cardiac_data(p: dict) -> dict:
    from ..methods.adversarial_segmentation.cardiac import cardiac_cohort

    size = (int(p["size"]),) * 2
    return {"train": cardiac_cohort(p["n_train"], seed=TRAIN_DATA_SEED, size=size),
            "val": cardiac_cohort(p["n_val"], seed=VAL_DATA_SEED, size=size, n_fully_labelled=p["n_val"],
                                  n_unlabelled=0),
            "test": cardiac_cohort(p["n_test"], seed=HELD_OUT, size=size, n_fully_labelled=p["n_test"],
                                   n_unlabelled=0)}


def cardiac_group(p: dict, seed: int, data: dict) -> dict:
    """``{method: evaluate_target(...) without per_case, plus best_step}`` for the three methods."""
    from ..methods.adversarial_segmentation.chen import METHODS, ChenConfig, evaluate_target, train_chen
    from ..methods.adversarial_segmentation.chen_data import chen_training_data, chen_validation_data
    from ..core.adversarial.networks import ConditionalMaskDiscriminator
    from ..methods.adversarial_segmentation.networks import DilatedResUNet

    out = {}
    for method in METHODS:
        cfg = ChenConfig(method=method, steps=p["steps"], pretrain_steps=p["pretrain_steps"],
                         batch_size=p["batch_size"], lr=p["lr"], seed=seed, val_every=p["val_every"], amp=False,
                         adv_weight=p.get("adv_weight", 1.0), d_warmup=p.get("d_warmup", False))
        train, val = chen_training_data(data["train"], cfg), chen_validation_data(data["val"], cfg)
        torch.manual_seed(seed)  # G's initial weights: the same in all three methods
        model = DilatedResUNet(2, 1, cfg.n_classes, features=p["features"], dilations=p["dilations"])
        disc = None if method == "unet" else ConditionalMaskDiscriminator(2, 1, cfg.n_classes,
                                                                            features=p["d_features"])
        best: dict = {}
        result = _drain(train_chen(model, disc, train, val, cfg,
                                   keep=lambda state, metrics, step: best.update(state=state)))
        model.load_state_dict(best["state"])
        scores = evaluate_target(model, data["test"], "cpu", cfg.target)
        out[method] = {"dice": _with_mean(scores["dice"]), "hd95": _with_mean(scores["hd95"]),
                       "best_step": int(result["best_step"])}
    return out


# -- Giacomello et al. 2020 -------------------------------------------------------------------


def tumour_data(p: dict) -> dict:
    from ..methods.modality_transfer.tumour import tumour_slices

    h = int(p["size"])
    shape, spacing = (h, h, max(16, h * 2 // 3)), (p["spacing"],) * 3
    tv = tumour_slices(p["n_train"] + p["n_val"], seed=TRAIN_DATA_SEED, shape=shape, spacing=spacing,
                       split=(p["n_train"], p["n_val"], 0))
    test = tumour_slices(p["n_test"], seed=HELD_OUT, shape=shape, spacing=spacing, split=(0, 0, 1))
    return {"train": tv["train"], "val": tv["val"], "test": test["test"], "spacing": spacing}


def _segan_config(p: dict, seed: int, **kw):
    from ..methods.modality_transfer.segan import SeganConfig

    return SeganConfig(**{**dict(steps=p["steps"], batch_size=p["batch_size"], optimizer=p["optimizer"], lr=p["lr"],
                                 seed=seed, val_every=p["val_every"], amp=False), **kw})


def _binary(scores: dict, best_step=None) -> dict:
    out = {k: _finite(scores.get(k)) for k in ("dice", "precision", "sensitivity", "hd95")}
    if best_step is not None:
        out["best_step"] = int(best_step)
    return out


def segan_group(p: dict, seed: int, data: dict) -> dict:
    """``{"multiply", "concat", "source", "source_only", "full", "frozen_critic", "scratch"}``,
    each ``{"dice", "precision", "sensitivity", "hd95"(, "best_step")}`` on the test subjects."""
    from ..methods.modality_transfer import segan
    from ..methods.modality_transfer.tumour import MODALITIES

    feats = dict(seg_features=p["seg_features"], critic_features=p["critic_features"])
    out = {}
    for mode in ("multiply", "concat"):  # Table I: all four modalities as input channels
        seg, critic = segan.build_segan(mode, len(MODALITIES), seed=seed, **feats)
        cfg = _segan_config(p, seed, critic_input=mode, modality=MODALITIES)
        result = _drain(segan.train_segan(seg, critic, data["train"], data["val"], cfg))  # ends on the best weights
        out[mode] = _binary(segan.evaluate(seg, data["test"], MODALITIES, spacing=data["spacing"]),
                            result["best_step"])
    # Table III: the FLAIR model (concatenated input), then fine-tuned on the target modality
    seg, critic = segan.build_segan("concat", 1, seed=seed, **feats)
    cfg = _segan_config(p, seed, critic_input="concat", modality=p["source"], steps=p["source_steps"])
    result = _drain(segan.train_segan(seg, critic, data["train"], data["val"], cfg))
    out["source"] = _binary(segan.evaluate(seg, data["test"], p["source"], spacing=data["spacing"]),
                            result["best_step"])
    source = {"segmentor": seg, "critic": critic}
    compared = _drain(segan.compare_transfer(source, p["target"], data["train"], data["val"], data["test"],
                                             _segan_config(p, seed), spacing=data["spacing"]))
    for how, scores in compared.items():
        out[how] = _binary(scores, scores.get("best_step"))
    return out


# -- Delisle et al. 2019 ----------------------------------------------------------------------


def site_data(p: dict) -> dict:
    from ..methods.site_normalization.sites import multi_site

    h = int(p["size"])
    kw = dict(shape=(h, h * 7 // 6, h), spacing=(p["spacing"],) * 3, as_slices=True)
    val = multi_site(p["n_val"], seed=VAL_DATA_SEED, **kw)
    test = multi_site(p["n_test"], seed=HELD_OUT, **kw)
    step = int(p["slice_step"])
    return {"train": multi_site(p["n_train"], seed=TRAIN_DATA_SEED, **kw),
            "val": {k: v[::step] for k, v in val.items()}, "test": {k: v[::step] for k, v in test.items()}}


def _norm_train(p: dict, seed: int, mode: str, train: dict, val: dict, batch_size: int):
    from ..methods.site_normalization.delisle import NormalizationConfig, build_networks, train_normalization

    cfg = NormalizationConfig(spatial_dims=2, patch_size=(p["patch"],) * 2, batch_size=batch_size, steps=p["steps"],
                              warmup_steps=p["warmup_steps"], optimizer="adam", lr_generator=p["lr"],
                              lr_segmenter=p["lr"], lr_discriminator=p["lr"], val_every=p["val_every"],
                              plateau_patience=None, mode=mode, seed=seed, amp=False,
                              segmenter_features=p["segmenter_features"], generator_features=p["generator_features"],
                              discriminator_features=p["discriminator_features"],
                              generator_upsample=p.get("generator_upsample", "linear"),
                              adv_weight=p.get("adv_weight", 1.0))
    torch.manual_seed(seed)
    model, _, disc = build_networks(cfg, max(2, len(train)))
    gen, seg = (model.generator, model.segmenter) if mode == "adversarial" else (None, model)
    best: dict = {}
    result = _drain(train_normalization(gen, seg, disc, train, val, cfg,
                                        keep=lambda state, metrics, step: best.update(state=state)))
    model.load_state_dict(best["state"])  # the last weights are in memory; the best validation's are kept
    return gen, seg, int(result["best_step"])


def norm_group(p: dict, seed: int, data: dict) -> dict:
    """Per-class Dice per site for each variant, and the JSDs; see the module docstring."""
    from ..methods.site_normalization.delisle import evaluate_sites

    train, val, test = data["train"], data["val"], data["test"]
    sites = list(train)
    out: dict = {"single_site": {}}
    # no adaptation: one site only, twice the per-domain batch so that every variant sees the
    # same number of patches per step (the two-site modes draw batch_size patches per site)
    for s in sites:
        gen, seg, step = _norm_train(p, seed, "none", {s: train[s]}, {s: val[s]}, p["batch_size"] * len(sites))
        out["single_site"][s] = {**evaluate_sites(None, seg, test, "none"), "best_step": step}
    for mode in ("standardized", "adversarial"):
        gen, seg, step = _norm_train(p, seed, mode, train, val, p["batch_size"])
        out[mode] = {**evaluate_sites(gen, seg, test, mode), "best_step": step}
    return out


def timed(fn, *args):
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0
