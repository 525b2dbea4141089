"""Command line for box-supervised training (Gupta et al. 2019).

``napari-medseg train box_iterative`` runs the project's recipe on synthetic kidney
slides (dispatched from ``cli._train``), or, with ``--image`` and ``--boxes``, trains on
the user's own images and box files. Segmenting a slide file with the result is
``napari-medseg segment SLIDE --model glomeruli --out labels.zarr``.
"""

from __future__ import annotations

import sys


def model_name(args) -> str:
    """The registry name ``train box_iterative`` saves under."""
    from .model import MODEL_NAME

    return MODEL_NAME


def train(args, registry):
    """The recipe: Stage 1 then Stage 2 on synthetic slides; returns the best round's entry."""
    from ...core.device import select_device
    from ...core.jobs import run_in_terminal
    from .model import MODEL_NAME
    from .options import DEFAULTS
    from .recipe import Recipe, run_recipe
    from .stages import StageConfig

    device = select_device(args.device)
    config = StageConfig(steps=args.steps or DEFAULTS["steps"], patch=args.patch, batch_size=args.batch_size,
                         seed=args.seed, adversarial=args.adversarial, head=getattr(args, "head", "binary"),
                         stage2_replay=getattr(args, "stage2", "replay") == "replay",
                         box_prior=getattr(args, "box_prior", "box"), device=str(device))
    resume = None
    if getattr(args, "resume", False):
        from .resume import resume_point

        resume = resume_point(registry, MODEL_NAME)
        start = "a new model" if resume["version"] is None else f"v{resume['version']}"
        print(f"resuming: Stage 1 goes on from {start}; its killed round (saved at step {resume['step']}) continues "
              "there if the images, boxes and settings are the ones it had" if resume["killed"] else
              f"no killed round: fine-tuning the current version (v{resume['version']})", file=sys.stderr)
    if args.image or args.boxes:
        job = run_in_terminal(user_data_job(registry, args, config, resume), "train box_iterative")
    else:
        recipe = Recipe(size=args.size, rounds1=args.rounds1, rounds2=args.rounds2, config=config)
        job = run_in_terminal(run_recipe(registry, recipe, resume=resume), "train box_iterative")
    session = job.result
    from ...core import distributed

    if session is not None and distributed.is_main():
        for r in session.history:
            f1 = r.metrics.get("object_f1", float("nan"))
            print(f"stage {r.stage} round {r.round}: v{r.version} validation object F1 {f1:.3f}")
    if job.stopped:
        print("stopped; every finished round was saved", file=sys.stderr)
    return registry.get(MODEL_NAME)


_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zarr", ".svs", ".ndpi")


def _level0(path: str):
    from ...core.io import read_image

    levels, _ = read_image(path)
    return levels[0]


def user_data_job(registry, args, config, resume: dict | None = None):
    """Generator: Stage 1 on the user's images and box files, Stage 2 on --unlabelled;
    the best round by validation object F1 (when a validation image is given) is current."""
    from pathlib import Path

    import numpy as np

    from ...core.errors import InputError
    from .boxfiles import read_boxes
    from ...core import distributed
    from .recipe import best_version
    from .resume import continue_session
    from .stages import IterativeTraining

    if len(args.image) != len(args.boxes):
        raise InputError(f"{len(args.image)} --image but {len(args.boxes)} --boxes; give one box file per image.")
    if args.rounds1 < 1 or args.rounds2 < 0:
        raise InputError("--rounds1 must be at least 1 and --rounds2 at least 0.")
    session = IterativeTraining(registry, config)
    session.polarity = args.polarity
    images = [_level0(p) for p in args.image]
    boxsets = [read_boxes(b, tuple(im.shape[:2]), clip=args.clip_boxes) for im, b in zip(images, args.boxes)]
    for path, b in zip(args.image, boxsets):
        print(f"{Path(path).name}: {b.describe()}", file=sys.stderr)
    session.set_stage1(images, [b.boxes for b in boxsets], [Path(p).name for p in args.image])
    if bool(args.val_image) != bool(args.val_labels):
        raise InputError("Give --val-image and --val-labels together.")
    if args.val_image:
        session.set_validation([_level0(args.val_image)], [np.asarray(_level0(args.val_labels))])
    for note in session.notes:
        print(note, file=sys.stderr)
    done = continue_session(session, resume) if resume is not None else 0
    yield from session.stage1(max(0, args.rounds1 - done))
    if args.unlabelled and args.rounds2 > 0:
        folder = Path(args.unlabelled)
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise InputError(f"--unlabelled {folder} is not a folder of images ({', '.join(_IMAGE_SUFFIXES)}).")
        session.set_stage2([_level0(str(f)) for f in files], [f.name for f in files])
        yield from session.stage2(args.rounds2)
    best = best_version(session)
    if best is not None and distributed.is_main():  # under torchrun, rank 0 writes the registry
        registry.restore(session.name, best)
    return session
