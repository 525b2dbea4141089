"""What the command lines of the 2-D slice methods share (adversarial segmentation, modality
transfer, site normalization): ``predict SLUG IMAGES --out DIR`` over files of slices, and
running a training generator in the terminal.

Prediction takes one image file or a folder of them (NIfTI or TIFF stacks of 2-D slices:
along the last axis in NIfTI, the first in TIFF, unless ``--slice-axis`` says otherwise) and
writes one labels file per input into ``--out`` (same grid, affine kept), never over an
existing file. Each method gives its default model and a segmenter factory
(``"module:function"``, ``factory(entry, device)`` -> ``segment((N, H, W) floats) -> labels``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from .errors import InputError

SUFFIXES = (".nii.gz", ".nii", ".tif", ".tiff")


def variant(args, slug: str, choices: tuple) -> str:
    """``--variant``, or the method's first (its paper's own) variant."""
    v = args.variant or choices[0]
    if v not in choices:
        raise InputError(f"--variant {v!r} is not one of {', '.join(choices)} for {slug}.")
    return v


def phantom_count(args, slug: str, default: int, least: int) -> int:
    n = default if args.phantoms is None else int(args.phantoms)
    if n < least:
        raise InputError(f"--phantoms must be at least {least} for {slug}, got {n}.")
    return n


def run_training(registry, gen, slug: str, model_name: str, what: str, steps: int, device: str):
    """Run a training generator in the terminal; the saved registry entry (after a stop: the
    best weights so far, or None when nothing was saved)."""
    from .jobs import run_in_terminal

    print(f"training {model_name} on {what}, {steps} steps on {device}", file=sys.stderr)
    job = run_in_terminal(gen, f"train {slug}")
    entry = (job.result or {}).get("entry") if job.result else None
    if entry is None and job.stopped:
        names = registry.list(model_name)
        entry = names[-1] if names else None
        print("stopped; the best weights so far were saved" if entry else "stopped before anything was saved",
              file=sys.stderr)
    return entry


def _inputs(path: str) -> list[Path]:
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES)
                       and "_labels." not in f.name.lower())
        if not files:
            raise InputError(f"{p} holds no NIfTI or TIFF images.")
        return files
    if not p.is_file():
        raise InputError(f"{p} is neither an image file nor a folder of them.")
    return [p]


def _stem(p: Path) -> str:
    low = p.name.lower()
    return p.name[: -len(next(s for s in SUFFIXES if low.endswith(s)))]


def predict(args, default_model: str, segmenter: str) -> int:
    """``napari-medseg predict SLUG IMAGES --out DIR``: one ``<stem>_labels<suffix>`` per input;
    a failed image is reported and the others go on. ``--scheduler`` runs one image per
    task on a dask.distributed cluster."""
    from .batch import print_failures, run_in_terminal_on
    from .device import select_device
    from .registry import Registry

    slug = args.method
    if args.images is None:
        raise InputError(f"predict {slug} needs an image file or a folder of them.")
    files = _inputs(args.images)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / f"{_stem(f)}_labels{'.nii.gz' if f.name.lower().endswith(('.nii', '.nii.gz')) else '.tif'}"
               for f in files]
    taken = [t.name for t in targets if t.exists()]
    if taken:
        raise InputError(f"{out} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}; outputs are "
                         "never replaced: pick a new --out folder.")
    name, _, version = (args.model or default_model).partition(":")
    if version and not version.isdigit():
        raise InputError(f"--model takes NAME or NAME:VERSION, not {args.model!r}.")
    entry = Registry().get(name, int(version) if version else None)  # here: a wrong name fails before any task
    scheduler = getattr(args, "scheduler", None)
    device = "cpu" if scheduler else str(select_device(args.device))
    tasks = [(f.name, (segmenter, str(f), str(t), entry.name, entry.version, args.slice_axis, device))
             for f, t in zip(files, targets)]
    _rows, failed, stopped = run_in_terminal_on(predict_file, tasks, scheduler, f"predict {slug} with {entry.label}")
    print(f"wrote {sum(1 for t in targets if t.exists())} labels file(s) into {out} with {entry.label}")
    print_failures(failed)
    return 1 if failed or stopped else 0


_SEGMENTERS: dict = {}


def predict_file(segmenter: str, src: str, target: str, name: str, version: int, slice_axis: str | None,
                 device: str = "cpu") -> str:
    """Segment one image file into ``target`` (never replaced): the task ``predict SLUG``
    runs here or on a dask worker (which loads the model once and keeps it)."""
    import numpy as np

    from .io import read_image, write_labels
    from .registry import Registry

    f, t = Path(src), Path(target)
    key = (segmenter, name, version, device)
    if key not in _SEGMENTERS:
        module, _, func = segmenter.partition(":")
        _SEGMENTERS[key] = getattr(importlib.import_module(module), func)(Registry().get(name, version), device)
    levels, meta = read_image(f)
    stack = np.asarray(levels[0], np.float32)
    if stack.ndim not in (2, 3) or meta.get("rgb") or meta.get("channel_axis") is not None:
        raise InputError(f"{f.name}: expected one grey 2-D image or a stack of slices, got shape {stack.shape}.")
    if not np.isfinite(stack).all():
        raise InputError(f"{f.name} has NaN or infinite values.")
    nifti = f.name.lower().endswith((".nii", ".nii.gz"))
    last = stack.ndim == 3 and (slice_axis or ("last" if nifti else "first")) == "last"
    # contiguous slices: the same image gives the same labels from a TIFF or a NIfTI file
    # (torch's CPU kernels may sum in another order on a strided view)
    slices = np.ascontiguousarray(np.moveaxis(stack, -1, 0) if last else stack)
    labels = _SEGMENTERS[key](slices).reshape(slices.shape).astype(np.uint8)
    write_labels(t, np.moveaxis(labels, 0, -1) if last else labels, {**meta, "source_path": str(f)})
    return t.name
