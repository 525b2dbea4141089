"""``napari-medseg bench adversarial``: the comparisons of the three papers of issue 7, on
held-out phantom data, each variant trained with the same budget and seed.

1. Cardiac (Chen et al. 2019, Table 1): the dilated residual U-net alone (U+D), with the
   conditional mask discriminator (U+A+D) and with weak domain transfer as well (U+A+D+T),
   trained on an MS-CMR-like cohort (seed 0, MS-CMR's proportions: of 12 patients 1 labelled
   on LGE too, 8 on bSSFP + T2 only, 3 on nothing), the best validation weights kept (LGE of
   two other patients, seed 1), then Dice and HD95 per class on held-out patients' LGE stacks.
2. SegAN (Giacomello et al. 2020, Table I): the mask-multiplied (SegAN) and the concatenated
   critic input, all four modalities as channels, whole-tumour Dice on held-out subjects.
3. Modality transfer (Table III): a FLAIR model with the concatenated input, fine-tuned on
   the target modality fully or with its critic frozen, against training from scratch,
   all three for the same steps; also the FLAIR model on the target without fine-tuning.
4. Normalisation across sites (Delisle et al. 2019, Table 1, 2-D slices): "cross-site no
   adaptation" is Exp. 3-4, a segmenter trained on one site and tested on the other,
   averaged over both directions (infant -> adult and adult -> infant); "standardized" is
   Exp. 5 (both sites, each image z-scored); "adversarial" is Exp. 7 (both sites, G + S
   + D). JSD between the sites' brain-intensity histograms of the test images, raw and G(x).

Per-class values are means over the training seeds (``seeds``); ``spread`` holds their
standard deviation, ``per_seed`` each seed's values.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from . import adversarial_groups as groups
from .memory import peak_rss_mb

CARDIAC = dict(size=48, n_train=12, n_val=2, n_test=4, steps=300, pretrain_steps=100, batch_size=8, lr=2e-3,
               val_every=20, features=(8, 16, 32), dilations=(2, 4), d_features=(8, 16, 32, 32),
               adv_weight=0.01, d_warmup=True)  # issue 20: chosen on validation Dice (adversarial-chen-ablation.json)
SEGAN = dict(size=48, spacing=3.0, n_train=8, n_val=2, n_test=4, steps=200, source_steps=200, batch_size=8,
             optimizer="adam", lr=2e-3, val_every=20, seg_features=(8, 16, 32), critic_features=(8, 16, 32),
             source="FLAIR", target="T2")
NORM = dict(size=48, spacing=3.0, n_train=2, n_val=1, n_test=2, slice_step=3, patch=32, steps=300,
            warmup_steps=60, batch_size=4, lr=2e-3, val_every=20, segmenter_features=(8, 16, 32),
            generator_features=(8, 16), discriminator_features=(8, 16, 32), generator_upsample="linear",
            adv_weight=0.01)  # issue 20: weight chosen on validation Dice; full-resolution U-Net (no checkerboard)
SIZES = {
    True: {"seeds": (0,), "cardiac": dict(CARDIAC, steps=60, pretrain_steps=20, val_every=10, n_train=10, n_test=3),
           "segan": dict(SEGAN, steps=50, source_steps=60, val_every=10, n_train=6),
           "norm": dict(NORM, steps=60, warmup_steps=12, val_every=10)},
    False: {"seeds": (0, 1, 2), "cardiac": CARDIAC, "segan": SEGAN, "norm": NORM},
}
GROUPS = ("cardiac", "segan", "norm")
CHECKERBOARD_MAX = 1.2  # as the staining bench: the output's 2-px energy share at most 1.2x the input's
TRIED = ("settings tried while building the bench (seed 0, Adam 2e-3; budgets fixed before the full run, not tuned "
         "on its results): cardiac 64 px, 60 steps (20 pre-training): mean LGE Dice U+D 0.436, U+A+D 0.380, "
         "U+A+D+T 0.210; 48 px, 200 steps (66): 0.515, 0.494, 0.322; 48 px, 120 steps without the adversarial "
         "phase, last weights: U+D 0.429 vs U+D+T 0.591 (the weak transfer helps, the adversarial phase of these "
         "short runs costs Dice; validation Dice on 2 patients swings by 0.2 between checks); pseudo-masks vs LGE "
         "truth on the training patients: Dice LV/myo/RV 0.69/0.59/0.63 from bSSFP, 0.63/0.52/0.57 from T2. "
         "Normalisation 48 px, 60 steps: adversarial below standardized (mean Dice 0.36 vs 0.52 in one run, "
         "0.36 vs 0.51 in --quick) while the JSD fell (0.50 -> 0.36, 0.49 -> 0.34)")
CARDIAC_KEYS = {"unet": "unet", "adversarial": "adv", "adversarial_transfer": "adv_transfer"}
TRANSFER = ("full", "frozen_critic", "scratch", "source_only")


def _mean_std(values: list) -> tuple:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals)) if len(vals) > 1 else None)


def _aggregate(rows: list) -> tuple:
    """(mean, spread) over seeds of a number or of a flat dict of numbers (None ignored)."""
    if isinstance(rows[0], dict):
        pairs = {k: _mean_std([r.get(k) for r in rows]) for k in rows[0]}
        return {k: m for k, (m, _) in pairs.items()}, {k: s for k, (_, s) in pairs.items()}
    return _mean_std(rows)


def _per_class_mean(dicts: list[dict]) -> dict:
    """Per-class mean of several per-class dicts (e.g. two sites), then ``mean`` over classes."""
    keys = [k for k in dicts[0] if k != "mean"]
    return groups._with_mean({k: _mean_std([d.get(k) for d in dicts])[0] for k in keys})


def seed_values(card: dict, seg: dict, norm: dict) -> dict:
    """The reported keys of one seed from the three groups' raw results."""
    r = {}
    for method, short in CARDIAC_KEYS.items():
        r[f"cardiac_dice_{short}"] = card[method]["dice"]
        r[f"cardiac_hd95_{short}"] = card[method]["hd95"]
    for mode in ("multiply", "concat"):
        r[f"segan_dice_{mode}"] = seg[mode]["dice"]
        r[f"segan_hd95_{mode}"] = seg[mode]["hd95"]
    for how in TRANSFER:
        r[f"transfer_dice_{how}"] = seg[how]["dice"]
        r[f"transfer_hd95_{how}"] = seg[how]["hd95"]
    r["transfer_source_dice"] = seg["source"]["dice"]
    single = norm["single_site"]
    sites = list(single)
    cross = {f"{a}->{b}": single[a]["dice"][b] for a in sites for b in sites if a != b}
    same = {f"{a}->{a}": single[a]["dice"][a] for a in sites}
    r["norm_jsd_before"] = norm["adversarial"]["jsd_before"]
    r["norm_jsd_after"] = norm["adversarial"]["jsd_after"]
    r["norm_jsd_standardized"] = norm["standardized"]["jsd_after"]
    r["norm_checkerboard_ratio"] = norm["adversarial"].get("checkerboard_ratio")
    r["norm_dice_cross_site_no_adaptation"] = _per_class_mean(list(cross.values()))
    r["norm_dice_same_site_no_adaptation"] = _per_class_mean(list(same.values()))
    for mode in ("standardized", "adversarial"):
        r[f"norm_dice_{mode}"] = _per_class_mean(list(norm[mode]["dice"].values()))
    r["norm_dice_by_site"] = {**{k: groups._with_mean(v) for k, v in {**same, **cross}.items()},
                              **{f"{mode} ({s})": groups._with_mean(norm[mode]["dice"][s])
                                 for mode in ("standardized", "adversarial") for s in sites}}
    r["best_steps"] = {**{f"cardiac_{m}": card[m]["best_step"] for m in CARDIAC_KEYS},
                       **{f"segan_{m}": seg[m]["best_step"] for m in ("multiply", "concat", "source", "full",
                                                                    "frozen_critic", "scratch")},
                       **{f"norm_none_{s}": single[s]["best_step"] for s in sites},
                       **{f"norm_{m}": norm[m]["best_step"] for m in ("standardized", "adversarial")}}
    return r


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _gt(a, b, strict=True) -> bool:
    return a is not None and b is not None and (a > b if strict else a >= b)


def goals(r: dict, per_seed: list | None = None) -> tuple[dict, dict]:
    """(goal texts with the numbers and met / NOT met, boolean flags), on the seed means;
    with ``per_seed`` each text also says in how many seeds the goal held."""
    per_seed = per_seed or []

    def checks(x):
        cu, ca, ct = (x[f"cardiac_dice_{k}"]["mean"] for k in ("unet", "adv", "adv_transfer"))
        nn_, ns, na = (x[f"norm_dice_{k}"]["mean"] for k in ("cross_site_no_adaptation", "standardized", "adversarial"))
        return {"goal_cardiac_met": _gt(ct, ca, strict=False) and _gt(ca, cu, strict=False),
                "goal_segan_met": _gt(x["segan_dice_concat"], x["segan_dice_multiply"], strict=False),
                "goal_transfer_met": _gt(x["transfer_dice_frozen_critic"], x["transfer_dice_full"], strict=False)
                and _gt(x["transfer_dice_full"], x["transfer_dice_scratch"], strict=False),
                "goal_norm_jsd_met": _gt(x["norm_jsd_before"], x["norm_jsd_after"]),
                "goal_norm_dice_met": _gt(na, ns) and _gt(ns, nn_),
                "goal_norm_checkerboard_met": _gt(CHECKERBOARD_MAX, x.get("norm_checkerboard_ratio"), strict=False)}

    flags = checks(r)
    held = {k: sum(checks(s)[k] for s in per_seed) for k in flags}

    def seeds(flag):
        return f"; held in {held[flag]} of {len(per_seed)} seed(s)" if per_seed else ""

    def word(flag):
        return "met" if flags[flag] else "NOT met"

    cu, ca, ct = (r[f"cardiac_dice_{k}"] for k in ("unet", "adv", "adv_transfer"))
    card = ", ".join(f"{c} {_fmt(ct[c])} vs {_fmt(cu[c])}" for c in ct if c != "mean")
    nn_, ns, na = (r[f"norm_dice_{k}"] for k in ("cross_site_no_adaptation", "standardized", "adversarial"))
    classes = [c for c in na if c != "mean"]
    order = sum(_gt(na[c], ns[c]) and _gt(ns[c], nn_[c]) for c in classes)
    norm = ", ".join(f"{c} {_fmt(na[c])} / {_fmt(ns[c])} / {_fmt(nn_[c])}" for c in classes)
    t = {k: r[f"transfer_dice_{k}"] for k in TRANSFER}
    texts = {
        "cardiac_dice_adv_transfer": f"U+A+D+T ≥ U+A+D ≥ U+D on the mean LGE Dice: {word('goal_cardiac_met')} "
                                     f"({_fmt(ct['mean'])} / {_fmt(ca['mean'])} / {_fmt(cu['mean'])}; "
                                     f"per class U+A+D+T vs U+D: {card}){seeds('goal_cardiac_met')}",
        "segan_dice_concat": f"concat ≥ multiply: {word('goal_segan_met')} ({_fmt(r['segan_dice_concat'])} vs "
                             f"{_fmt(r['segan_dice_multiply'])}){seeds('goal_segan_met')}",
        "transfer_dice_full": f"FLAIR -> T2 transfer, frozen critic ≥ full fine-tuning ≥ from scratch (paper Table "
                              f"III): {word('goal_transfer_met')} ({_fmt(t['frozen_critic'])} / {_fmt(t['full'])} / "
                              f"{_fmt(t['scratch'])}; source model without fine-tuning {_fmt(t['source_only'])})"
                              f"{seeds('goal_transfer_met')}",
        "norm_jsd_after": f"after < before: {word('goal_norm_jsd_met')} ({_fmt(r['norm_jsd_after'])} vs "
                          f"{_fmt(r['norm_jsd_before'])}; z-scoring gives {_fmt(r['norm_jsd_standardized'])})"
                          f"{seeds('goal_norm_jsd_met')}",
        "norm_dice_adversarial": f"adversarial > standardized > cross-site no adaptation on the mean Dice: "
                                 f"{word('goal_norm_dice_met')} ({_fmt(na['mean'])} / {_fmt(ns['mean'])} / "
                                 f"{_fmt(nn_['mean'])}; per class adversarial / standardized / no adaptation: "
                                 f"{norm}; the order holds for {order} of {len(classes)} classes)"
                                 f"{seeds('goal_norm_dice_met')}",
        "norm_checkerboard_ratio": f"no checkerboard, the generator's share of 2-px-period energy ≤ {CHECKERBOARD_MAX} "
                                   f"× its input's: {word('goal_norm_checkerboard_met')} "
                                   f"({_fmt(r.get('norm_checkerboard_ratio'))}){seeds('goal_norm_checkerboard_met')}",
    }
    return texts, flags


def _settings(quick: bool, seeds, overrides: dict) -> dict:
    cfg = copy.deepcopy(SIZES[bool(quick)])
    for g in GROUPS:
        cfg[g].update(overrides.get(g) or {})
    cfg["seeds"] = tuple(int(s) for s in (cfg["seeds"] if seeds is None else seeds))
    return cfg


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def run(quick: bool = False, json_path: str | None = None, *, seeds=None, cardiac: dict | None = None,
        segan: dict | None = None, norm: dict | None = None, threads: int | None = 1) -> dict:
    """The benchmark, on the CPU. ``seeds``: training seeds (default one in quick mode, two
    in full); ``cardiac``, ``segan``, ``norm``: overrides of the group's settings (for tests:
    smaller images, fewer steps); ``threads``: torch CPU threads while it runs (None: as set)."""
    import torch

    import importlib

    for m in ("adversarial_segmentation.chen", "site_normalization.delisle", "modality_transfer.segan"):
        importlib.import_module(f"napari_medseg.methods.{m}")  # imports (seconds) out of the group timings

    t0 = time.perf_counter()
    cfg = _settings(quick, seeds, {"cardiac": cardiac, "segan": segan, "norm": norm})
    before = torch.get_num_threads()
    group_seconds = {}
    try:
        if threads:
            torch.set_num_threads(int(threads))  # tiny convolutions are overhead-bound: one thread is faster
        data = {}
        for g, make in (("cardiac", groups.cardiac_data), ("segan", groups.tumour_data), ("norm", groups.site_data)):
            data[g], group_seconds[f"{g}_data"] = groups.timed(make, cfg[g])
        raw = {g: [] for g in GROUPS}
        fns = {"cardiac": groups.cardiac_group, "segan": groups.segan_group, "norm": groups.norm_group}
        for g in GROUPS:
            t = time.perf_counter()
            for s in cfg["seeds"]:
                raw[g].append(fns[g](cfg[g], s, data[g]))
            group_seconds[g] = time.perf_counter() - t
    finally:
        torch.set_num_threads(before)
    per_seed = [seed_values(c, s, n) for c, s, n in zip(raw["cardiac"], raw["segan"], raw["norm"])]
    r: dict = {"quick": bool(quick)}
    spread: dict = {}
    for k in per_seed[0]:
        if k == "best_steps":
            continue
        if k == "norm_dice_by_site":
            r[k] = {name: _aggregate([p[k][name] for p in per_seed])[0] for name in per_seed[0][k]}
            continue
        r[k], spread[k] = _aggregate([p[k] for p in per_seed])
    texts, flags = goals(r, per_seed)
    r.update(flags)
    seg_p, card_p, norm_p = cfg["segan"], cfg["cardiac"], cfg["norm"]
    r.update({
        "seeds": list(cfg["seeds"]),
        "spread": spread,
        "per_seed": [{"seed": s, **p} for s, p in zip(cfg["seeds"], per_seed)],
        "settings": {g: _plain(cfg[g]) for g in GROUPS},
        "group_seconds": group_seconds,
        "torch_threads": int(threads or before),
        "peak_rss_mb": peak_rss_mb(),
        "notes": [
            "every variant of a group is trained with the same steps, batch, learning rate, network sizes and "
            "seed (same initial weights), keeps its best validation weights, and is scored once on held-out "
            f"phantom data (seed {groups.HELD_OUT} generators; training seed 0, validation seed 1 or a "
            "validation split of seed 0); values are means over the training seeds, spread their std",
            f"cardiac: {card_p['size']}x{card_p['size']} slices, {card_p['n_train']} training patients in "
            f"MS-CMR proportions, {card_p['n_test']} held-out patients, {card_p['steps']} iterations "
            f"({card_p['pretrain_steps']} of G pre-training), batch {card_p['batch_size']}, Adam "
            f"{card_p['lr']:g} (the paper: 2e-4 for far longer); Dice and HD95 (voxel units, slice index "
            "counted as 1) per patient in 3-D, averaged; U+A+D+T also draws a batch of LGE slices with "
            "pseudo-masks each iteration (its method), the others only the labelled slices",
            f"SegAN: {seg_p['size']}x{seg_p['size']} axial slices of {seg_p['n_train']} training / "
            f"{seg_p['n_val']} validation / {seg_p['n_test']} held-out tumour subjects, percentile-scaled; "
            f"{seg_p['steps']} steps, batch {seg_p['batch_size']}, {seg_p['optimizer']} {seg_p['lr']:g} (the "
            "paper: RMSprop 2e-5 with early stopping); multiply vs concat on all four modalities (Table I); "
            f"HD95 in mm",
            f"transfer: {seg_p['source']} model (concat, {seg_p['source_steps']} steps) fine-tuned on "
            f"{seg_p['target']} for {seg_p['steps']} steps fully or with the critic frozen, against the same "
            f"architecture trained on {seg_p['target']} from scratch for as many steps (Table III); "
            "transfer_dice_source_only: the FLAIR model on the target without fine-tuning (Fig. 3)",
            "normalisation, as Delisle's Table 1: norm_dice_cross_site_no_adaptation = Exp. 3-4, a segmenter on "
            "raw images of one site tested on the other, mean of infant->adult and adult->infant; "
            "norm_dice_same_site_no_adaptation = Exp. 1-2 (the same models on their own site); "
            "norm_dice_standardized = Exp. 5 (both sites, per-image z-score); norm_dice_adversarial = Exp. 7 "
            "(both sites, G + S + K+1-class D); the last two averaged over both sites' test images. 2-D "
            f"{norm_p['size']}-pixel axial slices (the paper: 3-D patches), {norm_p['steps']} steps "
            f"({norm_p['warmup_steps']} of G warm-up in adversarial mode), Adam {norm_p['lr']:g} (the paper's "
            "SGD barely moves in short runs), patches of "
            f"{norm_p['patch']} px, {norm_p['batch_size']} per site per step; the one-site models draw twice "
            "that from their site, so every model sees as many patches; no HD95 here",
            "norm_jsd_*: Jensen-Shannon divergence (base 2) between the two sites' brain-voxel intensity "
            "histograms of the held-out images: raw (before), the generator's output (after), z-scored "
            "(standardized)",
            f"CPU, {int(threads or before)} torch thread(s); group_seconds also hold the data generation",
            TRIED,
        ],
        "seconds": time.perf_counter() - t0,
        "goals": texts,
    })
    if json_path:
        from ..core.atomic import atomic_write_json

        atomic_write_json(json_path, r)
    return r
