"""Guards every reader shares: declared sizes a file cannot hold, chunks that fail to decode.

Declared size: a header can claim any shape. A file whose declared pixels exceed
``NAPARI_MEDSEG_MAX_BYTES`` (default 1 TiB), or exceed ``NAPARI_MEDSEG_MAX_RATIO``
(default 2000) times the file's size when above 1 GiB, is refused before anything is
read or built. Real slides compress 10-50x (JPEG) and rarely beyond a few hundred
(mostly empty glass, deflate), so 2000x only stops decompression bombs and lying
headers; set the variable to 0 to switch the ratio check off.

Decoding: lazy readers decode chunks long after the file was opened, deep inside
dask. :class:`CheckedChunks` wraps a zarr array so that a chunk that fails to decode
raises one :class:`~napari_medseg.core.errors.InputError` naming the file and region.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

RATIO_FROM_BYTES = 2**30


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def max_bytes() -> float:
    return _env_float("NAPARI_MEDSEG_MAX_BYTES", 2.0**40)


def max_ratio() -> float:
    return _env_float("NAPARI_MEDSEG_MAX_RATIO", 2000.0)


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n}"  # pragma: no cover


def check_declared_size(path: str | os.PathLike, shape, dtype, file_bytes: int | None = None) -> None:
    """Refuse a header that declares more data than is plausible for the file (see module doc)."""
    path = Path(path)
    declared = float(np.prod([float(s) for s in shape])) * np.dtype(dtype).itemsize
    limit = max_bytes()
    if limit > 0 and declared > limit:
        raise InputError(f"{path} declares {_fmt(declared)} of pixels ({'×'.join(map(str, shape))}), more than the "
                         f"{_fmt(limit)} napari-medseg opens; if it is real, raise NAPARI_MEDSEG_MAX_BYTES.")
    if file_bytes is None:
        st = path.stat()
        # a sparse file (holes read as zeros) counts by what it really stores
        allocated = getattr(st, "st_blocks", 0) * 512
        size = min(st.st_size, allocated) if allocated > 0 else st.st_size
    else:
        size = int(file_bytes)
    ratio = max_ratio()
    if ratio > 0 and declared > RATIO_FROM_BYTES and declared > ratio * max(size, 1):
        raise InputError(f"{path} declares {_fmt(declared)} of pixels but the file has {_fmt(size)} "
                         f"({declared / max(size, 1):,.0f}x); it looks damaged or like a decompression bomb. If it "
                         f"is real, set NAPARI_MEDSEG_MAX_RATIO=0 and open it again.")


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
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - blosc, imagecodecs, zlib, OSError...
            region = ", ".join(f"{k.start or 0}:{k.stop}" if isinstance(k, slice) else str(k)
                               for k in (key if isinstance(key, tuple) else (key,)))
            raise InputError(f"{self._path}: the data at [{region}] cannot be decoded, the file is damaged "
                             f"({type(exc).__name__}: {str(exc)[:120]}).") from None


def checked_dask(arr: Any, path: str | os.PathLike, chunks=None, name: str | None = None):
    """``dask.array.from_array`` over :class:`CheckedChunks`, chunked like the store (or ``chunks``)."""
    import dask.array as da

    src = CheckedChunks(arr, path)
    return da.from_array(src, chunks=chunks or src.chunks or "auto", name=name or False, asarray=False,
                         fancy=False, meta=np.empty((0,) * src.ndim, dtype=src.dtype))
