"""Command-line options declared once, as dataclass fields.

A method declares what its ``train`` or ``predict`` command takes as a dataclass whose
fields carry their default and help text (:func:`option`); the CLI builds each
subcommand's arguments from those fields (:func:`add_options`), so a default lives in one
place and a method's options are listed under its own command (``napari-medseg train
tracking --help``), not mixed with every other method's.

Field ``a_name`` becomes ``--a-name``: a bool defaulting to False is a switch, a list
default collects repeats (``--image A --image B``), ``choices`` limits the value, and
``positional=True`` makes it a positional argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

_SCALARS = {"int": int, "float": float, "str": str}


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def option(default: Any = None, help: str = "", *, choices=None, metavar=None, positional: bool = False,
           required: bool = False, nargs=None, type=None):
    """A dataclass field that is also a command-line option."""
    meta = {"help": help, "choices": choices, "metavar": metavar, "positional": positional, "required": required,
            "nargs": nargs, "type": type}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _value_type(f: dataclasses.Field, hints: dict) -> type | None:
    if f.metadata.get("type") is not None:
        return f.metadata["type"]
    hint = hints.get(f.name)
    for arg in (typing.get_args(hint) or (hint,)):
        if arg in (int, float, str):
            return arg
        name = getattr(arg, "__name__", str(arg))
        if name in _SCALARS:
            return _SCALARS[name]
    return None


def add_options(parser, cls, group: str | None = None) -> None:
    """Add every field of the dataclass ``cls`` to ``parser`` (in an argument group ``group``)."""
    target = parser.add_argument_group(group) if group else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        text = meta.get("help") or ""
        if default not in (None, False, []) and "default" not in text:
            text = f"{text} (default: {default})".strip()
        kwargs: dict[str, Any] = {"help": text or None}
        if meta.get("positional"):
            names = [f.name]
            if not meta.get("required"):
                kwargs.update(nargs="?", default=default)
        else:
            names = ["--" + f.name.replace("_", "-")]
            kwargs["dest"] = f.name
            if meta.get("required"):
                kwargs["required"] = True
            else:
                kwargs["default"] = default
        if isinstance(default, bool) and default is False and not meta.get("positional"):
            kwargs["action"] = "store_true"
        elif isinstance(default, list):
            if meta.get("nargs") is not None:  # --image A B
                kwargs["nargs"] = meta["nargs"]
            else:  # --image A --image B
                kwargs["action"] = "append"
            kwargs["type"] = _value_type(f, hints) or str
        else:
            kind = _value_type(f, hints)
            if kind is not None and kind is not str:
                kwargs["type"] = kind
            for key in ("choices", "nargs"):
                if meta.get(key) is not None:
                    kwargs[key] = meta[key]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        target.add_argument(*names, **kwargs)


def defaults(cls) -> dict:
    """``{field: default}`` of an options dataclass (what a widget shows before the user changes it)."""
    return {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            for f in dataclasses.fields(cls)}


@dataclasses.dataclass
class TrainRun:
    """Options every ``napari-medseg train SLUG`` takes."""

    steps: int | None = option(None, "training steps (default: the method's; see its docs page)")
    seed: int = option(0, "random seed")
    device: str | None = option(None, "auto, cpu, cuda, cuda:1, mps")
    resume: bool = option(False, "continue an interrupted (killed) run; without one, fine-tune the current version")
    ship: bool = option(False, "write into the repository's models/ with a model card")
    make_current: bool = option(False, "make the new version current even if it validates worse than the current one")


@dataclasses.dataclass
class SegmentOptions:
    """``napari-medseg segment``: tiled segmentation of an image file with a registered model."""

    image: str = option(None, "the image file (TIFF, OME-Zarr, NIfTI...), or a folder of them", positional=True,
                        required=True)
    model: str = option("tissue", "NAME or NAME:VERSION")
    out: str = option(None, "output .zarr (a new path; see --overwrite); for a folder of images, a folder that gets "
                            "one NAME_labels.zarr per image", required=True)
    overwrite: bool = option(False, "replace an existing --out (only once the new result is complete; never the "
                                    "input)")
    level: int = option(0, "pyramid level to segment")
    tile: int = option(1024, "tile side in pixels", type=positive_int)
    batch_size: int = option(1, "tiles per batch", type=positive_int)
    output: str = option("labels", "labels, or per-class probabilities", choices=["labels", "probabilities"])
    device: str | None = option(None, "auto, cpu, cuda, cuda:1, mps")
    scheduler: str | None = option(None, "dask.distributed scheduler address (one image: its tiles are spread over "
                                         "the workers; a folder: one image per task, and local:N starts N workers "
                                         "here)")
    polarity: str = option("auto", "RGB models on grey images: auto inverts a dark background (fluorescence)",
                           choices=["auto", "keep", "invert"])
