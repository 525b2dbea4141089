"""Outputs never cost the user anything: checks before a write, and results marked complete.

:func:`check_output_path` refuses an output that is (inside) an input, sits in a
missing folder, or exists and is not a complete napari-medseg result (unless the
caller passes ``overwrite=True``; even then an input is never replaced).

Directory results (zarr groups) are written through :class:`PendingResult`: a fresh
path is written in place with ``complete: false`` in its attributes (so a viewer can
show it filling) and flipped to ``true`` last; an existing result being overwritten is
written to a sibling ``OUT.tmp-<pid>-<random>`` and swapped in only when complete. A
run that is killed therefore leaves either the previous result untouched or a store
that says it is incomplete, which every reader refuses.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from .errors import InputError

ATTR = "napari_medseg"


def _resolved(p) -> Path:
    return Path(os.path.abspath(os.fspath(p)))


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def result_attrs(path) -> dict | None:
    """The napari-medseg attributes of the zarr group at ``path``, or None if it is not one."""
    from .io.omezarr import group_attrs

    info = (group_attrs(path) or {}).get(ATTR)
    return info if isinstance(info, dict) else None


def is_complete_result(path) -> bool:
    """True for a finished result; results written before completion was recorded count as finished."""
    info = result_attrs(path)
    return bool(info) and info.get("complete", True) is True


def check_output_path(out, inputs=(), overwrite: bool = False, what: str = "output") -> Path:
    """Refuse (one :class:`InputError` line) an output that would destroy what the user has."""
    out = _resolved(out)
    for src in inputs:
        if src is None or not isinstance(src, (str, os.PathLike)):
            continue
        src = _resolved(src)
        if _inside(out, src) or _inside(src, out):
            raise InputError(f"The {what} {out} is the input {src} (or holds it); choose another path.")
    if not out.parent.is_dir():
        raise InputError(f"The folder {out.parent} does not exist; create it or choose another {what} path.")
    if out.is_dir() and result_attrs(out) is None and any(out.iterdir()):
        raise InputError(f"{out} is a folder that is not a napari-medseg result; napari-medseg never replaces "
                         f"such a folder (not even with --overwrite): choose a new path.")
    if out.exists() and not overwrite:
        if out.is_dir() and result_attrs(out) is not None:
            state = "a finished" if is_complete_result(out) else "an incomplete"
            raise InputError(f"{out} is {state} napari-medseg result already; pass --overwrite to replace it.")
        if out.is_dir():
            raise InputError(f"{out} is an existing folder that is not a napari-medseg result; it is left "
                             f"alone: choose a new path (or pass --overwrite to replace it).")
        raise InputError(f"{out} exists; it is left alone: choose a new path (or pass --overwrite to replace it).")
    return out


def _pid_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def remove_stale_siblings(out: Path) -> None:
    """Temp folders of earlier writes to ``out`` whose process is gone."""
    for tmp in out.parent.glob(f"{out.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


class PendingResult:
    """A directory result being written: ``path`` is where to write, :meth:`commit` finishes it."""

    def __init__(self, out, inputs=(), overwrite: bool = False):
        self.final = check_output_path(out, inputs, overwrite)
        remove_stale_siblings(self.final)
        self.replacing = self.final.exists()
        self.path = (self.final.parent / f"{self.final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                     if self.replacing else self.final)

    def commit(self, **info) -> Path:
        """Mark the result complete (the last write), then swap it in if it replaces one."""
        import zarr

        group = zarr.open_group(str(self.path), mode="r+")
        attrs = dict(group.attrs.get(ATTR, {}))
        attrs.update(info, complete=True)
        group.attrs[ATTR] = attrs
        if self.replacing:
            old = self.final.parent / f"{self.final.name}.tmp-{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
            if self.final.is_dir():
                os.rename(self.final, old)
            else:
                os.replace(self.final, old)
            os.rename(self.path, self.final)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
        from .atomic import fsync_dir

        fsync_dir(self.final.parent)
        return self.final

    def abort(self) -> None:
        """Remove a replacement that did not finish (the previous result stays as it was)."""
        if self.replacing and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


def check_file_output(out, inputs=(), overwrite: bool = False, what: str = "output") -> Path:
    """:func:`check_output_path` for single files (SWC, CSV, TIFF, NIfTI written atomically)."""
    out = _resolved(out)
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file name for the {what}.")
    return check_output_path(out, inputs, overwrite, what)


def write_csv(path, records: list[dict], inputs=(), what: str = "table") -> Path:
    """``records`` (one dict per row; the columns are every key, in first-seen order) as a
    CSV file at ``path``, written atomically and never over an existing file."""
    import csv
    import io

    from .atomic import atomic_path

    path = check_output_path(path, inputs, what=what)
    if path.suffix.lower() != ".csv":
        raise InputError(f"A {what} is written as .csv, not {path.name!r}.")
    keys: list[str] = []
    for rec in records:
        keys += [k for k in rec if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(records)
    with atomic_path(path, suffix=".tmp.csv") as tmp:
        Path(tmp).write_text(buf.getvalue())
    return path
