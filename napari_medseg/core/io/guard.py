"""Guards every reader shares: declared sizes a file cannot hold, chunks that fail to decode.

Declared size: a header can claim any shape. Before anything is read or built, a file is
refused when its header declares

- more than ``MAX_PIXELS`` pixels (default 2**40, about 1.1 trillion) or more than
  ``MAX_BYTES`` bytes of pixels (default 1 TiB), whatever the file; or
- more than 1 GiB of pixels *and* more than ``MAX_RATIO`` (default 2000) times the
  file's size on disk. Real slides compress 10-50x (JPEG) and rarely beyond a few
  hundred (mostly empty glass, deflate), so 2000x only stops decompression bombs and
  lying headers (a 787 KB TIFF declaring 1,000,000² pixels is 1,000,000x). A gzip stream
  cannot exceed about 1030x, so for ``.nii.gz`` the limit is ``GZIP_MAX_RATIO`` (500):
  above 1 GiB, a volume that compresses better than that is mostly zeros and would only
  cost minutes of decompression.

Each limit is a module-level setting (``guard.MAX_RATIO = 0``) that the environment
variables ``NAPARI_MEDSEG_MAX_PIXELS``, ``NAPARI_MEDSEG_MAX_BYTES`` and
``NAPARI_MEDSEG_MAX_RATIO`` override; 0 switches a check off.

Decoding: lazy readers decode chunks long after the file was opened, deep inside
dask. :class:`CheckedChunks` wraps a zarr array so that a chunk that fails to decode
raises one :class:`~napari_medseg.core.errors.InputError` naming the file and region
(dask re-raises it as itself, so the CLI and the widgets show that one line).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MedsegError, MemoryPreflightError

#: ratio checks only apply above this many declared bytes
RATIO_FROM_BYTES = 2**30
#: module-level defaults; the NAPARI_MEDSEG_MAX_* environment variables override them (0: no limit)
MAX_PIXELS: float = 2.0**40
MAX_BYTES: float = 2.0**40
MAX_RATIO: float = 2000.0
GZIP_MAX_RATIO: float = 500.0
#: one chunk (a zarr chunk, a TIFF tile or strip) is read whole: refuse absurd ones
MAX_CHUNK_BYTES: float = 4.0 * 2**30


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise MedsegError(f"{name}={raw!r} is not a usable limit: give a number >= 0 (0 switches the check off).")
    return value


def max_pixels() -> float:
    return _setting("NAPARI_MEDSEG_MAX_PIXELS", MAX_PIXELS)


def max_bytes() -> float:
    return _setting("NAPARI_MEDSEG_MAX_BYTES", MAX_BYTES)


def max_ratio() -> float:
    return _setting("NAPARI_MEDSEG_MAX_RATIO", MAX_RATIO)


def one_line(text: Any, limit: int = 200) -> str:
    """``text`` (e.g. a library's exception message) as one short line."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n}"  # pragma: no cover


def _on_disk(path: Path) -> int:
    """Bytes a file (or a folder's files) really stores; holes of sparse files do not count."""
    st = path.stat()
    allocated = getattr(st, "st_blocks", 0) * 512
    return min(st.st_size, allocated) if allocated > 0 else st.st_size


def check_declared_size(path: str | os.PathLike, shape, dtype, file_bytes: int | None = None,
                        gzip: bool = False) -> None:
    """Refuse a header that declares more data than is plausible for the file (see module doc).

    ``file_bytes``: the file's size to compare with (default: what ``path`` stores on
    disk); ``gzip``: the data is one gzip stream (the lower :data:`GZIP_MAX_RATIO`).
    """
    path = Path(path)
    pixels = float(np.prod([float(s) for s in shape]))
    declared = pixels * np.dtype(dtype).itemsize
    shown = "×".join(map(str, shape))
    limit = max_pixels()
    if limit > 0 and pixels > limit:
        raise InputError(f"{path} declares {pixels:,.0f} pixels ({shown}), more than the {limit:,.0f} "
                         f"napari-medseg opens; if it is real, set NAPARI_MEDSEG_MAX_PIXELS higher (0: no limit).")
    limit = max_bytes()
    if limit > 0 and declared > limit:
        raise InputError(f"{path} declares {_fmt(declared)} of pixels ({shown}), more than the "
                         f"{_fmt(limit)} napari-medseg opens; if it is real, raise NAPARI_MEDSEG_MAX_BYTES.")
    size = _on_disk(path) if file_bytes is None else int(file_bytes)
    ratio = max_ratio()
    if gzip and ratio > 0:
        ratio = min(ratio, GZIP_MAX_RATIO)
    if ratio > 0 and declared > RATIO_FROM_BYTES and declared > ratio * max(size, 1):
        raise InputError(f"{path} declares {_fmt(declared)} of pixels but the file has {_fmt(size)} "
                         f"({declared / max(size, 1):,.0f}x, more than the {ratio:,.0f}x allowed); it looks "
                         f"damaged or like a decompression bomb. If it is real, set NAPARI_MEDSEG_MAX_RATIO=0 and "
                         f"open it again.")


def check_chunk_size(path: str | os.PathLike, chunks, dtype) -> None:
    """Refuse chunks (read whole) above :data:`MAX_CHUNK_BYTES`: one read would exhaust memory."""
    nbytes = float(np.prod([float(c) for c in chunks])) * np.dtype(dtype).itemsize
    if MAX_CHUNK_BYTES > 0 and nbytes > MAX_CHUNK_BYTES:
        raise InputError(f"{path} stores its pixels in blocks of {_fmt(nbytes)} ({'×'.join(map(str, chunks))}), "
                         f"each of which must be read whole; rewrite it with smaller chunks or tiles.")


def _settle_zarr_tasks(timeout: float = 5.0) -> None:
    """Let zarr's other in-flight reads finish after one failed.

    zarr reads chunks concurrently on its own event loop; when one fails, the others
    keep running, and a process that exits right after the error (the CLI) would print
    "Task was destroyed but it is pending!" for each.
    """
    try:
        import asyncio

        from zarr.core import sync

        loop = sync.loop[0]
    except Exception:  # noqa: BLE001 - another zarr: nothing to settle
        return
    if loop is None or not loop.is_running():
        return
    try:
        if asyncio.get_running_loop() is loop:
            return
    except RuntimeError:
        pass

    async def others_done():
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    try:
        asyncio.run_coroutine_threadsafe(others_done(), loop).result(timeout + 1)
    except Exception:  # noqa: BLE001 - best effort
        pass


class CheckedChunks:
    """A read-only array view whose decoding errors become one :class:`InputError`."""

    def __init__(self, arr: Any, path: str | os.PathLike):
        self._arr = arr
        self._path = str(path)
        self.shape = tuple(int(s) for s in arr.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(arr.dtype)
        self.chunks = getattr(arr, "chunks", None)

    def __getitem__(self, key):
        try:
            return np.asarray(self._arr[key])
        except MedsegError:
            raise
        except MemoryError:
            raise MemoryPreflightError(f"{self._path}: not enough memory to read a block of it; close other "
                                       f"programs or rewrite the file with smaller chunks.") from None
        except Exception as exc:  # noqa: BLE001 - blosc, imagecodecs, zlib, OSError...
            _settle_zarr_tasks()
            region = ", ".join(f"{k.start or 0}:{k.stop}" if isinstance(k, slice) else str(k)
                               for k in (key if isinstance(key, tuple) else (key,)))
            raise InputError(f"{self._path}: the data at [{region}] cannot be decoded, the file is damaged "
                             f"({type(exc).__name__}: {one_line(exc, 120)}).") from None


def checked_dask(arr: Any, path: str | os.PathLike, chunks=None, name: str | None = None):
    """``dask.array.from_array`` over :class:`CheckedChunks`, chunked like the store (or ``chunks``)."""
    import dask.array as da

    src = CheckedChunks(arr, path)
    return da.from_array(src, chunks=chunks or src.chunks or "auto", name=name or False, asarray=False,
                         fancy=False, meta=np.empty((0,) * src.ndim, dtype=src.dtype))
