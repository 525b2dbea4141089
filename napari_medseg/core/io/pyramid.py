"""Multiscale helpers: 2x downsampling with dask, and the on-disk pyramid cache.

A single-level TIFF whose largest Y/X side is big gets its lower levels built once,
level by level, each from the previous one read back from disk (so the dask graph
stays shallow and memory stays flat), into
``cache_dir()/pyramids/<sha1 of (absolute path, size, mtime_ns)>.zarr``. The build
writes to a temporary folder and renames it when complete, so an interrupted build
leaves no half pyramid behind and is simply redone on the next open.

Downsampling: floats and 8/16-bit integers (intensity images, uint8 RGB/grey) take the
mean of each 2x2 block, rounded to the input dtype; wider integers and booleans
(label-like images) take every second pixel, so no new label values appear.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..paths import cache_dir
from .guard import checked_dask

#: stop adding levels once the largest Y/X side is below this
MIN_LEVEL_SIDE = 1024
#: chunk side (Y and X) of the cached levels on disk
CACHE_CHUNK = 1024
MARKER = "medseg_pyramid.json"
_MEAN_KINDS = {np.dtype(t) for t in (np.uint8, np.uint16, np.int8, np.int16)}


def uses_mean(dtype: Any) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind in "fc" or dtype in _MEAN_KINDS


def _mean_block(block: np.ndarray, axis: Any = None) -> np.ndarray:
    acc = np.float64 if block.dtype in (np.float64, np.complex128) else np.float32
    return block.mean(axis=axis, dtype=acc)


def downsample2(arr: Any, yx_axes: Sequence[int], method: str = "auto") -> Any:
    """Halve ``arr`` (a dask array) along ``yx_axes``; odd trailing rows/columns are dropped.

    ``method``: "mean", "stride" (every second pixel: for labels of any dtype) or
    "auto" (mean for floats and 8/16-bit integers, stride otherwise).
    """
    import dask.array as da

    if method not in ("auto", "mean", "stride"):
        raise ValueError(f"unknown downsampling method {method!r}")
    dtype = np.dtype(arr.dtype)
    index = [slice(None)] * arr.ndim
    for ax in yx_axes:
        index[ax] = slice(0, arr.shape[ax] - arr.shape[ax] % 2)
    if method == "stride" or (method == "auto" and not uses_mean(dtype)):
        for ax in yx_axes:
            index[ax] = slice(0, arr.shape[ax] - arr.shape[ax] % 2, 2)
        return arr[tuple(index)]
    arr = arr[tuple(index)]
    # chunks must be even along the coarsened axes
    even = {}
    for ax in yx_axes:
        c = max(arr.chunks[ax])
        even[ax] = min(arr.shape[ax], max(2, c + c % 2))
    if any(any(c % 2 for c in arr.chunks[ax]) for ax in yx_axes):
        arr = arr.rechunk(even)
    out = da.coarsen(_mean_block, arr, {ax: 2 for ax in yx_axes}, trim_excess=True)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = da.clip(da.rint(out), info.min, info.max)
    return out.astype(dtype)


def level_chunks(shape: Sequence[int], yx_axes: Sequence[int], side: int, rgb: bool) -> tuple:
    """Chunks of ``side`` on Y and X, 1 on other axes, whole on a trailing RGB axis."""
    chunks = []
    for ax, n in enumerate(shape):
        if ax in yx_axes:
            chunks.append(min(int(n), side))
        elif rgb and ax == len(shape) - 1:
            chunks.append(int(n))
        else:
            chunks.append(1)
    return tuple(chunks)


def _cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(repr((str(path.resolve()), st.st_size, st.st_mtime_ns)).encode()).hexdigest()


def writer_gone(pid: int, started_before: float) -> bool:
    """True when process ``pid`` no longer runs, or is a newer process that reuses its id."""
    import psutil

    if pid <= 0:
        return True
    try:
        return psutil.Process(pid).create_time() > started_before + 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except (psutil.AccessDenied, OSError):
        return False


def _remove_stale(root: Path, key: str | None = None) -> list[Path]:
    """Leftovers ``*.zarr.tmp-PID-*`` of interrupted builds (of any file) whose process is gone."""
    removed = []
    for tmp in root.glob("*.zarr.tmp-*"):
        try:
            pid = int(tmp.name.split(".tmp-")[1].split("-")[0])
            born = tmp.stat().st_ctime
        except (IndexError, ValueError, OSError):
            pid, born = -1, 0.0
        if pid != os.getpid() and writer_gone(pid, born):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


_SWEPT: dict[str, float] = {}
#: seconds between two sweeps of one cache folder by :func:`remove_cache_debris`
SWEEP_EVERY_S = 60.0


def remove_cache_debris(force: bool = False) -> list[Path]:
    """Remove what killed runs left in the cache: unfinished pyramid builds and NIfTI copies.

    Only leftovers of processes that are gone are removed. Two folder listings: cheap
    enough for every open, and done at most once a minute per cache (unless ``force``).
    """
    root = cache_dir()
    now = time.monotonic()
    last = _SWEPT.get(str(root))
    if not force and last is not None and now - last < SWEEP_EVERY_S:
        return []
    _SWEPT[str(root)] = now
    removed = []
    if (root / "pyramids").is_dir():
        removed += _remove_stale(root / "pyramids")
    if (root / "nifti").is_dir():
        from .nifti_cache import remove_stale_temporaries

        removed += remove_stale_temporaries(root / "nifti")
    return removed


def _open_cached(final: Path, source_shape: tuple, dtype: np.dtype) -> list | None:
    """The cached levels 1..n as dask arrays, or None if the cache is missing or stale."""
    import json

    import zarr

    marker = final / MARKER
    try:
        info = json.loads(marker.read_text())
        if tuple(info["source_shape"]) != tuple(source_shape) or info["dtype"] != dtype.str:
            return None
        group = zarr.open_group(str(final), mode="r")
        levels = []
        for i, shape in enumerate(info["levels"], start=1):
            arr = group[str(i)]
            if tuple(arr.shape) != tuple(shape):
                return None
            levels.append(checked_dask(arr, final, chunks=arr.chunks, name=f"pyramid-{final.stem}-{i}"))
        return levels
    except Exception:  # noqa: BLE001 - anything wrong means: rebuild
        return None


def cached_pyramid(
    path: str | os.PathLike,
    level0: Any,
    yx_axes: Sequence[int],
    rgb: bool = False,
) -> tuple[list, Path]:
    """Levels 1..n of ``level0`` (the TIFF's lazy dask array) from the cache, built if needed.

    Returns ``(levels, cache_path)``; levels halve Y and X until the largest side is
    below :data:`MIN_LEVEL_SIDE`.
    """
    import dask.array as da
    import zarr

    path = Path(path)
    dtype = np.dtype(level0.dtype)
    root = cache_dir() / "pyramids"
    root.mkdir(parents=True, exist_ok=True)
    key = _cache_key(path)
    final = root / f"{key}.zarr"
    _remove_stale(root)
    if final.exists():
        levels = _open_cached(final, tuple(level0.shape), dtype)
        if levels is not None:
            return levels, final
        shutil.rmtree(final, ignore_errors=True)

    tmp = root / f"{key}.zarr.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        group = zarr.open_group(str(tmp), mode="w")
        read_chunks = level_chunks(level0.shape, yx_axes, 2 * CACHE_CHUNK, rgb)
        prev = level0.rechunk(read_chunks)
        shapes = []
        i = 0
        while max(prev.shape[ax] for ax in yx_axes) >= MIN_LEVEL_SIDE:
            i += 1
            coarse = downsample2(prev, yx_axes)
            chunks = level_chunks(coarse.shape, yx_axes, CACHE_CHUNK, rgb)
            target = group.create_array(
                str(i), shape=coarse.shape, chunks=chunks, dtype=dtype, fill_value=0
            )
            da.store(coarse.rechunk(chunks), target, lock=False, scheduler="threads")
            shapes.append([int(s) for s in coarse.shape])
            prev = da.from_zarr(target, chunks=level_chunks(coarse.shape, yx_axes, 2 * CACHE_CHUNK, rgb))
        from ..atomic import atomic_write_json

        atomic_write_json(
            tmp / MARKER,
            {
                "source": str(path.resolve()),
                "source_shape": [int(s) for s in level0.shape],
                "dtype": dtype.str,
                "levels": shapes,
                "method": "mean" if uses_mean(dtype) else "stride",
            },
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():  # someone else finished first otherwise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    levels = _open_cached(final, tuple(level0.shape), dtype)
    if levels is None:  # pragma: no cover - only if the finished cache vanished meanwhile
        raise OSError(f"pyramid cache {final} could not be opened after building it")
    return levels, final
