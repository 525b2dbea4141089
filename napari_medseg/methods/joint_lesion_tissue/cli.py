"""``napari-medseg train joint``: the joint lesion + tissue model (Dorent et al. 2019) and
its baselines, on the brain phantom by default."""

from __future__ import annotations

import sys

from ...core.errors import InputError
from .options import TRAIN_DEFAULTS



def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise InputError(f"--shape takes D,H,W, not {text!r}.") from exc
    if len(shape) != 3 or min(shape) < 16:
        raise InputError(f"--shape takes three sizes of at least 16, not {text!r}.")
    return shape


def model_name(args) -> str:
    """The registry name ``train joint_lesion_tissue`` saves under (one per training mode)."""
    from .models import BASELINE_NAMES

    return BASELINE_NAMES[args.mode]


def train(args, registry):
    from ...core.device import select_device
    from ...core.jobs import run_in_terminal
    from .labels import LABEL_SETS
    from .models import BASELINE_NAMES, phantom_training_data, train_joint_model
    from .training import JointConfig

    device = select_device(args.device)
    shape, spacing = _shape(args.shape), (args.spacing,) * 3
    randomised = args.data in ("randomised", "varied", "folded", "surface")
    n = args.subjects or (48 if randomised else 4)
    if n < 1:
        raise InputError(f"--subjects must be at least 1, not {n}.")
    n_val = int(getattr(args, "val_subjects", 2))
    if n_val < 1:
        raise InputError(f"--val-subjects must be at least 1, not {n_val}.")
    share, surface_share = float(args.folded_share), float(getattr(args, "surface_share", 0.5))
    average_share = float(getattr(args, "average_share", 0.0))
    tight_share = float(getattr(args, "tight_share", 0.0))
    for flag, value in (("--average-share", average_share), ("--tight-share", tight_share)):
        if value > 0 and not randomised:
            raise InputError(f"{flag} applies to randomised data (--data randomised, varied, folded or surface).")
    for flag, value in (("--folded-share", share), ("--surface-share", surface_share),
                        ("--average-share", average_share), ("--tight-share", tight_share)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{flag} is a share of the subjects, from 0 to 1; not {value:g}.")
    if args.data == "surface":
        from ...core.phantoms.surface import cortex_distances

        cortex_distances()  # one clear error up front if the surfaces are not installed
    if randomised:
        from .synth import randomised_training_data

        controls, patients, val = randomised_training_data(n, n, n_val, seed=args.seed, shape=shape, spacing=spacing,
                                                           label_set=args.label_set,
                                                           vary_anatomy=args.data == "varied",
                                                           p_folded=share if args.data in ("folded", "surface")
                                                           else 0.0,
                                                           p_surface=surface_share if args.data == "surface" else 0.0,
                                                           p_average=average_share, p_tight=tight_share)
        if args.mode == "supervised":  # fully labelled randomised patients
            controls, patients = [], [{**p, "labels": p["labels"]} for p in patients]
    elif args.mode == "supervised":  # model M: fully labelled scans (only a phantom has them for free)
        _, _, full = phantom_training_data(0, 0, n + 1, seed=args.seed, shape=shape, spacing=spacing,
                                           label_set=args.label_set)
        controls, patients, val = [], full[:-1], full[-1:]
    else:
        controls, patients, val = phantom_training_data(n, n, 1, seed=args.seed, shape=shape,
                                                        spacing=spacing, label_set=args.label_set)
    steps = args.steps or TRAIN_DEFAULTS["steps"]
    patch = args.patch or min(TRAIN_DEFAULTS["patch"], *shape)
    cfg = JointConfig(patch_size=(patch,) * 3, steps=steps, lr=args.lr or TRAIN_DEFAULTS["lr"], warmup=args.warmup if args.warmup is not None else steps // 2,
                      val_every=max(1, steps // 10), seed=args.seed, device=str(device),
                      label_set=LABEL_SETS[args.label_set], mode=args.mode, roi_size=shape)
    name = BASELINE_NAMES[args.mode]
    resume = None
    if args.resume or getattr(args, "init", "scratch") == "current":  # fine-tune the current version
        model, meta = registry.get(name).load()
        resume = (model.state_dict(), meta)
    if randomised:
        data = (f"domain-randomised brain phantom: {n} controls + {n} patients ({n_val} validation), {shape} at "
                f"{args.spacing} mm; random per-class T1/FLAIR intensities, skull present or stripped, blur, "
                "slice thickness, bias field, gamma, Rician noise"
                + ("; random anatomy proportions (extra-cerebral CSF, sulcal width and depth, cortex, ventricles)"
                   if args.data == "varied" else "")
                + (f"; {surface_share:.0%} of the subjects with the cerebrum of a real brain (fsaverage5's white "
                   "and pial surfaces, randomly warped and mirrored)" if args.data == "surface" else "")
                + (f"; {share:.0%} of the {'other ' if args.data == 'surface' else ''}subjects with a gyrified "
                   "cortex of real thickness" if args.data in ("folded", "surface") else "")
                + (f"; {average_share:.0%} of all subjects drawn as population-average templates (class maps "
                   "smoothed by 0.5-2.5 mm, images their probability-weighted intensities, labels their arg-max)"
                   if average_share > 0 else "")
                + (f"; {tight_share:.0%} of the skull-stripped subjects with the mask cut closer to the brain "
                   "(extra-cerebral CSF within 0-4 mm of its edge removed)" if tight_share > 0 else ""))
    else:
        data = f"brain phantom: {n} controls + {n} patients, {shape} at {args.spacing} mm"
    job = run_in_terminal(train_joint_model(registry, controls, patients, val, cfg, resume=resume, data=data,
                                                 spacing=spacing),
                          f"train {args.mode}")
    if job.stopped:
        print("stopped; the best model so far was saved", file=sys.stderr)
        return registry.get(name) if registry.list(name) else None
    return (job.result or {}).get("entry")


def predict(args) -> int:
    from pathlib import Path

    if args.t1 is None:
        raise InputError("predict joint needs --t1 (a T1 file or a folder of them).")
    args.model = args.model or "joint_lesion_tissue"

    from ...core.device import select_device
    from ...core.jobs import run_in_terminal
    from ...core.registry import Registry
    from .batch import plan, predict_subjects
    from .models import label_set_of

    name, _, version = args.model.partition(":")
    if version and not version.isdigit():
        raise InputError(f"--model takes NAME or NAME:VERSION, not {args.model!r}.")
    if not args.min_lesion_ml >= 0:
        raise InputError(f"--min-lesion-ml must be 0 or more, not {args.min_lesion_ml}.")
    rows = plan(args.t1, args.flair, args.mask, args.out)
    entry = Registry().get(name, int(version) if version else None)
    device = select_device(args.device)
    model, meta = entry.load(device)
    if "label_set" not in meta or "modalities" not in meta:
        raise InputError(f"{entry.label} is not a joint lesion + tissue model.")
    scheduler = getattr(args, "scheduler", None)
    client = None
    if scheduler:
        from ...core.batch import open_cluster

        client = open_cluster(scheduler)
    try:
        job = run_in_terminal(predict_subjects(rows, model, meta, label_set_of(meta), device, refine=not args.no_refine,
                                               min_lesion_ml=args.min_lesion_ml, out_csv=Path(args.out) / "volumes.csv",
                                               client=client, entry=entry),
                              f"predict {entry.label}")
    finally:
        if client is not None:
            from ...core.batch import close_cluster

            close_cluster(client, scheduler)
    table = job.result or []
    failed = [r for r in table if r.get("error")]
    print(f"{len(table) - len(failed)} of {len(rows)} subjects segmented; table: {Path(args.out) / 'volumes.csv'}")
    for r in failed:
        print(f"  {r['subject']}: {r['error']}", file=sys.stderr)
    return 1 if failed or job.stopped else 0
