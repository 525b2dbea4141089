"""``napari-medseg train despeckle|cyclegan``: the staining models (Combalia et al. 2019)."""

from __future__ import annotations

import sys
from pathlib import Path

from .core.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs")


def add_train_options(s) -> None:
    g = s.add_argument_group("despeckle / cyclegan")
    g.add_argument("--images", default=None,
                   help="folder or file of RGB H&E images to train on (default: the bundled training split)")
    g.add_argument("--val-images", default=None, help="folder or file of validation H&E images")
    g.add_argument("--std", default=None,
                   help="despeckle: speckle std, one value (the paper: 0.2) or LOW,HIGH (default 0.1,0.5)")
    g.add_argument("--steps-large", type=int, default=None,
                   help="cyclegan: steps of the 512-px stage with learning-rate decay (the 256-px stage takes --steps)")


def read_images(spec: str) -> list:
    """Every RGB image in a folder (sorted), or one file."""
    from .methods.staining.hne import read_rgb

    path = Path(spec)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files or not all(p.is_file() for p in files):
        raise InputError(f"No images found at {spec} (looked for {', '.join(IMAGE_SUFFIXES)}).")
    return [read_rgb(p) for p in files]


def _std(text):
    from .methods.staining.models import BLIND_STD

    if text is None:
        return BLIND_STD
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise InputError(f"--std takes a number or LOW,HIGH, not {text!r}.") from exc
    if len(values) not in (1, 2):
        raise InputError(f"--std takes a number or LOW,HIGH, not {text!r}.")
    return values[0] if len(values) == 1 else tuple(values)


def _data(args):
    from .methods.staining import hne

    if args.images:
        train = read_images(args.images)
        val = read_images(args.val_images) if args.val_images else train
        return train, val, f"user images from {args.images}"
    s = hne.split()
    return s.train, s.val, "bundled H&E: " + s.sources[0] + f", rows < {hne.CMU_VAL_ROWS} train, the rest val"


def train(args, registry):
    """Train the despeckler or the CycleGAN; returns the new registry entry."""
    from .core.device import select_device
    from .core.jobs import run_in_terminal

    device = select_device(args.device)
    train_rgb, val_rgb, data = _data(args)
    resume = None
    if args.method == "despeckle":
        from .methods.staining.models import train_despeckle_model
        from .methods.staining.training import MODEL_NAME

        if args.resume:
            model, meta = registry.get(MODEL_NAME).load()
            resume = (model.state_dict(), meta)
        gen = train_despeckle_model(registry, train_rgb, val_rgb, steps=args.steps or 2000,
                                    batch_size=args.batch_size or 8, crop=args.patch or 256, std=_std(args.std),
                                    seed=args.seed, device=device, resume=resume, data=data)
    else:
        from .methods.staining.models import train_cyclegan_model

        gen = train_cyclegan_model(registry, train_rgb, val_rgb, steps_small=args.steps or 2000,
                                   steps_large=args.steps_large if args.steps_large is not None else 1000,
                                   batch_size=args.batch_size or 1, seed=args.seed, device=device,
                                   resume=args.resume, data=data)
    job = run_in_terminal(gen, f"train {args.method}")
    if job.stopped:  # the job saved its best state as it closed
        from .methods.staining.card import MODEL_NAMES

        print("stopped; the best model so far was saved", file=sys.stderr)
        return registry.get(MODEL_NAMES[args.method]) if registry.list(MODEL_NAMES[args.method]) else None
    return (job.result or {}).get("entry")
