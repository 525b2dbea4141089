"""Image input/output for the engine: NIfTI, (OME-/Big)TIFF and OME-Zarr, all lazy (dask).

Qt-free: never imports qtpy, napari or magicgui. Every reader returns
``(levels, meta)`` -- a list of dask arrays, largest first (one entry unless the
image is a pyramid) and a JSON-friendly dict; every bad input raises
:class:`~napari_medseg.core.errors.InputError` with a message naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .nifti import NIFTI_SUFFIXES, header_of, is_nifti, read_nifti, write_nifti
from .omezarr import is_zarr, read_ome_zarr, write_ome_zarr
from .image_labels import is_ome_image, read_image_labels, write_image_labels
from .tiff import TIFF_SUFFIXES, is_tiff, read_tiff, write_ome_tiff, write_tiled_tiff
from .pyramid import remove_cache_debris
from .validate import as_labels, assert_finite, check_array, check_pixel_dtype

SUFFIXES = tuple(dict.fromkeys((*NIFTI_SUFFIXES, *TIFF_SUFFIXES, ".zarr", ".ome.zarr")))

__all__ = [
    "SUFFIXES",
    "assert_finite",
    "check_array",
    "napari_placement",
    "read_image",
    "read_image_labels",
    "read_nifti",
    "read_ome_zarr",
    "read_tiff",
    "write_image_labels",
    "write_labels",
    "write_nifti",
    "write_ome_tiff",
    "write_ome_zarr",
    "write_tiled_tiff",
]


def _unsupported(path: Path) -> InputError:
    return InputError(
        f"{path}: unsupported file type; napari-medseg reads {', '.join(SUFFIXES)}"
    )


def read_image(path: str | os.PathLike, pyramid_min_size: int | None = 4096) -> tuple[list, dict]:
    """Open an image lazily by its suffix: ``(levels, meta)``, levels largest first.

    ``pyramid_min_size`` is passed to :func:`read_tiff` (cached pyramids of big TIFFs).
    """
    path = Path(path)
    remove_cache_debris()
    levels, meta = _read_by_suffix(path, pyramid_min_size)
    check_pixel_dtype(path, levels[0].dtype)
    return levels, meta


def _read_by_suffix(path: Path, pyramid_min_size: int | None) -> tuple[list, dict]:
    if is_nifti(path):
        arr, meta = read_nifti(path)
        return [arr], meta
    if is_tiff(path):
        return read_tiff(path, pyramid_min_size=pyramid_min_size)
    if is_zarr(path):
        from ..outputs import result_attrs

        info = result_attrs(path)
        if info is not None and info.get("complete", True) is not True:
            raise InputError(f"{path} is an incomplete result: the run that wrote it did not finish "
                             f"(it was stopped or killed); run it again with --overwrite.")
        return read_ome_zarr(path)
    raise _unsupported(path)


def _tiff_axes(meta: dict, ndim: int) -> tuple[str, list | None]:
    """Axes (and matching scale) of labels drawn on the image described by ``meta``."""
    axes = str(meta.get("axes") or "").upper().replace("S", "")
    scale = meta.get("scale")
    if len(axes) >= ndim and set(axes[-ndim:]) <= set("TCZYX") and axes[-ndim:].endswith("YX"):
        out = axes[-ndim:]
        if scale is not None and len(scale) == len(axes):
            return out, list(scale)[-ndim:]
        return out, None
    default = {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}
    if ndim not in default:
        raise InputError(f"labels must be 2-D to 5-D to be saved as TIFF/Zarr, got {ndim}-D")
    # no axes known (a layer napari-medseg did not open): the layer's own scale still holds
    if scale is not None and len(scale) >= ndim:
        return default[ndim], [float(v) for v in list(scale)[-ndim:]]
    return default[ndim], None


def _auto_levels(shape: tuple, yx: tuple[int, int]) -> int:
    """Pyramid levels for big label images (halve until the largest side < 1024)."""
    side = max(shape[yx[0]], shape[yx[1]])
    if side < 4096:
        return 0
    n = 0
    while side >= 1024:
        side //= 2
        n += 1
    return n


def write_labels(path: str | os.PathLike, labels: Any, meta: dict | None = None) -> Path:
    """Save ``labels`` next to/for the image described by ``meta``, format by suffix.

    NIfTI keeps ``meta["affine"]`` (and the source header's units and codes);
    OME-TIFF and OME-Zarr keep the axes and physical scale. Writes are atomic. An existing
    OME-Zarr image at ``path`` is kept: the labels go into its ``labels`` group as
    ``meta["layer_name"]`` (see :mod:`.image_labels`).
    Big 2-D label images get a pyramid (every second pixel, so no new label values).
    """
    path = Path(path)
    meta = dict(meta or {})
    if is_nifti(path):
        affine = meta.get("affine")
        if affine is None:
            affine = np.eye(4)
            scale, translate = meta.get("scale"), meta.get("translate")
            n = min(3, np.ndim(labels))
            if scale is not None:
                affine[:n, :n] = np.diag(list(scale)[-n:])
            if translate is not None:
                affine[:n, 3] = list(translate)[-n:]
        src = meta.get("source_path")
        like = header_of(src) if src and is_nifti(src) and Path(src).is_file() else None
        return write_nifti(path, labels, affine, like_header=like)
    if is_tiff(path) or is_zarr(path):
        data = as_labels(labels, str(path))
        axes, scale = _tiff_axes(meta, data.ndim)
        yx = (data.ndim - 2, data.ndim - 1)
        levels = _auto_levels(data.shape, yx)
        if is_tiff(path):
            from .tiff import LABELS_NAME

            return write_ome_tiff(
                path, data, axes=axes, pyramid_levels=levels, scale=scale, downsample="stride", name=LABELS_NAME
            )
        if is_ome_image(path):  # an image's labels go into its "labels" group; the image is kept
            return write_image_labels(path, data, name=meta.get("layer_name") or "labels",
                                      label_names=meta.get("label_names"), label_colors=meta.get("label_colors"))
        return write_ome_zarr(
            path, data, axes=axes.lower(), scale=scale, levels=levels + 1, downsample="stride", labels=True,
            units=meta.get("units"), label_names=meta.get("label_names"), label_colors=meta.get("label_colors"),
        )
    raise _unsupported(path)


def napari_placement(meta: dict) -> dict:
    """Keyword arguments placing a layer in napari: scale/translate or affine, rgb, channel_axis."""
    out: dict[str, Any] = {}
    if meta.get("napari_affine") is not None:
        out["affine"] = np.asarray(meta["napari_affine"])
    else:
        if meta.get("scale") is not None:
            out["scale"] = list(meta["scale"])
        if meta.get("translate") is not None:
            out["translate"] = list(meta["translate"])
    units = meta.get("units")
    if units and not meta.get("rgb") and meta.get("channel_axis") is None and any(units):
        out["units"] = [u or "pixel" for u in units]
    if meta.get("rgb"):
        out["rgb"] = True
    if meta.get("channel_axis") is not None:
        out["channel_axis"] = int(meta["channel_axis"])
    return out
