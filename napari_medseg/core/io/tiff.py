"""TIFF / OME-TIFF / BigTIFF: lazy multiscale reading and tile-by-tile writing.

Reading goes through tifffile's zarr store, so nothing is loaded until napari asks
for a region. Pyramids stored in the file (OME SubIFDs, series levels) are used as
they are; a big single-level image gets a pyramid built once into the cache (see
:mod:`.pyramid`), level 0 always staying the original file.

Writing takes a numpy or dask array of any size and hands tifffile an iterator of
tiles computed band by band, so memory does not grow with the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .guard import check_declared_size, checked_dask, one_line
from .pyramid import cached_pyramid, downsample2
from .validate import check_array

TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8")
_CHUNK_TARGET = 4 * 2**20  # bytes per dask chunk when the file's tiles/strips are small
_BAND_BYTES = 64 * 2**20  # bytes computed at once while writing
_BIGTIFF_AT = 2**31 - 2**25


LABELS_NAME = "napari-medseg labels"  # the OME image name of label images we write


def is_tiff(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(TIFF_SUFFIXES)


def _unreadable(path: Path, why: str) -> InputError:
    return InputError(f"{path} is not a readable TIFF file: {one_line(why)}")


@contextlib.contextmanager
def _quiet_tifffile():
    """tifffile logs what it skips in a damaged file ("invalid offset to first page") to stderr;
    the reader reports the damage itself, in one line."""
    import logging

    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_segments(path: Path, series: Any) -> None:
    """Every tile/strip of every level must lie inside the file (catches truncation)."""
    size = path.stat().st_size
    for level in series.levels:
        for page in level.pages:
            if page is None:
                continue
            offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            counts = np.asarray(page.databytecounts, dtype=np.int64)
            used = offsets[offsets > 0] + counts[offsets > 0]
            if used.size and int(used.max()) > size:
                raise _unreadable(
                    path,
                    f"the file is truncated ({size} bytes, but image data runs to byte {int(used.max())})",
                )


def _ome_scale(tif: Any, axes: str, rgb: bool, path: Path | None = None) -> list | None:
    """Physical pixel sizes from the OME-XML, one per axis (1.0 where absent); NaN, inf, 0 or
    negative sizes are refused rather than handed on to napari."""
    if not tif.is_ome or not tif.ome_metadata:
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    sizes = {ax: pixels.get(f"PhysicalSize{ax}") for ax in "XYZ"}
    if not any(sizes.get(ax) for ax in axes if ax in "XYZ"):
        return None
    scale = []
    for ax in axes:
        if rgb and ax == "S":
            continue
        value = sizes.get(ax)
        try:
            size = float(value) if value else 1.0
        except ValueError:
            size = float("nan")
        if not np.isfinite(size) or size <= 0:
            raise InputError(f"{path}: its OME pixel size PhysicalSize{ax}={value!r} is not usable (sizes must "
                             f"be finite and positive); fix the metadata (e.g. in Fiji or with tifffile) first.")
        scale.append(size)
    return scale


def _dask_chunks(shape: tuple, zchunks: tuple, axes: str, itemsize: int) -> tuple:
    """Grow tiny tiles/strips (multiples of the file's own) to about 4 MiB chunks."""
    chunks = list(zchunks)
    yx = [i for i, ax in enumerate(axes) if ax in "YX"]
    grown = True
    while grown and int(np.prod(chunks)) * itemsize < _CHUNK_TARGET:
        grown = False
        for ax in yx:
            if chunks[ax] < shape[ax] and int(np.prod(chunks)) * itemsize < _CHUNK_TARGET:
                chunks[ax] = min(shape[ax], chunks[ax] * 2)
                grown = True
    return tuple(chunks)


def read_tiff(path: str | os.PathLike, pyramid_min_size: int | None = 4096) -> tuple[list, dict]:
    """Open a TIFF lazily: ``(levels, meta)`` with levels largest first.

    ``pyramid_min_size``: a single-level image whose largest Y/X side is at least this
    gets a cached pyramid (``meta["pyramid"] == "cache"``); None never builds one.
    """
    import tifffile
    import zarr

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with _quiet_tifffile(), tifffile.TiffFile(str(path)) as tif:
            if not tif.series:
                raise _unreadable(path, "it holds no images")
            series = tif.series[0]
            axes = str(series.axes)
            shapes = [tuple(int(s) for s in lv.shape) for lv in series.levels]
            keyframe = series.keyframe
            rgb = (
                axes.endswith("S")
                and shapes[0][-1] in (3, 4)
                and int(keyframe.photometric) == int(tifffile.PHOTOMETRIC.RGB)
            )
            _check_segments(path, series)
            scale = _ome_scale(tif, axes, rgb, path)
            store = series.aszarr()
        # the store reopens the file itself; tif must be closed before any read through it
        node = zarr.open(store, mode="r")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - TiffFileError, struct.error, ValueError...
        raise _unreadable(path, str(exc) or type(exc).__name__) from None
    if any(0 in s for s in shapes):
        raise InputError(f"{path} is empty (shape {shapes[0]})")
    check_declared_size(path, shapes[0], keyframe.dtype)

    st = path.stat()
    token = hashlib.sha1(repr((str(path.resolve()), st.st_size, st.st_mtime_ns)).encode()).hexdigest()
    arrays = [node[str(i)] for i in range(len(shapes))] if isinstance(node, zarr.Group) else [node]
    levels = []
    for i, arr in enumerate(arrays):
        chunks = _dask_chunks(tuple(arr.shape), tuple(arr.chunks), axes, arr.dtype.itemsize)
        levels.append(checked_dask(arr, path, chunks=chunks, name=f"tiff-{token}-{i}"))

    pyramid = "file" if len(levels) > 1 else "none"
    cache = None
    yx_axes = [axes.index("Y"), axes.index("X")] if "Y" in axes and "X" in axes else []
    if (
        pyramid == "none"
        and pyramid_min_size
        and yx_axes
        and max(shapes[0][ax] for ax in yx_axes) >= pyramid_min_size
    ):
        lower, cache = cached_pyramid(path, levels[0], yx_axes, rgb=rgb)
        levels += lower
        pyramid = "cache"
    meta = {
        "rgb": bool(rgb),
        "axes": axes,
        "source_path": str(path),
        "pyramid": pyramid,
        "pyramid_cache": str(cache) if cache else None,
        "scale": scale,
        "format": "tiff",
    }
    return levels, meta


# --------------------------------------------------------------------------- writing


def _tiles(level: Any, lead: int, tile: tuple[int, int]) -> Iterator[np.ndarray]:
    """Tiles in TIFF order (page by page, row by row), computed in bounded bands."""
    th, tw = tile
    shape = level.shape
    height, width = shape[lead], shape[lead + 1]
    rest = int(np.prod(shape[lead + 2 :], dtype=np.int64))  # samples
    itemsize = np.dtype(level.dtype).itemsize
    cols = max(1, _BAND_BYTES // max(1, th * tw * rest * itemsize))  # tiles per block
    dtype = np.dtype(level.dtype)
    for idx in np.ndindex(*shape[:lead]):
        for y0 in range(0, height, th):
            for bx in range(0, width, cols * tw):
                block = level[idx + (slice(y0, y0 + th), slice(bx, min(width, bx + cols * tw)))]
                block = np.asarray(block, dtype=dtype)
                for x0 in range(0, block.shape[1], tw):
                    yield np.ascontiguousarray(block[:, x0 : x0 + tw])


def _write_tiff(
    path: str | os.PathLike,
    data: Any,
    axes: str,
    tile: tuple[int, int],
    pyramid_levels: int,
    ome: bool,
    scale: Any = None,
    downsample: str = "auto",
    name: str | None = None,
) -> Path:
    import dask.array as da
    import tifffile

    path = Path(path)
    check_array(data, str(path), check_finite=False)
    axes = axes.upper()
    if len(axes) != data.ndim:
        raise InputError(f"{path}: axes {axes!r} do not match the {data.ndim}-D data (shape {tuple(data.shape)})")
    rgb = axes.endswith("S")
    if not (axes.endswith("YX") or axes.endswith("YXS")):
        raise InputError(f"{path}: axes must end with 'YX' (or 'YXS' for RGB), got {axes!r}")
    tile = (int(tile[0]), int(tile[1]))
    if tile[0] % 16 or tile[1] % 16 or min(tile) <= 0:
        raise InputError(f"{path}: tile sides must be positive multiples of 16, got {tile}")
    lead = axes.index("Y")
    dtype = np.dtype(data.dtype).newbyteorder("=")
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=data.shape)
    if dtype != data.dtype:
        data = data.astype(dtype)
    levels = [data]
    for _ in range(int(pyramid_levels)):
        levels.append(downsample2(levels[-1], [lead, lead + 1], downsample))
    total = sum(int(np.prod(lv.shape, dtype=np.int64)) for lv in levels) * dtype.itemsize
    photometric = "rgb" if rgb and data.shape[-1] in (3, 4) else "minisblack"
    metadata: dict | None = None
    if ome:
        metadata = {"axes": axes}
        if name:
            metadata["Name"] = name  # OME Image Name
        if scale is not None:
            names = [ax for ax in axes if ax != "S"]
            for ax, value in zip(names, scale):
                if ax in "XYZ" and value:
                    metadata[f"PhysicalSize{ax}"] = float(value)

    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith((".ome.tif", ".ome.tiff")) else path.suffix
    with atomic_path(path, suffix=f".tmp{suffix}") as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=total > _BIGTIFF_AT, ome=ome) as tw:
            for i, lv in enumerate(levels):
                kwargs: dict[str, Any] = {}
                if i == 0:
                    kwargs["metadata"] = metadata
                    if pyramid_levels:
                        kwargs["subifds"] = int(pyramid_levels)
                else:
                    kwargs["subfiletype"] = 1
                tw.write(
                    _tiles(lv, lead, tile),
                    shape=tuple(int(s) for s in lv.shape),
                    dtype=dtype,
                    tile=tile,
                    photometric=photometric,
                    **kwargs,
                )
    return path


def write_ome_tiff(
    path: str | os.PathLike,
    data: Any,
    axes: str = "YX",
    tile: tuple[int, int] = (512, 512),
    pyramid_levels: int = 0,
    scale: Any = None,
    downsample: str = "auto",
    name: str | None = None,
) -> Path:
    """Write ``data`` (numpy or dask, any size) as a tiled OME-TIFF, atomically.

    ``axes`` ends with "YX" (or "YXS" for RGB). ``pyramid_levels`` > 0 adds that many
    2x-downsampled SubIFD levels. ``scale`` (one value per non-"S" axis) becomes the
    OME physical sizes. ``downsample``: "auto", "mean" or "stride" (use "stride" for
    labels). ``name``: the OME image name (:data:`LABELS_NAME` marks a label image). BigTIFF
    is used when the file would pass 2 GiB.
    """
    return _write_tiff(path, data, axes, tile, pyramid_levels, ome=True, scale=scale, downsample=downsample,
                       name=name)


def write_tiled_tiff(path: str | os.PathLike, array: Any, tile: tuple[int, int] = (512, 512)) -> Path:
    """A plain tiled (Big)TIFF, single level, no OME metadata (benchmark images)."""
    axes = "YXS" if array.ndim == 3 and array.shape[-1] in (3, 4) else "QYX"[-array.ndim :]
    if array.ndim > 3:
        axes = "Q" * (array.ndim - 2) + "YX"
    return _write_tiff(path, array, axes, tile, 0, ome=False)
