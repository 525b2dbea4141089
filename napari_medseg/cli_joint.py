"""``napari-medseg train joint``: the joint lesion + tissue model (Dorent et al. 2019) and
its baselines, on the brain phantom by default."""

from __future__ import annotations

import sys

from .core.errors import InputError


def add_train_options(s) -> None:
    g = s.add_argument_group("joint")
    g.add_argument("--mode", choices=["joint", "tissue_only", "lesion_only", "supervised"], default="joint",
                   help="joint (W+N), or a baseline trained by the same code")
    g.add_argument("--warmup", type=int, default=None, help="iterations before the inter-modality term")
    g.add_argument("--subjects", type=int, default=4, help="phantom controls and patients (each)")
    g.add_argument("--shape", default="64,72,64", help="phantom volume shape")
    g.add_argument("--spacing", type=float, default=2.5, help="phantom voxel size in mm")
    g.add_argument("--label-set", choices=["reduced", "full"], default="reduced")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise InputError(f"--shape takes D,H,W, not {text!r}.") from exc
    if len(shape) != 3 or min(shape) < 16:
        raise InputError(f"--shape takes three sizes of at least 16, not {text!r}.")
    return shape


def train(args, registry):
    from .core.device import select_device
    from .core.jobs import run_in_terminal
    from .methods.joint_lesion_tissue.labels import LABEL_SETS
    from .methods.joint_lesion_tissue.models import BASELINE_NAMES, phantom_training_data, train_joint_model
    from .methods.joint_lesion_tissue.training import JointConfig

    device = select_device(args.device)
    shape, spacing = _shape(args.shape), (args.spacing,) * 3
    if args.mode == "supervised":  # model M: fully labelled scans (only a phantom has them for free)
        _, _, full = phantom_training_data(0, 0, args.subjects + 1, seed=args.seed, shape=shape, spacing=spacing,
                                           label_set=args.label_set)
        controls, patients, val = [], full[:-1], full[-1:]
    else:
        controls, patients, val = phantom_training_data(args.subjects, args.subjects, 1, seed=args.seed, shape=shape,
                                                        spacing=spacing, label_set=args.label_set)
    steps = args.steps or 2000
    patch = args.patch or min(48, *shape)
    cfg = JointConfig(patch_size=(patch,) * 3, steps=steps, warmup=args.warmup if args.warmup is not None else steps // 2,
                      val_every=max(1, steps // 10), seed=args.seed, device=str(device),
                      label_set=LABEL_SETS[args.label_set], mode=args.mode, roi_size=shape)
    name = BASELINE_NAMES[args.mode]
    resume = None
    if args.resume:
        model, meta = registry.get(name).load()
        resume = (model.state_dict(), meta)
    data = f"brain phantom: {args.subjects} controls + {args.subjects} patients, {shape} at {args.spacing} mm"
    job = run_in_terminal(train_joint_model(registry, controls, patients, val, cfg, resume=resume, data=data,
                                                 spacing=spacing),
                          f"train {args.mode}")
    if job.stopped:
        print("stopped; the best model so far was saved", file=sys.stderr)
        return registry.get(name) if registry.list(name) else None
    return (job.result or {}).get("entry")
