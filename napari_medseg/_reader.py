"""npe2 reader: NIfTI, (OME-/Big)TIFF and OME-Zarr, lazily, pyramids as multiscale layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.io import napari_placement, read_image
from .core.io.claims import claims, is_label_image


def napari_get_reader(path):
    """Return a reader for files we own, ``None`` for anything else (napari's readers take it);
    see :mod:`napari_medseg.core.io.claims`."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if str(path).lower().endswith(".swc"):
        return read_swc_layers
    return read_layers if claims(path) else None


def read_swc_layers(path):
    """An SWC reconstruction as a Shapes layer of paths, one per unbranched trace, in the
    file's own coordinates (physical units if the file has them: it lands on an image whose
    scale is in the same unit). The tree (parents, types, radii, z) is in the metadata."""
    from .methods.tracking.swc import SWC_TYPES, read_swc

    if isinstance(path, (list, tuple)):
        path = path[0]
    forest = read_swc(path)
    meta = {"swc": {"path": str(path), "unit": forest.unit, "scale": forest.scale, "parents": forest.parents,
                    "types": [SWC_TYPES.get(t, f"custom {t}") for t in forest.types],
                    "radii": [r.tolist() for r in forest.radii], "z": [z.tolist() for z in forest.z]}}
    data = [t if len(t) > 1 else np.vstack([t, t]) for t in forest.traces]  # a one-node trace: a dot
    kwargs = {"name": Path(str(path)).stem, "shape_type": "path", "edge_color": "yellow", "edge_width": 1.5,
              "metadata": meta}
    if forest.unit not in (None, "pixel", "unspecified"):
        kwargs["units"] = (forest.unit, forest.unit)
    return [(data, kwargs, "shapes")]


def _label_table(meta: dict) -> dict:
    """The file's class names (as ``index``/``class`` features) and colours (a colormap)."""
    out: dict = {}
    names, colors = meta.get("label_names"), meta.get("label_colors")
    if names:
        index = [0, *sorted(names)]
        out["features"] = {"index": index, "class": ["background", *(names[i] for i in index[1:])]}
    if colors:
        out["colormap"] = {None: "transparent", 0: "transparent", **{int(k): list(v) for k, v in colors.items()}}
    return out


def read_layers(path):
    if isinstance(path, (list, tuple)):
        path = path[0]
    levels, meta = read_image(path)
    name = Path(str(path).rstrip("/")).name.split(".")[0]
    kwargs = {"name": name, "metadata": {"medseg_io": meta}, **napari_placement(meta)}
    data = levels if len(levels) > 1 else levels[0]
    if len(levels) > 1:
        kwargs["multiscale"] = True
    if np.issubdtype(levels[0].dtype, np.integer) and not meta.get("rgb") and is_label_image(path):
        kwargs.pop("rgb", None)
        kwargs.pop("channel_axis", None)
        kwargs.update(_label_table(meta))
        return [(data, kwargs, "labels")]
    return [(data, kwargs, "image"), *_image_label_layers(path)]


def _image_label_layers(path) -> list:
    """The label images kept in an OME-Zarr image's ``labels`` group, as Labels layers."""
    from .core.io import is_zarr, read_image_labels

    if not is_zarr(path):
        return []
    out = []
    for name, levels, meta in read_image_labels(path):
        kwargs = {"name": name, "metadata": {"medseg_io": meta}, **napari_placement(meta), **_label_table(meta)}
        if len(levels) > 1:
            kwargs["multiscale"] = True
        out.append((levels if len(levels) > 1 else levels[0], kwargs, "labels"))
    return out
