"""Label images inside an OME-Zarr image's ``labels`` group (OME-NGFF 0.4).

OME-NGFF keeps the segmentations of an image with the image: ``image.zarr/labels/NAME``
is a multiscales group with ``image-label`` metadata (colours, class names, a link back to
the image), and ``image.zarr/labels`` lists the names. napari-ome-zarr, ome-zarr-py and
Fiji's readers open them with the image. Here the arrays are written by
:func:`~.omezarr.write_ome_zarr` (streamed, atomic) and ome-zarr-py registers them
(:func:`ome_zarr.writer.write_label_metadata`). The image itself is never rewritten, and
an existing label image is never replaced: a taken name gets a numbered one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..paths import safe_name
from .claims import _ome
from .omezarr import _multiscales, group_attrs, write_ome_zarr
from .validate import as_labels


def is_ome_image(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OME-Zarr image group (multiscales, not itself a label image)."""
    path = Path(path)
    attrs = group_attrs(path) if path.is_dir() else None
    return bool(attrs) and bool(_multiscales(attrs)) and "image-label" not in _ome(attrs)


def label_names(image: str | os.PathLike) -> list[str]:
    """The label images listed in ``image``'s ``labels`` group that exist on disk."""
    attrs = group_attrs(Path(image) / "labels") or {}
    names = _ome(attrs).get("labels") or []
    return [str(n) for n in names if isinstance(n, str) and (Path(image) / "labels" / n).is_dir()]


def _free_name(labels_dir: Path, name: str) -> str:
    if not (labels_dir / name).exists():
        return name
    i = 2
    while (labels_dir / f"{name}-{i}").exists():
        i += 1
    return f"{name}-{i}"


def write_image_labels(
    image: str | os.PathLike,
    labels: Any,
    name: str = "labels",
    label_names: dict | None = None,
    label_colors: dict | None = None,
) -> Path:
    """Add ``labels`` (the image's shape without its channel axis) as ``image/labels/NAME``.

    The labels take the image's axes (a channel axis of size 1 where the image has one, as
    OME-NGFF asks), its level-0 scale and units, and as many pyramid levels as the image
    (every second pixel, so no new label values). Returns the label group's path.
    """
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_label_metadata

    image = Path(image)
    attrs = group_attrs(image) or {}
    ms = _multiscales(attrs)
    if not ms or "image-label" in _ome(attrs):
        raise InputError(f"{image} is not an OME-Zarr image; labels go into an image's 'labels' group.")
    if (image / "zarr.json").is_file():
        raise InputError(f"{image} is an OME-Zarr 0.5 (zarr 3) image; adding labels into it is not supported "
                         f"here. Save the labels to a new .ome.zarr path instead.")
    first = ms[0]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in first.get("axes") or []]
    units = [a.get("unit") if isinstance(a, dict) else None for a in first.get("axes") or []]
    level0 = zarr.open_array(str(image / first["datasets"][0]["path"]), mode="r")
    if not axes:
        axes = list("tczyx"[-level0.ndim:])
    scale = [1.0] * len(axes)
    for tr in first["datasets"][0].get("coordinateTransformations", []):
        if tr.get("type") == "scale":
            scale = [float(v) for v in tr["scale"]]
    want = tuple(n for ax, n in zip(axes, level0.shape) if ax != "c")
    data = as_labels(labels, str(image))
    if tuple(data.shape) != want:
        raise InputError(f"The labels' shape {tuple(data.shape)} is not the shape of {image.name} without its "
                         f"channels {want}; labels must cover the image pixel for pixel.")
    if "c" in axes:
        data = data[tuple(None if ax == "c" else slice(None) for ax in axes)]
    labels_dir = image / "labels"
    name = _free_name(labels_dir, safe_name(name, "labels"))
    group = zarr.open_group(str(labels_dir), mode="a", zarr_format=2)
    out = write_ome_zarr(
        labels_dir / name, data, axes="".join(axes), scale=scale, levels=len(first["datasets"]),
        downsample="stride", labels=True, units=units, label_names=label_names, label_colors=label_colors,
    )
    written = dict(zarr.open_group(str(out), mode="r").attrs["image-label"])
    written.pop("version", None)
    write_label_metadata(group, name, fmt=FormatV04(), source={"image": "../../"}, **written)
    return out


def read_image_labels(image: str | os.PathLike) -> list[tuple[str, list, dict]]:
    """``(name, levels, meta)`` for each label image in ``image``'s ``labels`` group, the
    channel axis (size 1) dropped so that each lands on the image's planes."""
    from .omezarr import read_ome_zarr

    out = []
    for name in label_names(image):
        levels, meta = read_ome_zarr(Path(image) / "labels" / name)
        axes = meta.get("axes")
        if axes and "c" in axes and levels[0].shape[axes.index("c")] == 1:
            i = axes.index("c")
            levels = [lv[tuple(0 if k == i else slice(None) for k in range(lv.ndim))] for lv in levels]
            meta["axes"] = axes[:i] + axes[i + 1:]
            for key in ("scale", "translate", "units"):
                if meta.get(key) is not None:
                    meta[key] = [v for k, v in enumerate(meta[key]) if k != i]
        if not np.issubdtype(levels[0].dtype, np.integer):
            continue
        out.append((name, levels, meta))
    return out
