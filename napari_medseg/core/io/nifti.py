"""NIfTI (.nii / .nii.gz): lazy reading through nibabel's array proxy, atomic label writing.

Axes: the dask array keeps nibabel's voxel order (i, j, k), which the affine maps to
world (RAS+) millimetres. napari gets that placement as ``scale`` + ``translate`` when
the affine's 3x3 part is diagonal with positive entries. A rotation, a shear or a
flipped (negative) axis cannot be expressed that way (napari wants positive scales),
so then ``meta["scale"]`` and ``meta["translate"]`` are ``None`` and
``meta["napari_affine"]`` holds the full homogeneous affine to give the layer instead.
``meta["affine"]`` is always the file's 4x4 affine, used again when labels are saved.

A 4-D file (several modalities, or time) is returned with its 4th axis moved first,
as napari's channel axis: ``meta["channel_axis"] == 0`` and ``scale``/``translate``/
``napari_affine`` describe the three spatial axes of each channel.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError, MemoryPreflightError
from .guard import check_declared_size, one_line
from .nifti_cache import _decompressed, _unreadable
from .validate import as_labels, check_pixel_dtype

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_CHUNK_BYTES = 32 * 2**20  # uncompressed files: slabs read straight from disk


def is_nifti(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(NIFTI_SUFFIXES)


class _Proxy:
    """nibabel's ArrayProxy with the dtype it really returns (scaling turns ints into floats).

    A read that fails later (the file changed, was cut short, or its decompressed copy
    left the cache) raises one InputError naming ``path``, not a raw exception in dask.
    """

    def __init__(self, proxy: Any, dtype: np.dtype, path: str | os.PathLike = ""):
        self._proxy = proxy
        self._path = str(path)
        self.shape = tuple(int(s) for s in proxy.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key):
        try:
            return np.asarray(self._proxy[key], dtype=self.dtype)
        except MemoryError:
            raise MemoryPreflightError(f"{self._path}: not enough memory to read this part of it; close other "
                                       f"programs or use a smaller tile.") from None
        except Exception as exc:  # noqa: BLE001 - OSError, ValueError from a short mmap...
            raise InputError(f"{self._path}: its voxels can no longer be read ({type(exc).__name__}: "
                             f"{one_line(exc, 120)}); the file (or its decompressed copy in the cache) changed "
                             f"or vanished since it was opened: open it again.") from None


@contextlib.contextmanager
def _quiet_nibabel():
    """nibabel logs each header fix it makes ("sizeof_hdr should be 348...") to stderr."""
    from nibabel.imageglobals import logger

    disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


def _check_complete(path: Path, img: Any, proxy: Any) -> None:
    """Truncated files: the byte count (or gzip's stored length) must cover the data."""
    need = int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * img.get_data_dtype().itemsize
    size = path.stat().st_size
    if not str(path).lower().endswith(".gz"):
        if size < need:
            raise _unreadable(path, f"the file is truncated ({size} bytes, the header needs {need})")
        return
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 4))
        isize = int.from_bytes(fh.read(4), "little")
    if isize == need % 2**32:
        return
    # the gzip trailer disagrees (truncated, or a multi-member gzip): read the last voxels
    try:
        proxy[(slice(-1, None),) * len(proxy.shape)]
    except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, OSError...
        raise _unreadable(path, f"the compressed data is truncated or corrupt ({exc})") from None


def _napari_placement(affine: np.ndarray, n: int) -> tuple[list | None, list | None, list | None]:
    """(scale, translate, napari_affine) for the first ``n`` (<= 3) voxel axes."""
    lin = affine[:n, :n]
    off = lin - np.diag(np.diag(lin))
    diag = np.diag(lin)
    tol = 1e-6 * max(1.0, float(np.abs(diag).max(initial=0.0)))
    coupled = np.abs(affine[:n, n:3]).max(initial=0.0) > tol or np.abs(affine[n:3, :n]).max(initial=0.0) > tol
    if np.abs(off).max(initial=0.0) <= tol and (diag > 0).all() and not coupled:
        return [float(v) for v in diag], [float(v) for v in affine[:n, 3]], None
    full = np.eye(n + 1)
    full[:n, :n] = lin
    full[:n, n] = affine[:n, 3]
    return None, None, full.tolist()


def read_nifti(path: str | os.PathLike) -> tuple[Any, dict]:
    """Open a .nii/.nii.gz lazily: ``(dask_array, meta)``; see the module docstring for axes."""
    import dask.array as da
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with _quiet_nibabel():
            img = nib.load(str(path))
        proxy = img.dataobj
        shape = tuple(int(s) for s in proxy.shape)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds
        raise _unreadable(path, str(exc) or type(exc).__name__) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise _unreadable(path, f"it holds a {type(img).__name__}")
    if any(s < 0 for s in shape):
        raise _unreadable(path, f"its header declares a negative size {shape}")
    check_pixel_dtype(path, img.get_data_dtype())
    gz = str(path).lower().endswith(".gz")
    check_declared_size(path, shape, img.get_data_dtype(), gzip=gz)
    data_path = path
    if gz:
        # gzip has no random access: each lazy chunk would decompress from the start
        # (minutes for a big volume), so the data is decompressed once into the cache
        need = int(proxy.offset) + int(np.prod(shape, dtype=np.int64)) * img.get_data_dtype().itemsize
        data_path = _decompressed(path, need)
        try:
            with _quiet_nibabel():
                img = nib.load(str(data_path))
            proxy = img.dataobj
        except Exception as exc:  # noqa: BLE001
            raise _unreadable(path, str(exc) or type(exc).__name__) from None
    _check_complete(data_path, img, proxy)

    # (X, Y, Z, 1) and (X, Y, Z, 1, 1) are plain volumes
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 2 or len(shape) > 4:
        raise InputError(f"{path} is a {len(shape)}-D NIfTI image; 2-D, 3-D or 4-D images are supported")
    if 0 in shape:
        raise InputError(f"{path} is empty (shape {shape})")
    try:
        probe = np.asarray(proxy[(slice(0, 1),) * len(proxy.shape)])
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, str(exc) or type(exc).__name__) from None
    source = _Proxy(proxy, probe.dtype, path)
    if source.shape != shape:
        source = _Reshaped(source, shape)

    limit = _CHUNK_BYTES  # .nii.gz data is read from its decompressed copy
    chunks = list(shape)
    if len(shape) == 4:
        chunks[3] = 1  # one chunk per channel / time point
    if len(shape) >= 3:  # slabs along k, the slowest axis on disk
        per_k = shape[0] * shape[1] * source.dtype.itemsize
        chunks[2] = max(1, min(shape[2], limit // max(1, per_k)))
    st = path.stat()
    token = hashlib.sha1(repr((str(path.resolve()), st.st_size, st.st_mtime_ns)).encode()).hexdigest()
    arr = da.from_array(
        source,
        chunks=tuple(chunks),
        name=f"nifti-{token}",
        meta=np.empty((0,) * len(shape), dtype=source.dtype),
        asarray=False,
        fancy=False,
    )

    header = img.header
    affine, affine_source = _usable_affine(path, img)
    zooms = [float(z) if np.isfinite(z) else None for z in header.get_zooms()]  # the placement is the affine
    n = min(len(shape), 3)
    scale, translate, napari_affine = _napari_placement(affine, n)
    names = ["x", "y", "z"][:n]
    channel_axis = None
    if len(shape) == 4:
        arr = da.moveaxis(arr, 3, 0)
        time_unit = header.get_xyzt_units()[1]
        names = ["t" if time_unit not in (None, "unknown") else "c", *names]
        channel_axis = 0
    try:
        orientation = "".join(nib.aff2axcodes(affine))
    except Exception:  # noqa: BLE001 - degenerate affine
        orientation = None
    meta = {
        "affine": affine.tolist(),
        "scale": scale,
        "translate": translate,
        "napari_affine": napari_affine,
        "axis_names": names,
        "channel_axis": channel_axis,
        "orientation": orientation,
        "zooms": zooms,
        "source_path": str(path),
        "affine_source": affine_source,
        "format": "nifti",
        "rgb": False,
        "pyramid": "none",
    }
    return arr, meta


def _usable_affine(path: Path, img: Any) -> tuple[np.ndarray, str]:
    """The voxel-to-world affine, never NaN or singular: the sform, else a valid qform."""

    def ok(a) -> bool:
        a = np.asarray(a, dtype=np.float64)
        return a.shape == (4, 4) and bool(np.isfinite(a).all()) and abs(np.linalg.det(a[:3, :3])) > 1e-12

    header = img.header
    with np.errstate(all="ignore"):
        affine = np.asarray(img.affine, dtype=np.float64)
        if ok(affine):
            return affine, "sform" if int(header["sform_code"]) > 0 else ("qform" if int(header["qform_code"]) > 0
                                                                           else "voxel sizes")
        qform, qcode = header.get_qform(coded=True)
    if qform is not None and int(qcode) > 0 and ok(qform):
        return np.asarray(qform, dtype=np.float64), "qform (the sform is unusable)"
    raise InputError(f"{path}: its voxel-to-world orientation (sform/qform) has NaN or a zero-size axis, so "
                     f"its voxels cannot be placed; fix the header (e.g. with nibabel or fslorient) first.")


class _Reshaped:
    """A proxy whose trailing singleton axes are dropped (read whole, then reshaped)."""

    def __init__(self, inner: _Proxy, shape: tuple[int, ...]):
        self._inner = inner
        self.shape = shape
        self.ndim = len(shape)
        self.dtype = inner.dtype

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        extra = (0,) * (self._inner.ndim - self.ndim)
        return self._inner[tuple(key) + extra]


def _nifti_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    if name.endswith(".nii"):
        return ".nii"
    raise InputError(f"{path}: NIfTI labels must be saved as .nii or .nii.gz")


def write_nifti(
    path: str | os.PathLike,
    labels: Any,
    affine: Any,
    like_header: Any = None,
) -> Path:
    """Write ``labels`` (voxel order i, j, k) with ``affine`` to .nii/.nii.gz, atomically.

    The dtype is uint8 when the labels fit, else int16, else int32. ``like_header`` (a
    nibabel header, e.g. the source image's) supplies units and sform/qform codes. The
    file is written to a temporary name in the same folder, then renamed over ``path``.
    """
    import nibabel as nib

    path = Path(path)
    suffix = _nifti_suffix(path)
    data = np.asarray(as_labels(labels, str(path)))
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.isfinite(aff).all():
        raise InputError(f"{path}: the affine must be a finite 4x4 matrix, got shape {aff.shape}")
    header = like_header.copy() if like_header is not None else None
    img = nib.Nifti1Image(data, aff, header=header)
    img.set_data_dtype(data.dtype)
    hdr = img.header
    sform_code = int(header["sform_code"]) if header is not None and "sform_code" in header else 0
    qform_code = int(header["qform_code"]) if header is not None and "qform_code" in header else 0
    img.set_sform(aff, code=sform_code or 2)
    img.set_qform(aff, code=qform_code or 1)
    hdr.set_slope_inter(1.0, 0.0)
    hdr.set_intent("label")
    hdr["cal_min"], hdr["cal_max"] = float(data.min()), float(data.max())

    with atomic_path(path, suffix=f".tmp{suffix}") as tmp:
        img.to_filename(tmp)
    return path


def header_of(path: str | os.PathLike) -> Any:
    """The header of a NIfTI file (no voxel data read), or None when it cannot be read."""
    import nibabel as nib

    try:
        return nib.load(str(path)).header
    except Exception:  # noqa: BLE001
        return None
