"""``napari-medseg bench joint``: the joint lesion + tissue model (Dorent et al. 2019) against
its baselines, on held-out phantom subjects and on the real MNI152 template.

The registry's current versions of ``joint_lesion_tissue`` (W+N), ``joint_tissue_only``
(N) and ``joint_lesion_only`` (W) segment every scan through :func:`segment_scan`, the
path the widget uses (resampling to the model's training spacing and back).

1. Held-out phantom subjects (seeds 900000 + i, which :func:`phantom.subject_seed` never
   produces, so no training set holds them), all with lesions, scored against their
   joint reference labels: the joint model from T1 + FLAIR (every class) and from T1
   alone (tissues), N from T1 (tissues), W from T1 + FLAIR (lesion) and a Gaussian
   mixture on T1 (tissues) given the reference brain mask (oracle skull stripping, a
   favour to the baseline). Dice per class, mean over the subjects that have the class.
2. Inter-modality agreement: the joint model's tissue maps from T1 and from T1 + FLAIR,
   with predicted lesion counted as white matter in both (lesions lie in white matter,
   and T1 alone is not expected to find them), Dice per tissue class.
3. MNI152 at 1 mm, cropped to 182x218x182, with synthetic WM lesions and a derived FLAIR:
   predicted grey matter against the GM map > 0.5, white matter + lesion against the WM
   map > 0.5 (lesions are inserted in deep white matter); the same scan times inference.
"""

from __future__ import annotations

import time

import numpy as np

from .memory import peak_rss_mb

HELD_OUT_SEED = 900_000  # subject_seed() only yields seeds whose value mod 1e6 is below 300000
SHAPE, SPACING = (64, 72, 64), (2.5, 2.5, 2.5)  # the shipped models' training phantoms
SPEED_SHAPE = (182, 218, 182)  # at 1 mm
MODES = ("joint", "tissue_only", "lesion_only")
MARGIN = 0.02
LESION_DICE_GOAL, FP_ML_GOAL = 0.7, 0.5
SECONDS_BEFORE, SPEED_FACTOR = 4.1, 2.0  # inference time per 1 mm volume before issue 16, and the allowed factor
SIZES = {True: {"subjects": 2, "timed_runs": 1}, False: {"subjects": 6, "timed_runs": 3}}
GM_NAMES = ("grey matter", "deep grey matter", "cerebellum")
WM_NAMES = ("white matter", "brainstem", "lesion")


def current_models(registry=None) -> dict:
    """``mode -> (model, meta, entry)`` for the registry's current versions; one MedsegError
    naming the training command of every missing model."""
    from ..core.errors import MedsegError
    from ..core.registry import Registry
    from ..methods.joint_lesion_tissue.models import BASELINE_NAMES

    registry = registry or Registry()
    missing = [m for m in MODES if not registry.list(BASELINE_NAMES[m])]
    if missing:
        cmds = "; ".join(f"{BASELINE_NAMES[m]}: napari-medseg train joint --mode {m}" for m in missing)
        raise MedsegError(f"bench joint compares the joint model with its baselines, and the registry lacks "
                          f"{len(missing)} of them. Train them first ({cmds}).")
    out = {}
    for m in MODES:
        entry = registry.get(BASELINE_NAMES[m])
        model, meta = entry.load("cpu")
        out[m] = (model, meta, entry)
    return out


def _label_set(models):
    from ..core.errors import MedsegError
    from ..methods.joint_lesion_tissue.models import label_set_of

    sets = {m: label_set_of(meta) for m, (_, meta, _) in models.items()}
    if len({ls.names for ls in sets.values()}) != 1:
        found = "; ".join(f"{m}: {', '.join(ls.names)}" for m, ls in sets.items())
        raise MedsegError(f"The joint model and its baselines use different label sets ({found}); "
                          "retrain them with one --label-set.")
    return sets["joint"]


def _nan_to_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def _mean(rows: list[dict]) -> dict:
    """Per-class mean over subjects, ignoring NaN (class absent from both); None if never scored."""
    out = {}
    for k in rows[0]:
        v = np.array([r[k] for r in rows], float)
        out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    return _nan_to_none(out)


def _lesion_as_wm(labels, ls):
    wm = ls.names.index("white matter") if "white matter" in ls.names else 0
    return np.where(labels == ls.lesion, wm, labels)


def phantom_study(models, ls, n: int, shape=SHAPE, spacing=SPACING) -> dict:
    """Section 1 and 2 of the module docstring, on ``n`` held-out subjects."""
    from ..methods.joint_lesion_tissue.baseline_gmm import gmm_tissue_segmentation
    from ..methods.joint_lesion_tissue.inference import segment_scan
    from ..methods.joint_lesion_tissue.labels import REDUCED
    from ..methods.joint_lesion_tissue.metrics import dice_per_class
    from ..core.phantoms.brain import brain_phantom

    tissues, lesion = ls.tissues, (ls.lesion,)
    rows: dict[str, list] = {k: [] for k in ("joint", "t1_only", "tissue_only", "lesion_only", "gmm", "agree",
                                             "joint_out", "tissue_only_out", "gmm_out")}

    def seg(mode, vols, ph):
        model, meta, _ = models[mode]
        return segment_scan(model, meta, ls, vols, ph.affine, mask=ph.labels > 0).labels

    for i in range(n):
        ph = brain_phantom(shape, HELD_OUT_SEED + i, "reduced" if ls.names == REDUCED.names else "full",
                           lesions=True, spacing=spacing)
        ref, both, t1 = ph.labels, {"T1": ph.t1, "FLAIR": ph.flair}, {"T1": ph.t1}
        pred = {"joint": seg("joint", both, ph), "t1_only": seg("joint", t1, ph),
                "tissue_only": seg("tissue_only", t1, ph), "lesion_only": seg("lesion_only", both, ph),
                "gmm": gmm_tissue_segmentation(ph.t1, ls, mask=ref > 0)}
        rows["joint"].append(dice_per_class(pred["joint"], ref, ls))
        rows["lesion_only"].append(dice_per_class(pred["lesion_only"], ref, ls, lesion))
        for k in ("t1_only", "tissue_only", "gmm"):
            rows[k].append(dice_per_class(pred[k], ref, ls, tissues))
        rows["agree"].append(dice_per_class(_lesion_as_wm(pred["t1_only"], ls), _lesion_as_wm(pred["joint"], ls),
                                            ls, tissues))
        outside = ref != ls.lesion  # tissue scored away from the lesions: no method pays for them
        for k in ("joint", "tissue_only", "gmm"):
            rows[f"{k}_out"].append(dice_per_class(np.where(outside, pred[k], 0), np.where(outside, ref, 0), ls,
                                                   tissues))
    agree = _mean(rows["agree"])
    vals = [v for v in agree.values() if v is not None]
    agree["mean"] = float(np.mean(vals)) if vals else None
    return {
        "dice_joint": _mean(rows["joint"]),
        "dice_tissue_only": _mean(rows["tissue_only"]),
        "dice_lesion_only": _mean(rows["lesion_only"]),
        "dice_gmm_baseline": _mean(rows["gmm"]),
        "dice_joint_t1_only_input": _mean(rows["t1_only"]),
        "inter_modality_agreement": agree,
        "dice_tissue_outside_lesions": {"joint": _mean(rows["joint_out"]),
                                        "tissue_only": _mean(rows["tissue_only_out"]),
                                        "gmm_baseline": _mean(rows["gmm_out"])},
        "held_out_seeds": [HELD_OUT_SEED + i for i in range(n)],
    }


def _binary_dice(a, b) -> float | None:
    """Dice of two masks; None when both are empty."""
    from ..core.metrics import dice

    return dice(a, b, True) if (np.any(a) or np.any(b)) else None


def _crop(shape, t1, target=SPEED_SHAPE):
    """Slices of ``target`` size (or the whole axis if smaller), centred on the head."""
    idx = np.array(np.nonzero(t1 > 0.02))
    lo, hi = idx.min(1), idx.max(1)
    out = []
    for n, t, a, b in zip(shape, target, lo, hi):
        t = min(t, n)
        start = int(np.clip((a + b) // 2 - t // 2, 0, n - t))
        out.append(slice(start, start + t))
    return tuple(out)


def _mni_reference(gm, wm, mask):
    """Reduced-set reference: arg-max of the CSF, GM and WM maps inside the brain mask, with
    CSF = 1 - GM - WM (nilearn ships GM and WM maps; the brain mask is the template's
    non-zero voxels, the same for every method)."""
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    return np.where(mask, 1 + np.argmax(np.stack([csf, gm, wm]), 0), 0).astype(np.uint8)


def _tissue_dice(pred, ref, ls) -> dict:
    from ..methods.joint_lesion_tissue.metrics import dice_per_class

    return _nan_to_none(dice_per_class(_lesion_as_wm(pred, ls), ref, ls, ls.tissues))


def mni_tissue_study(models, ls, spacings=(1.0, 2.0)) -> dict:
    """Real T1 tissue Dice at each spacing: the joint model and N from T1 alone and the GMM,
    all given the same brain mask; predicted lesion counts as white matter. Also the lesion
    volume the joint model predicts on the clean template (no lesions), from T1 alone and
    from T1 + a FLAIR-like image derived from the tissue maps."""
    from ..methods.joint_lesion_tissue.baseline_gmm import gmm_tissue_segmentation
    from ..methods.joint_lesion_tissue.inference import segment_scan
    from ..methods.joint_lesion_tissue.mni import derived_flair, mni152

    out: dict = {}
    for sp in spacings:
        t1, gm, wm, affine = mni152(sp)
        mask = t1 > 0
        ref = _mni_reference(gm, wm, mask)
        tag = f"mni{sp:g}mm"
        jm, jmeta, _ = models["joint"]
        res = segment_scan(jm, jmeta, ls, {"T1": t1}, affine, mask=mask)
        out[f"dice_{tag}_joint"] = _tissue_dice(res.labels, ref, ls)
        out[f"dice_{tag}_gmm"] = _tissue_dice(gmm_tissue_segmentation(t1, ls, mask=mask), ref, ls)
        nm, nmeta, _ = models["tissue_only"]
        out[f"dice_{tag}_tissue_only"] = _tissue_dice(segment_scan(nm, nmeta, ls, {"T1": t1}, affine,
                                                                   mask=mask).labels, ref, ls)
        unrefined = segment_scan(jm, jmeta, ls, {"T1": t1}, affine, mask=mask, refine=False)
        out[f"dice_{tag}_joint_unrefined"] = _tissue_dice(unrefined.labels, ref, ls)
        if sp == spacings[0]:
            out["mni_lesion_fp_ml_clean_t1_only"] = res.lesion["lesion_volume_ml"]
            both = segment_scan(jm, jmeta, ls, {"T1": t1, "FLAIR": derived_flair(gm, wm, mask)}, affine, mask=mask)
            out["mni_lesion_fp_ml_clean"] = both.lesion["lesion_volume_ml"]
            out["mni_clean_spacing_mm"] = float(sp)
    return out


def mni_study(models, ls, timed_runs: int, spacing: float = 1.0, seed: int = 0) -> dict:
    """Section 3: MNI152 with inserted lesions (diameters 3-12 mm): GM/WM and lesion Dice of
    the joint model from T1 + FLAIR with the brain mask, and its inference time."""
    from ..methods.joint_lesion_tissue.inference import segment_scan
    from ..methods.joint_lesion_tissue.labels import REDUCED
    from ..methods.joint_lesion_tissue.mni import mni_reference_labels, mni_with_lesions

    p = mni_with_lesions(seed=seed, n_lesions=8, spacing=spacing, radius=(1.5 / spacing, 6.0 / spacing))
    sl = _crop(p.t1.shape, p.t1)
    affine = p.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.array([s.start for s in sl], float) + affine[:3, 3]
    vols = {"T1": p.t1[sl], "FLAIR": p.flair[sl]}
    mask = vols["T1"] > 0
    model, meta, _ = models["joint"]
    times, res = [], None
    for _ in range(max(1, timed_runs)):
        t0 = time.perf_counter()
        res = segment_scan(model, meta, ls, vols, affine, mask=mask)
        times.append(time.perf_counter() - t0)
    labels = res.labels
    ref = mni_reference_labels(p.gm[sl], p.wm[sl], 0.5)
    gm_ids = [ls.names.index(n) for n in GM_NAMES if n in ls.names]
    wm_ids = [ls.names.index(n) for n in WM_NAMES if n in ls.names]
    gm_ref, wm_ref = ref == REDUCED.names.index("grey matter"), ref == REDUCED.names.index("white matter")
    truth = p.lesion[sl] > 0
    return {
        "dice_mni_gm": _binary_dice(np.isin(labels, gm_ids), gm_ref),
        "dice_mni_wm": _binary_dice(np.isin(labels, wm_ids), wm_ref),
        "dice_mni_lesion": _binary_dice(labels == ls.lesion, truth),
        "mni_lesion_true_ml": float(truth.sum()) * float(np.prod(np.abs(np.diag(affine)[:3]))) / 1000.0,
        "mni_lesion_pred_ml": res.lesion["lesion_volume_ml"],
        "volumes_per_s": len(times) / sum(times),
        "seconds_per_volume": float(np.mean(times)),
        "volume_seconds_cpu": float(np.mean(times)),
        "speed_volume_shape": "x".join(str(s.stop - s.start) for s in sl),
        "speed_volume_spacing_mm": float(spacing),
        "speed_timed_runs": len(times),
    }


def fmt(v):
    return "n/a" if v is None else f"{v:.3f}"


def goals(r: dict, ls) -> tuple[dict, dict]:
    """(goal texts with the numbers and met / not met, boolean flags)."""
    names = [ls.names[c] for c in ls.tissues]
    j, n, w, g = r["dice_joint"], r["dice_tissue_only"], r["dice_lesion_only"], r["dice_gmm_baseline"]

    def ge(a, b, margin=0.0):
        return a is not None and b is not None and a >= b - margin

    les = ls.names[ls.lesion]
    vs_base = [ge(j[k], n[k], MARGIN) for k in names] + [ge(j[les], w[les], MARGIN)]
    vs_gmm = [j[k] is not None and g[k] is not None and j[k] > g[k] for k in names]


    base_txt = ", ".join(f"{k} {fmt(j[k])} vs {fmt(n[k])}" for k in names) + f", {les} {fmt(j[les])} vs {fmt(w[les])}"
    gmm_txt = ", ".join(f"{k} {fmt(j[k])} vs {fmt(g[k])}" for k in names)
    real = {}
    for tag in ("mni1mm", "mni2mm"):
        a, b = r.get(f"dice_{tag}_joint"), r.get(f"dice_{tag}_gmm")
        if a and b:
            real[tag] = (all(a[k] is not None and b[k] is not None and a[k] >= b[k] for k in names),
                         ", ".join(f"{k} {fmt(a[k])} vs {fmt(b[k])}" for k in names))
    les_ok = (r.get("dice_mni_lesion") or 0.0) >= LESION_DICE_GOAL
    fp = [r.get("mni_lesion_fp_ml_clean"), r.get("mni_lesion_fp_ml_clean_t1_only")]
    fp_ok = all(v is not None and v <= FP_ML_GOAL for v in fp)
    secs = r.get("volume_seconds_cpu")
    speed_ok = secs is not None and secs <= SPEED_FACTOR * SECONDS_BEFORE
    texts = {
        **{f"dice_{tag}_joint": f"real MNI152 T1 ({tag[3:]}), every tissue class ≥ the GMM's Dice with the same "
                                 f"brain mask: {'met' if ok else 'NOT met'} (joint vs GMM: {txt})"
           for tag, (ok, txt) in real.items()},
        "dice_mni_lesion": f"lesions inserted into the real T1, Dice ≥ {LESION_DICE_GOAL}: "
                           f"{'met' if les_ok else 'NOT met'} ({fmt(r.get('dice_mni_lesion'))})",
        "mni_lesion_fp_ml_clean": f"clean real T1, predicted lesion volume ≤ {FP_ML_GOAL} mL: "
                                  f"{'met' if fp_ok else 'NOT met'} (T1 + FLAIR {fmt(fp[0])} mL, "
                                  f"T1 alone {fmt(fp[1])} mL)",
        "volume_seconds_cpu": f"one 1 mm T1 + FLAIR volume ≤ {SPEED_FACTOR:g} × {SECONDS_BEFORE} s on the CPU: "
                              f"{'met' if speed_ok else 'NOT met'} ({fmt(secs)} s)",
        "dice_joint": f"each tissue ≥ dice_tissue_only − {MARGIN}, lesion ≥ dice_lesion_only − {MARGIN}: "
                      f"{'met' if all(vs_base) else 'NOT met'} (joint vs baseline: {base_txt})",
        "dice_gmm_baseline": f"joint above the GMM on every tissue class: {'met' if all(vs_gmm) else 'NOT met'} "
                             f"(joint vs GMM: {gmm_txt})",
    }
    flags = {"goal_dice_joint_met": all(vs_base), "goal_above_gmm_met": all(vs_gmm),
             "goal_mni_lesion_met": les_ok, "goal_mni_clean_fp_met": fp_ok, "goal_speed_met": speed_ok}
    flags.update({f"goal_{tag}_above_gmm_met": ok for tag, (ok, _) in real.items()})
    return texts, flags


def run(quick: bool = False, json_path: str | None = None, *, registry=None, n_subjects: int | None = None,
        shape=SHAPE, spacing=SPACING, mni_spacing: float = 1.0, timed_runs: int | None = None,
        mni_tissue_spacings=(1.0, 2.0)) -> dict:
    """The benchmark; the keyword arguments exist for tests (smaller scans, another registry)."""
    t0 = time.perf_counter()
    cfg = SIZES[bool(quick)]
    models = current_models(registry)
    ls = _label_set(models)
    n = n_subjects or cfg["subjects"]
    r: dict = {"quick": bool(quick)}
    r.update(phantom_study(models, ls, n, tuple(shape), tuple(spacing)))
    r.update(mni_study(models, ls, timed_runs or cfg["timed_runs"], mni_spacing))
    r.update(mni_tissue_study(models, ls, mni_tissue_spacings))
    texts, flags = goals(r, ls)
    r.update(flags)
    grid = f"{'x'.join(map(str, shape))} at {float(spacing[0])} mm"
    r.update({
        "models": {m: e.label for m, (_, _, e) in models.items()},
        "n_subjects": n,
        "phantom_grid": grid,
        "peak_rss_mb": peak_rss_mb(),
        "notes": [
            f"held-out phantom subjects with lesions, seeds {HELD_OUT_SEED}+i (never a training seed), "
            f"{grid}; tissue and lesion Dice against the joint "
            "reference (lesion voxels are the lesion class), mean over subjects",
            "GMM baseline on T1 inside the reference brain mask (oracle skull stripping)",
            "dice_tissue_outside_lesions: tissue Dice with the reference lesion voxels left out of scoring",
            "inter_modality_agreement: joint model from T1 vs from T1+FLAIR, predicted lesion counted as "
            "white matter in both",
            f"MNI152 2009a at {mni_spacing} mm with 8 synthetic WM lesions (diameters 3-12 mm, deep WM) and a "
            f"derived FLAIR, cropped to {r['speed_volume_shape']}, brain mask = template > 0: GM vs GM map > 0.5, "
            "WM + lesion vs WM map > 0.5, lesion Dice; the same scan times segment_scan (T1+FLAIR, "
            "resampling and refinement included) on the CPU",
            "dice_mniXmm_*: the real MNI152 T1 (no lesions) at X mm; reference = arg-max of CSF (1 - GM - WM), "
            "GM and WM maps inside the template's non-zero voxels; that mask given to every method; predicted "
            "lesion counted as white matter; *_unrefined: the joint model without native-resolution refinement",
            "mni_lesion_fp_ml_clean: lesion mL predicted by the joint model on the clean template with a FLAIR-like "
            "image derived from the tissue maps (_t1_only: from T1 alone)",
            "the real template is test data only: no model, setting or checkpoint was chosen on it",
        ],
        "seconds": time.perf_counter() - t0,
        "goals": texts,
    })
    if json_path:
        from ..core.atomic import atomic_write_json

        atomic_write_json(json_path, r)
    return r
