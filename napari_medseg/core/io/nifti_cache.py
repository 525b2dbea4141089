"""The cache of decompressed ``.nii.gz`` files: read in parts, a compressed NIfTI is first
decompressed once (sparse, atomic, pruned to the most recently used few)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from ..errors import InputError
from .guard import one_line


def _unreadable(path: Path, why: str) -> InputError:
    return InputError(f"{path} is not a readable NIfTI file: {one_line(why)}")


#: the decompressed copies of .nii.gz files kept in the cache (most recently used first)
NIFTI_CACHE_FILES = 32
NIFTI_CACHE_BYTES = 32 * 2**30
_BLOCK = 8 * 2**20
_ZEROS = bytes(_BLOCK)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _decompressed(path: Path, need: int) -> Path:
    """``path`` (.nii.gz) decompressed once into the cache; corrupt or truncated gzip -> InputError.

    Stored as ``cache_dir()/nifti/<sha1 of (absolute path, size, mtime_ns)>.nii``, written
    to a temporary name and renamed when complete, so a killed run leaves no half copy
    (its temporary file is removed at the next open). Runs of zeros become holes of a
    sparse file: a volume of mostly zeros costs neither disk nor write time.
    """
    import gzip
    import zlib

    from ..paths import cache_dir

    st = path.stat()
    key = hashlib.sha1(repr((str(path.resolve()), st.st_size, st.st_mtime_ns)).encode()).hexdigest()
    root = cache_dir() / "nifti"
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    final = root / f"{key}.nii"
    if final.is_file() and final.stat().st_size >= need:
        os.utime(final)  # recently used
        return final
    free = shutil.disk_usage(root).free
    if need > free:
        raise InputError(f"{path} must be decompressed once to be read in parts, but the cache {root} has only "
                         f"{free / 2**30:.1f} GiB free for its {need / 2**30:.1f} GiB; free some space, or "
                         f"decompress it yourself (gunzip) and open the .nii.")
    tmp = root / f".{key}.nii.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            copied = 0
            while copied < need + 2**20:  # a bomb stops at what the header declares
                block = src.read(_BLOCK)
                if not block:
                    break
                if block == _ZEROS[: len(block)]:
                    dst.seek(len(block), os.SEEK_CUR)  # a hole
                else:
                    dst.write(block)
                copied += len(block)
            dst.truncate(copied)
            if copied < need:
                raise _unreadable(path, f"the compressed data is truncated ({copied} of {need} bytes)")
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, final)
    except InputError:
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        if isinstance(exc, OSError) and (exc.filename == str(tmp) or exc.errno in _WRITE_ERRNOS):
            raise InputError(f"{path} could not be decompressed into the cache {root} ({one_line(exc)}); free "
                             f"some space, or decompress it yourself (gunzip) and open the .nii.") from None
        raise _unreadable(path, f"the compressed data is truncated or corrupt ({type(exc).__name__})") from None
    finally:
        tmp.unlink(missing_ok=True)
    _prune(root, keep=final)
    return final


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Half-written ``.*.tmp-PID-*`` copies in ``root`` whose process is gone."""
    from .pyramid import writer_gone

    removed = []
    for tmp in root.glob(".*.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
            born = tmp.stat().st_ctime
        except (IndexError, ValueError, OSError):
            continue
        if pid != os.getpid() and writer_gone(pid, born):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _prune(root: Path, keep: Path, max_files: int | None = None, max_bytes: float | None = None) -> None:
    """Keep the cache of decompressed volumes to the most recently used few (by count and size)."""
    max_files = NIFTI_CACHE_FILES if max_files is None else max_files
    max_bytes = NIFTI_CACHE_BYTES if max_bytes is None else max_bytes
    files = []
    for f in root.glob("*.nii"):
        try:
            st = f.stat()
        except OSError:
            continue
        files.append((st.st_mtime, getattr(st, "st_blocks", 0) * 512 or st.st_size, f))
    files.sort(key=lambda t: t[0], reverse=True)
    total = 0
    for i, (_, size, f) in enumerate(files):
        total += size
        if f != keep and (i >= max_files or total > max_bytes):
            f.unlink(missing_ok=True)
