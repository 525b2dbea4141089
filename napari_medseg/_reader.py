"""npe2 reader: NIfTI, (OME-/Big)TIFF and OME-Zarr, lazily, pyramids as multiscale layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.io import SUFFIXES, napari_placement, read_image

LABEL_HINTS = ("label", "seg", "mask", "annot")


def napari_get_reader(path):
    """Return a reader for files we own, ``None`` early for anything else."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).lower().rstrip("/").endswith(SUFFIXES):
        return None
    return read_layers


def read_layers(path):
    if isinstance(path, (list, tuple)):
        path = path[0]
    levels, meta = read_image(path)
    name = Path(str(path).rstrip("/")).name.split(".")[0]
    kwargs = {"name": name, "metadata": {"medseg_io": meta}, **napari_placement(meta)}
    data = levels if len(levels) > 1 else levels[0]
    if len(levels) > 1:
        kwargs["multiscale"] = True
    is_labels = np.issubdtype(levels[0].dtype, np.integer) and not meta.get("rgb") and any(
        h in name.lower() for h in LABEL_HINTS
    )
    if is_labels:
        kwargs.pop("rgb", None)
        kwargs.pop("channel_axis", None)
        return [(data, kwargs, "labels")]
    return [(data, kwargs, "image")]
