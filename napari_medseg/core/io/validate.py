"""Input checks shared by the readers and the engine: empty arrays, dimensions, NaN/inf.

Every failure raises :class:`~napari_medseg.core.errors.InputError` with one plain
sentence that names the input (``name`` is a file path or a layer name).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

#: dask arrays at most this large are checked for NaN/inf in :func:`check_array`;
#: larger ones are checked tile by tile by the caller with :func:`assert_finite`.
LAZY_FINITE_LIMIT = 256 * 2**20

_SLAB_BYTES = 64 * 2**20


def _is_dask(arr: Any) -> bool:
    return type(arr).__module__.startswith("dask.") and hasattr(arr, "dask")


def _nbytes(arr: Any) -> int:
    return int(np.prod(arr.shape, dtype=np.int64)) * np.dtype(arr.dtype).itemsize


def _dims(ndim: int | tuple[int, ...]) -> str:
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    words = [f"{n}-D" for n in allowed]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _can_hold_nan(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating)


def _count_bad(block: np.ndarray) -> tuple[int, int]:
    return int(np.count_nonzero(np.isnan(block))), int(np.count_nonzero(np.isinf(block)))


def _finite_message(where: str, n_nan: int, n_inf: int) -> str:
    return (
        f"{where} contains NaN or infinite values ({n_nan} NaN, {n_inf} infinite); "
        "replace or mask them before running"
    )


def assert_finite(block: Any, where: str) -> None:
    """Raise InputError if the (in-memory) ``block`` holds NaN or inf.

    For arrays too large for :func:`check_array` to scan eagerly: callers run this on
    each tile as they read it, with ``where`` naming the file and the tile.
    """
    block = np.asarray(block)
    if not _can_hold_nan(block.dtype) or block.size == 0:
        return
    if np.isfinite(block).all():
        return
    n_nan, n_inf = _count_bad(block)
    raise InputError(_finite_message(where, n_nan, n_inf))


def _check_finite_numpy(arr: np.ndarray, name: str) -> None:
    if arr.ndim == 0 or _nbytes(arr) <= _SLAB_BYTES:
        assert_finite(arr, name)
        return
    # slab by slab along the first axis so the boolean temporaries stay small
    row_bytes = max(1, _nbytes(arr) // arr.shape[0])
    step = max(1, _SLAB_BYTES // row_bytes)
    n_nan = n_inf = 0
    for start in range(0, arr.shape[0], step):
        slab = arr[start : start + step]
        if not np.isfinite(slab).all():
            a, b = _count_bad(slab)
            n_nan, n_inf = n_nan + a, n_inf + b
    if n_nan or n_inf:
        raise InputError(_finite_message(name, n_nan, n_inf))


def _check_finite_dask(arr: Any, name: str) -> None:
    import dask
    import dask.array as da

    if _nbytes(arr) >= LAZY_FINITE_LIMIT:
        return  # checked per tile by the caller (assert_finite)
    n_nan, n_inf = dask.compute(da.isnan(arr).sum(), da.isinf(arr).sum())
    if n_nan or n_inf:
        raise InputError(_finite_message(name, int(n_nan), int(n_inf)))


def check_array(
    arr: Any,
    name: str,
    ndim: int | tuple[int, ...] | None = None,
    allow_empty: bool = False,
    check_finite: bool = True,
) -> Any:
    """Check a numpy or dask array and return it unchanged.

    Raises InputError when the array is empty (unless ``allow_empty``), when its number
    of dimensions is not ``ndim`` (an int or a tuple of allowed values), or when it
    holds NaN/inf (float arrays only; dask arrays of 256 MiB or more are left to the
    caller, who checks each tile with :func:`assert_finite`).
    """
    if arr is None:
        raise InputError(f"{name}: no image data")
    if not (hasattr(arr, "shape") and hasattr(arr, "dtype") and hasattr(arr, "ndim")):
        try:
            arr = np.asarray(arr)
        except Exception as exc:  # noqa: BLE001 - anything unconvertible is bad input
            raise InputError(f"{name}: not an array ({type(arr).__name__}): {exc}") from None
    shape = tuple(int(s) for s in arr.shape)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise InputError(
                f"{name} must be a {_dims(ndim)} image, but it is {arr.ndim}-D "
                f"(shape {shape})"
            )
    if not allow_empty and (arr.ndim == 0 or 0 in shape):
        raise InputError(f"{name} is empty (shape {shape}): there is no image data to use")
    if np.dtype(arr.dtype).kind not in "biufc":
        raise InputError(f"{name} has an unsupported data type {arr.dtype}; expected numbers")
    if check_finite and _can_hold_nan(np.dtype(arr.dtype)) and 0 not in shape:
        if _is_dask(arr):
            _check_finite_dask(arr, name)
        else:
            _check_finite_numpy(np.asarray(arr), name)
    return arr


def label_dtype(lo: int, hi: int) -> np.dtype:
    """Smallest dtype for labels in [lo, hi]: uint8, else int16, else int32."""
    if lo >= 0 and hi < 256:
        return np.dtype(np.uint8)
    if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
        return np.dtype(np.int16)
    if lo >= np.iinfo(np.int32).min and hi <= np.iinfo(np.int32).max:
        return np.dtype(np.int32)
    raise InputError(f"label values {lo}..{hi} do not fit in 32-bit integers")


def as_labels(labels: Any, name: str) -> Any:
    """Labels as integers of the smallest fitting dtype (see label_dtype).

    numpy in, numpy out; a dask array stays lazy (its min/max are computed chunk-wise).
    """
    check_array(labels, name, check_finite=False)
    lazy = _is_dask(labels)
    arr = labels if lazy else np.asarray(labels)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bool(bad.any().compute() if lazy else bad.any()):
            raise InputError(f"{name}: labels must be whole numbers, found fractional or NaN values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: labels must be integers, found {arr.dtype}")
    if lazy:
        import dask

        lo, hi = (int(v) for v in dask.compute(arr.min(), arr.max()))
    else:
        lo, hi = int(arr.min()), int(arr.max())
    dtype = label_dtype(lo, hi)
    return arr if arr.dtype == dtype else arr.astype(dtype)


def check_pixel_dtype(path: Any, dtype: Any) -> None:
    """Refuse pixel types a reader cannot hand on faithfully: complex, structured (e.g. RGB24), text.

    Complex values are never cast to real (numpy would silently drop the imaginary part).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(f"{path} holds complex values; take their magnitude (or real part) first, "
                         f"napari-medseg does not drop the imaginary part silently.")
    if dtype.kind not in "biuf":
        what = "packed colour (RGB) records" if dtype.fields else f"values of type {dtype}"
        raise InputError(f"{path} holds {what}, not plain numbers; convert it to a numeric image first "
                         f"(colour as a last axis of 3).")
