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
    from ..methods.joint_lesion_tissue.phantom import brain_phantom

    tissues, lesion = ls.tissues, (ls.lesion,)
    rows: dict[str, list] = {k: [] for k in ("joint", "t1_only", "tissue_only", "lesion_only", "gmm", "agree",
                                             "joint_out", "tissue_only_out", "gmm_out")}

    def seg(mode, vols, ph):
        model, meta, _ = models[mode]
        return segment_scan(model, meta, ls, vols, ph.affine).labels

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
    s = int(a.sum()) + int(b.sum())
    return 2.0 * float(np.logical_and(a, b).sum()) / s if s else None


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


def mni_study(models, ls, timed_runs: int, spacing: float = 1.0, seed: int = 0) -> dict:
    """Section 3: MNI152 GM/WM Dice and inference throughput of the joint model."""
    from ..methods.joint_lesion_tissue.inference import segment_scan
    from ..methods.joint_lesion_tissue.labels import REDUCED
    from ..methods.joint_lesion_tissue.mni import mni_reference_labels, mni_with_lesions

    p = mni_with_lesions(seed=seed, n_lesions=8, spacing=spacing)
    sl = _crop(p.t1.shape, p.t1)
    affine = p.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.array([s.start for s in sl], float) + affine[:3, 3]
    vols = {"T1": p.t1[sl], "FLAIR": p.flair[sl]}
    model, meta, _ = models["joint"]
    times, labels = [], None
    for _ in range(max(1, timed_runs)):
        t0 = time.perf_counter()
        labels = segment_scan(model, meta, ls, vols, affine).labels
        times.append(time.perf_counter() - t0)
    ref = mni_reference_labels(p.gm[sl], p.wm[sl], 0.5)
    gm_ids = [ls.names.index(n) for n in GM_NAMES if n in ls.names]
    wm_ids = [ls.names.index(n) for n in WM_NAMES if n in ls.names]
    gm_ref, wm_ref = ref == REDUCED.names.index("grey matter"), ref == REDUCED.names.index("white matter")
    return {
        "dice_mni_gm": _binary_dice(np.isin(labels, gm_ids), gm_ref),
        "dice_mni_wm": _binary_dice(np.isin(labels, wm_ids), wm_ref),
        "dice_mni_lesion": _binary_dice(labels == ls.lesion, p.lesion[sl] > 0),
        "volumes_per_s": len(times) / sum(times),
        "seconds_per_volume": float(np.mean(times)),
        "speed_volume_shape": "x".join(str(s.stop - s.start) for s in sl),
        "speed_volume_spacing_mm": float(spacing),
        "speed_timed_runs": len(times),
    }


def goals(r: dict, ls) -> tuple[dict, dict]:
    """(goal texts with the numbers and met / not met, boolean flags)."""
    names = [ls.names[c] for c in ls.tissues]
    j, n, w, g = r["dice_joint"], r["dice_tissue_only"], r["dice_lesion_only"], r["dice_gmm_baseline"]

    def ge(a, b, margin=0.0):
        return a is not None and b is not None and a >= b - margin

    les = ls.names[ls.lesion]
    vs_base = [ge(j[k], n[k], MARGIN) for k in names] + [ge(j[les], w[les], MARGIN)]
    vs_gmm = [j[k] is not None and g[k] is not None and j[k] > g[k] for k in names]

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    base_txt = ", ".join(f"{k} {fmt(j[k])} vs {fmt(n[k])}" for k in names) + f", {les} {fmt(j[les])} vs {fmt(w[les])}"
    gmm_txt = ", ".join(f"{k} {fmt(j[k])} vs {fmt(g[k])}" for k in names)
    texts = {
        "dice_joint": f"each tissue ≥ dice_tissue_only − {MARGIN}, lesion ≥ dice_lesion_only − {MARGIN}: "
                      f"{'met' if all(vs_base) else 'NOT met'} (joint vs baseline: {base_txt})",
        "dice_gmm_baseline": f"joint above the GMM on every tissue class: {'met' if all(vs_gmm) else 'NOT met'} "
                             f"(joint vs GMM: {gmm_txt})",
    }
    return texts, {"goal_dice_joint_met": all(vs_base), "goal_above_gmm_met": all(vs_gmm)}


def run(quick: bool = False, json_path: str | None = None, *, registry=None, n_subjects: int | None = None,
        shape=SHAPE, spacing=SPACING, mni_spacing: float = 1.0, timed_runs: int | None = None) -> dict:
    """The benchmark; the keyword arguments exist for tests (smaller scans, another registry)."""
    t0 = time.perf_counter()
    cfg = SIZES[bool(quick)]
    models = current_models(registry)
    ls = _label_set(models)
    n = n_subjects or cfg["subjects"]
    r: dict = {"quick": bool(quick)}
    r.update(phantom_study(models, ls, n, tuple(shape), tuple(spacing)))
    r.update(mni_study(models, ls, timed_runs or cfg["timed_runs"], mni_spacing))
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
            f"MNI152 2009a at {mni_spacing} mm with 8 synthetic WM lesions and a derived FLAIR, cropped to "
            f"{r['speed_volume_shape']}: GM vs GM map > 0.5, WM + lesion vs WM map > 0.5; the same scan "
            "times segment_scan (T1+FLAIR, resampling included) on the CPU",
        ],
        "seconds": time.perf_counter() - t0,
        "goals": texts,
    })
    if json_path:
        from ..core.atomic import atomic_write_json

        atomic_write_json(json_path, r)
    return r
