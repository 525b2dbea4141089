"""OME-Zarr (OME-NGFF 0.4 multiscales, zarr format 2) writing and reading.

Written with ``zarr_format=2`` and "/" chunk keys so that other tools (napari-ome-zarr,
Fiji, ome-zarr-py) read it. Levels halve Y and X (see :mod:`.pyramid` for how).
Reading also accepts NGFF 0.5 (zarr 3, attributes under "ome") and plain zarr arrays.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .guard import check_chunk_size, check_declared_size, checked_dask, one_line
from .pyramid import downsample2, uses_mean
from .validate import check_array

_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def is_zarr(path: str | os.PathLike) -> bool:
    return str(path).rstrip("/\\").lower().endswith(".zarr")


def _default_chunks(shape: tuple, axes: str) -> tuple:
    side = 256 if "z" in axes else 1024
    out = []
    for ax, n in zip(axes, shape):
        if ax in "yx":
            out.append(min(int(n), side))
        elif ax == "z":
            out.append(min(int(n), 64))
        else:
            out.append(1)
    return tuple(out)


def group_attrs(path: str | os.PathLike) -> dict | None:
    """The attributes of the zarr group at ``path`` (format 2 ``.zattrs`` or format 3
    ``zarr.json``) without opening it, or None if there is none or it cannot be parsed."""
    import json

    for name in ("zarr.json", ".zattrs"):
        f = Path(path) / name
        if f.is_file():
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                return None
            attrs = doc.get("attributes", {}) if name == "zarr.json" else doc
            return attrs if isinstance(attrs, dict) else None
    return None


def _units(units, n: int) -> list:
    if units is None:
        return [None] * n
    units = [None if u in (None, "", "pixel", "pixels") else str(u) for u in list(units)]
    return ([None] * n + units)[-n:]  # the last axes' units (the spatial ones) when fewer are given


def _axis(name: str, unit) -> dict:
    out = {"name": name, "type": _TYPES[name]}
    if unit is not None and _TYPES[name] in ("space", "time"):
        out["unit"] = unit
    return out


def _image_label(names: dict | None, colors: dict | None) -> dict:
    """OME-NGFF ``image-label`` metadata: colours as 0..255 RGBA, names as ``class`` properties."""
    out: dict = {"version": "0.4"}
    if colors:
        rows = []
        for value, rgba in sorted(colors.items()):
            rgba = [float(c) for c in rgba]
            scale = 255.0 if max(rgba) <= 1.0 else 1.0
            rows.append({"label-value": int(value), "rgba": [int(round(c * scale)) for c in (rgba + [1.0])[:4]]})
        out["colors"] = rows
    if names:
        out["properties"] = [{"label-value": int(v), "class": str(n)} for v, n in sorted(names.items())]
    return out


def _label_table(label) -> dict:
    """``label_names`` / ``label_colors`` ({value: ...}) from OME-NGFF ``image-label`` metadata."""
    out: dict = {}
    if not isinstance(label, dict):
        return out
    try:
        names = {int(p["label-value"]): str(p["class"]) for p in label.get("properties") or []
                 if isinstance(p, dict) and "class" in p}
        colors = {int(c["label-value"]): [float(v) / 255.0 for v in c["rgba"]][:4] for c in label.get("colors") or []
                  if isinstance(c, dict) and len(c.get("rgba") or []) >= 3}
    except (KeyError, TypeError, ValueError):  # a malformed table: the labels still open, without it
        return out
    if names:
        out["label_names"] = names
    if colors:
        out["label_colors"] = {k: (v + [1.0])[:4] for k, v in colors.items()}
    return out


def write_ome_zarr(
    path: str | os.PathLike,
    data: Any,
    axes: str = "yx",
    scale: Any = None,
    levels: int = 1,
    chunks: Any = None,
    downsample: str = "auto",
    labels: bool = False,
    units: Any = None,
    label_names: dict | None = None,
    label_colors: dict | None = None,
) -> Path:
    """Write ``data`` (numpy or dask) as OME-NGFF 0.4 multiscales, atomically: the arrays
    streamed by dask (flat memory), the multiscales metadata written and validated by
    ome-zarr-py.

    ``labels``: the data is a label image; the group gets OME-NGFF's ``image-label``
    metadata, which readers (ours, ome-zarr-py) use to open it as labels, with
    ``label_names`` ({value: name}, as ``properties``) and ``label_colors`` ({value: RGBA
    in 0..1 or 0..255}, as ``colors``) when given. ``units``: one unit name per axis
    (e.g. "micrometer"; None or "pixel" for none), written into the axes.

    ``axes``: letters from "tczyx" (e.g. "zyx"); ``scale``: physical size per axis of
    level 0 (default 1); ``levels``: how many resolution levels ("0" is full size);
    ``downsample``: "auto", "mean" or "stride" (use "stride" for labels).
    The group is written to a temporary folder next to ``path`` and then renamed.
    """
    import dask.array as da
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    path = Path(path)
    axes = axes.lower()
    check_array(data, str(path), check_finite=False)
    if len(axes) != data.ndim or len(set(axes)) != len(axes) or not set(axes) <= set(_TYPES):
        raise InputError(
            f"{path}: axes {axes!r} must be {data.ndim} distinct letters from 'tczyx' "
            f"for data of shape {tuple(data.shape)}"
        )
    if int(levels) < 1:
        raise InputError(f"{path}: levels must be at least 1, got {levels}")
    scale0 = [1.0] * data.ndim if scale is None else [float(s) for s in scale]
    if len(scale0) != data.ndim:
        raise InputError(f"{path}: scale has {len(scale0)} values for {data.ndim} axes")
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=_default_chunks(data.shape, axes))
    yx_axes = [i for i, ax in enumerate(axes) if ax in "yx"]

    if path.is_dir() and not any((path / f).is_file() for f in (".zgroup", ".zattrs", "zarr.json", ".zarray")):
        raise InputError(f"{path} is a folder that is not a zarr store; it is never replaced: choose a new path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    datasets = []
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        level = data
        for i in range(int(levels)):
            if i:
                if not yx_axes or min(level.shape[ax] for ax in yx_axes) < 2:
                    break
                level = downsample2(level, yx_axes, downsample)
            lv_chunks = tuple(chunks) if chunks is not None else _default_chunks(level.shape, axes)
            lv_chunks = tuple(min(int(c), int(n)) for c, n in zip(lv_chunks, level.shape))
            target = group.create_array(
                str(i),
                shape=tuple(int(s) for s in level.shape),
                chunks=lv_chunks,
                dtype=level.dtype,
                fill_value=0,
                chunk_key_encoding={"name": "v2", "separator": "/"},
            )
            da.store(level.rechunk(lv_chunks), target, lock=False, scheduler="threads")
            factor = [2.0**i if ax in "yx" else 1.0 for ax in axes]
            datasets.append(
                {
                    "path": str(i),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [s * f for s, f in zip(scale0, factor)]}
                    ],
                }
            )
            level = da.from_zarr(target)  # next level reads back from disk: shallow graph
        write_multiscales_metadata(group, datasets, fmt=FormatV04(), name=path.name.split(".")[0],
                                   axes=[_axis(ax, u) for ax, u in zip(axes, _units(units, len(axes)))])
        multiscales = group.attrs["multiscales"]  # + how the levels were made (ome-zarr-py drops extra keys)
        mean = downsample == "mean" or (downsample == "auto" and uses_mean(data.dtype))
        multiscales[0]["type"] = "local_mean" if mean else "nearest"
        group.attrs["multiscales"] = multiscales
        if labels:
            group.attrs["image-label"] = _image_label(label_names, label_colors)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _multiscales(attrs: dict) -> list | None:
    if "multiscales" in attrs:
        return attrs["multiscales"]
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"]
    return None


def read_ome_zarr(path: str | os.PathLike) -> tuple[list, dict]:
    """Open an OME-Zarr group (or a plain zarr array) lazily: ``(levels, meta)``."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_dir():
        raise InputError(f"{path} is a file, but a zarr store is a folder; it is not a readable zarr store.")
    if not any((path / f).is_file() for f in (".zgroup", ".zarray", ".zattrs", "zarr.json")):
        raise InputError(f"{path} is not a readable zarr store: the folder holds no zarr metadata "
                         f"(.zgroup, .zarray or zarr.json).")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many kinds
        raise InputError(f"{path} is not a readable zarr store: {one_line(exc) or type(exc).__name__}") from None

    meta: dict[str, Any] = {
        "source_path": str(path),
        "format": "ome-zarr",
        "rgb": False,
        "scale": None,
        "translate": None,
    }
    try:
        if isinstance(node, zarr.Array):
            arrays = [node]
            meta["axes"] = None
        else:
            ms = _multiscales(dict(node.attrs))
            if ms:
                first = ms[0]
                arrays = [node[d["path"]] for d in first["datasets"]]
                if not arrays:
                    raise InputError(f"{path}: its OME-Zarr metadata lists no datasets (resolution levels).")
                if not all(isinstance(a, zarr.Array) for a in arrays):
                    raise InputError(f"{path}: a dataset its OME-Zarr metadata lists is not an array.")
                axes = first.get("axes")
                if axes:
                    meta["axes"] = "".join(
                        (a["name"] if isinstance(a, dict) else str(a))[0] for a in axes
                    )
                    units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
                    if any(isinstance(u, str) and u for u in units):
                        meta["units"] = units
                meta.update(_label_table(node.attrs.get("image-label")))
                # largest first, whatever order the metadata lists them in
                order = sorted(range(len(arrays)), key=lambda i: -int(np.prod(arrays[i].shape)))
                if order != list(range(len(arrays))):
                    meta["reordered_levels"] = True
                arrays, datasets = [arrays[i] for i in order], [first["datasets"][i] for i in order]
                for tr in datasets[0].get("coordinateTransformations", []):
                    if tr.get("type") == "scale":
                        meta["scale"] = [float(v) for v in tr["scale"]]
                    elif tr.get("type") == "translation":
                        meta["translate"] = [float(v) for v in tr["translation"]]
            else:
                arrays = [a for _, a in sorted(node.arrays(), key=lambda kv: kv[0])]
                meta["axes"] = None
                if not arrays:
                    raise InputError(f"{path} is a zarr group without any image arrays")
                arrays.sort(key=lambda a: -int(np.prod(a.shape)))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed metadata
        raise InputError(f"{path} has unreadable OME-Zarr metadata ({type(exc).__name__}: "
                         f"{one_line(exc)}).") from None
    nd = len(arrays[0].shape)
    if any(len(a.shape) != nd for a in arrays):
        raise InputError(f"{path}: its pyramid levels have different numbers of axes.")
    if meta.get("axes") is not None and len(meta["axes"]) != nd:
        raise InputError(f"{path}: the metadata names {len(meta['axes'])} axes ({meta['axes']}) for "
                         f"{nd}-D data; the file is inconsistent.")
    if meta.get("axes") is not None and len(set(meta["axes"])) != nd:
        raise InputError(f"{path}: the metadata names the same axis twice ({meta['axes']}); the file is "
                         f"inconsistent.")
    for key in ("scale", "translate"):
        vals = meta.get(key)
        if vals is None:
            continue
        if len(vals) != nd:
            raise InputError(f"{path}: its {key} has {len(vals)} values for {nd}-D data.")
        if not all(np.isfinite(vals)) or (key == "scale" and any(v <= 0 for v in vals)):
            raise InputError(f"{path}: its pixel {key} {vals} is not usable (values must be finite"
                             f"{' and positive' if key == 'scale' else ''}).")
    if any(0 in a.shape for a in arrays):
        raise InputError(f"{path} is empty (shape {tuple(arrays[0].shape)})")
    check_declared_size(path, arrays[0].shape, arrays[0].dtype, file_bytes=2**62)  # absolute cap only
    for a in arrays:  # (chunks never written read as the fill value: no ratio to the store's size)
        check_chunk_size(path, a.chunks, a.dtype)
    levels = [checked_dask(a, path, chunks=a.chunks) for a in arrays]
    meta["pyramid"] = "file" if len(levels) > 1 else "none"
    return levels, meta
