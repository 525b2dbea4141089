"""The model registry: shipped models (``models/``) and the user's versioned models.

Layout, for both places: ``<root>/<name>/v0001.pt`` (+ ``v0001.json`` sidecar, and a
``MODEL_CARD.md`` for shipped models). User versions are never overwritten; a new
version always gets the next number. ``current.json`` in the user's folder for a
model points at the version in use (and says whether it is the user's or the shipped
one); :func:`restore` moves that pointer back to any earlier version that loads.

Crash and race safety: a new version's number is reserved by creating
``vNNNN.lock`` exclusively (it holds the writer's pid), so two processes never write
the same version; weights and sidecar are each written atomically under it. The debris
of a killed save (a stale lock, its temp files, weights without a sidecar) is cleaned
up or completed by the next save. A damaged ``current.json`` is an error, never a
silent switch to another version. A new version becomes current only if its
validation is not worse than the current version's on the same validation set (or
the caller says ``make_current=True``); otherwise :attr:`ModelEntry.note` says why,
with both numbers and the command that switches.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import re
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import paths
from .checkpoints import atomic_write_json, file_sha256, load_checkpoint, load_model, save_checkpoint, sidecar_path
from .errors import InputError, MedsegError

#: while a trainer's save is described rather than done (:func:`recording_saves`), its calls land here
_RECORDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("medseg_recording_saves", default=None)

_VERSION = re.compile(r"^v(\d{4,})\.pt$")
_LOCK = re.compile(r"^v(\d{4,})\.lock$")
_TEMP = re.compile(r"^\.(v\d{4,}\.(?:pt|json)|current\.json)\..*\.tmp$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: int
    path: Path
    source: str  # "shipped" or "user"
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    made_current: bool = field(default=True, compare=False, hash=False)
    note: str = field(default="", compare=False, hash=False)  # why it was not made current

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.source})"

    def load(self, device: torch.device | str = "cpu"):
        return load_model(self.path, device)


@contextlib.contextmanager
def recording_saves():
    """Within it, :meth:`Registry.save_new_version` writes nothing: each call is appended
    to the yielded list as ``{"name", "state", "kwargs"}`` and answered with a pending
    entry whose version is ``-(its position)``. A training run uses it to describe, while
    it trains, the versions its save would write (see ``core.training.recover_run``)."""
    calls: list = []
    token = _RECORDING.set(calls)
    try:
        yield calls
    finally:
        _RECORDING.reset(token)


def _entries(root: Path, source: str) -> list[ModelEntry]:
    out = []
    if not root.is_dir():
        return out
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(model_dir.iterdir()):
            m = _VERSION.match(f.name)
            if not m:
                continue
            meta = {}
            side = sidecar_path(f)
            if side.is_file():
                try:
                    meta = json.loads(side.read_text())
                except (OSError, ValueError):
                    meta = {"damaged": f"{side.name} is not readable JSON"}
                if not isinstance(meta, dict):
                    meta = {"damaged": f"{side.name} does not hold a JSON object"}
            out.append(ModelEntry(model_dir.name, int(m.group(1)), f, source, meta))
    return out


_LISTENERS: list = []


def subscribe(callback):
    """Call ``callback(name)`` whenever a model version is added or restored (any thread).

    Bound methods are held weakly, so a closed widget simply stops listening.
    """
    ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else (lambda cb=callback: cb)
    _LISTENERS.append(ref)
    return ref


def unsubscribe(token) -> None:
    """Stop the listener that :func:`subscribe` returned ``token`` for."""
    if token in _LISTENERS:
        _LISTENERS.remove(token)


def _notify(name: str) -> None:
    for ref in list(_LISTENERS):
        cb = ref()
        if cb is None:
            _LISTENERS.remove(ref)
            continue
        cb(name)


class Registry:
    def __init__(self, shipped_root: Path | None = None, user_root: Path | None = None):
        self.shipped_root = Path(shipped_root) if shipped_root else paths.models_dir()
        self.user_root = Path(user_root) if user_root else paths.user_models_dir()
        #: what ``save_new_version(make_current=None)`` does: None compares validations,
        #: True always makes the new version current (``train --make-current``)
        self.make_current: bool | None = None

    def list(self, name: str | None = None, method: str | None = None) -> list[ModelEntry]:
        entries = _entries(self.shipped_root, "shipped") + _entries(self.user_root, "user")
        if name is not None:
            entries = [e for e in entries if e.name == name]
        if method is not None:
            entries = [e for e in entries if e.meta.get("method") == method]
        return sorted(entries, key=lambda e: (e.name, e.version, e.source))

    def names(self) -> list[str]:
        return sorted({e.name for e in self.list()})

    def get(self, name: str, version: int | None = None, source: str | None = None) -> ModelEntry:
        """A version (the user's before the shipped one of the same number, unless ``source``
        says), or the current one: the user's pointer, else the newest version."""
        versions = self.list(name)
        if not versions:
            raise InputError(f"No model called {name!r}; known models: {self.names() or 'none'}.")
        if version is None:
            pointer = self._pointer(name)
            if pointer is None:
                return versions[-1]
            version, source = pointer
        matches = [e for e in versions if e.version == int(version) and source in (None, e.source)]
        if matches:
            return next((e for e in matches if e.source == "user"), matches[0])
        raise InputError(f"{name!r} has no version {version}; versions: {[e.version for e in versions]}.")

    def _pointer_path(self, name: str) -> Path:
        return self.user_root / name / "current.json"

    def _pointer(self, name: str) -> tuple[int, str | None] | None:
        """``(version, source)`` from ``current.json``; None when there is none. A damaged or
        dangling pointer raises: switching to another version silently would undo a rollback."""
        p = self._pointer_path(name)
        if not p.is_file():
            return None
        fix = f"`napari-medseg models restore {name} VERSION` sets it again"
        try:
            doc = json.loads(p.read_text())
            version = int(doc["version"])
            source = doc.get("source")
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{p} (which version of {name} is current) is damaged; {fix}.") from None
        if source not in (None, "user", "shipped"):
            raise InputError(f"{p} names an unknown source {source!r}; {fix}.")
        if not any(e.version == version and source in (None, e.source) for e in self.list(name)):
            raise InputError(f"{p} points at {name} v{version}, which is not there any more; {fix}.")
        return version, source

    def _write_pointer(self, entry: ModelEntry) -> None:
        atomic_write_json(self._pointer_path(entry.name), {"version": entry.version, "source": entry.source})

    # ------------------------------------------------------------------ saving
    def _reserve(self, folder: Path, name: str) -> tuple[int, Path]:
        """The next free version number, reserved by creating ``vNNNN.lock`` exclusively."""
        folder.mkdir(parents=True, exist_ok=True)
        version = max((e.version for e in self.list(name)), default=0) + 1
        while True:
            lock = folder / f"v{version:04d}.lock"
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                version += 1
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            taken = (folder / f"v{version:04d}.pt").exists() or (self.shipped_root / name / f"v{version:04d}.pt").exists()
            if not taken:
                return version, lock
            lock.unlink(missing_ok=True)  # finished by another writer meanwhile
            version += 1

    def clean(self, name: str) -> list[str]:
        """Clear the debris of killed saves in the user's folder for ``name``: stale locks and
        temp files are removed, weights left without a sidecar get it back. Returns what it did."""
        folder = self.user_root / name
        done: list[str] = []
        if not folder.is_dir():
            return done
        live = set()
        for f in folder.iterdir():
            m = _LOCK.match(f.name)
            if not m:
                continue
            if _lock_in_progress(f):
                live.add(int(m.group(1)))
            elif f.exists():  # (not a save that finished meanwhile)
                f.unlink(missing_ok=True)
                done.append(f"removed stale {f.name}")
        for f in folder.iterdir():
            m = _TEMP.match(f.name)
            if not m:
                continue
            v = re.match(r"v(\d+)", m.group(1))
            if v:  # a writer takes its lock before it makes its temp files, so a version whose lock
                version = int(v.group(1))  # is in progress *now* is busy, even if reserved after the scan above
                busy = version in live or _lock_in_progress(folder / f"v{version:04d}.lock")
            else:
                busy = bool(live) or time.time() - f.stat().st_mtime < 60
            if not busy:
                f.unlink(missing_ok=True)
                done.append(f"removed {f.name}")
        for f in folder.iterdir():
            m = _VERSION.match(f.name)
            if m and int(m.group(1)) not in live and not sidecar_path(f).exists():
                try:
                    _, meta = load_checkpoint(f)
                except MedsegError:
                    continue  # listed as damaged; never deleted
                atomic_write_json(sidecar_path(f), {**meta, "sha256": file_sha256(f), "recovered_sidecar": True})
                done.append(f"rewrote the sidecar of {f.name}")
        return done

    def save_new_version(self, name: str, state_dict: dict, *, monitor: str | None = None, mode: str = "max",
                         make_current: bool | None = None, **meta) -> ModelEntry:
        """Write the next version of ``name`` into the user's folder; returns its entry.

        It becomes current when ``make_current`` is True, never when it is False (the caller
        decides later, e.g. after its own comparison), or (``None``) unless its
        ``metrics[monitor]`` is worse than the current version's measured on the same
        ``validation`` set (``extra={"validation": ...}``); then ``entry.note`` says so.
        """
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise InputError(f"Model names use letters, digits, '_', '-' and '.': {name!r}.")
        recording = _RECORDING.get()
        if recording is not None:  # described, not written (see recording_saves)
            recording.append({"name": name, "state": state_dict, "kwargs": {"monitor": monitor, "mode": mode, **meta}})
            return ModelEntry(name, -len(recording), Path(), "pending", dict(meta))
        if make_current is None:
            make_current = self.make_current
        folder = self.user_root / name
        folder.mkdir(parents=True, exist_ok=True)
        self.clean(name)
        meta.setdefault("method", name)
        try:
            previous = self.get(name)
        except InputError:
            previous = None
        version, lock = self._reserve(folder, name)
        try:
            target = folder / f"v{version:04d}.pt"
            full = save_checkpoint(target, state_dict, version=version, **meta)
            entry = ModelEntry(name, version, target, "user", full)
            note = "" if make_current is not None else self._worse_than_current(entry, monitor, mode)
            made = bool(make_current) if make_current is not None else not note
            if made:
                self._write_pointer(entry)
            elif previous is not None and not self._pointer_path(name).is_file():
                self._write_pointer(previous)  # without a pointer the newest version would count as current
        finally:
            lock.unlink(missing_ok=True)
        _notify(name)
        return ModelEntry(name, version, target, "user", full, made_current=made, note=note)

    def _worse_than_current(self, new: ModelEntry, monitor: str | None, mode: str) -> str:
        """A sentence when ``new`` validates worse than the current version, else ""."""
        if monitor is None:
            return ""
        try:
            cur = self.get(new.name)
        except InputError:
            return ""  # no usable current version: the new one takes over
        if cur.path == new.path:
            return ""
        a, b = new.meta.get("metrics", {}).get(monitor), cur.meta.get("metrics", {}).get(monitor)
        same_set = new.meta.get("validation") == cur.meta.get("validation")
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and same_set) or not math.isfinite(b):
            return ""
        worse = (a < b) if mode == "max" else (a > b)
        if not (worse or not math.isfinite(a)):
            return ""
        return (f"saved {new.label} with validation {monitor} {a:.4g}; the current {cur.label} has {b:.4g}, "
                f"so v{cur.version} stays current. To use the new one: "
                f"napari-medseg models restore {new.name} {new.version}")

    def restore(self, name: str, version: int, source: str | None = None) -> ModelEntry:
        """Make another version current (nothing is deleted); one that does not load is refused."""
        entry = self.get(name, version, source)
        try:
            entry.load()
        except MedsegError as exc:
            raise InputError(f"{entry.label} cannot be made current: {exc}") from None
        self._write_pointer(entry)
        _notify(name)
        return entry

    def previous_version(self, name: str) -> int:
        """The version just before the current one (what a rollback goes back to)."""
        versions = [e.version for e in self.list(name)]
        if not versions:
            raise InputError(f"There is no {name} model to roll back to yet.")
        cur = self.get(name).version
        earlier = [v for v in versions if v < cur]
        if not earlier:
            raise InputError(f"v{cur} is the first version of {name}; there is nothing earlier.")
        return earlier[-1]

    def current(self, name: str) -> ModelEntry:
        return self.get(name)


def _pid_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def _lock_in_progress(lock: Path) -> bool:
    """Whether a version lock belongs to a save still running: its writer's pid is alive, or
    it is still empty and younger than a minute (just created; the pid is about to be written)."""
    try:
        pid = int(lock.read_text().strip() or "0")
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False  # the save finished (or the lock was cleared) meanwhile
    except (OSError, ValueError):
        pid, age = 0, 0.0  # not readable yet: treat as in progress
    return bool((pid and _pid_alive(pid)) or (not pid and age < 60))


def model_card_path(entry: ModelEntry) -> Path | None:
    card = entry.path.parent / "MODEL_CARD.md"
    return card if card.is_file() else None


__all__ = ["ModelEntry", "Registry", "model_card_path", "subscribe", "unsubscribe"]
