"""The model registry: shipped models (``models/``) and the user's versioned models.

Layout, for both places: ``<root>/<name>/v0001.pt`` (+ ``v0001.json`` sidecar, and a
``MODEL_CARD.md`` for shipped models). User versions are never overwritten; a new
version always gets the next number. ``current.json`` in the user's folder for a
model points at the version in use; :func:`restore` moves that pointer back to any
earlier version.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import paths
from .checkpoints import atomic_write_json, load_model, save_checkpoint, sidecar_path
from .errors import InputError

_VERSION = re.compile(r"^v(\d{4,})\.pt$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: int
    path: Path
    source: str  # "shipped" or "user"
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.source})"

    def load(self, device: torch.device | str = "cpu"):
        return load_model(self.path, device)


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
                except (OSError, json.JSONDecodeError):
                    meta = {}
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

    def list(self, name: str | None = None, method: str | None = None) -> list[ModelEntry]:
        entries = _entries(self.shipped_root, "shipped") + _entries(self.user_root, "user")
        if name is not None:
            entries = [e for e in entries if e.name == name]
        if method is not None:
            entries = [e for e in entries if e.meta.get("method") == method]
        return sorted(entries, key=lambda e: (e.name, e.version, e.source))

    def names(self) -> list[str]:
        return sorted({e.name for e in self.list()})

    def get(self, name: str, version: int | None = None) -> ModelEntry:
        """A version, or the current one: the user's pointer, else the newest version."""
        versions = self.list(name)
        if not versions:
            raise InputError(f"No model called {name!r}; known models: {self.names() or 'none'}.")
        if version is None:
            version = self._pointer(name)
        if version is None:
            return versions[-1]
        for e in versions:
            if e.version == int(version):
                return e
        raise InputError(f"{name!r} has no version {version}; versions: {[e.version for e in versions]}.")

    def _pointer_path(self, name: str) -> Path:
        return self.user_root / name / "current.json"

    def _pointer(self, name: str) -> int | None:
        p = self._pointer_path(name)
        if p.is_file():
            try:
                return int(json.loads(p.read_text())["version"])
            except (OSError, ValueError, KeyError, json.JSONDecodeError):
                return None
        return None

    def save_new_version(self, name: str, state_dict: dict, **meta) -> ModelEntry:
        """Write the next version of ``name`` into the user's folder and make it current."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise InputError(f"Model names use letters, digits, '_', '-' and '.': {name!r}.")
        existing = [e.version for e in self.list(name)]
        version = max(existing, default=0) + 1
        target = self.user_root / name / f"v{version:04d}.pt"
        while target.exists():  # never overwrite, even if another process raced us
            version += 1
            target = self.user_root / name / f"v{version:04d}.pt"
        meta.setdefault("method", name)
        full = save_checkpoint(target, state_dict, version=version, **meta)
        atomic_write_json(self._pointer_path(name), {"version": version})
        _notify(name)
        return ModelEntry(name, version, target, "user", full)

    def restore(self, name: str, version: int) -> ModelEntry:
        """Make an earlier version current again (nothing is deleted)."""
        entry = self.get(name, version)
        atomic_write_json(self._pointer_path(name), {"version": entry.version})
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


def model_card_path(entry: ModelEntry) -> Path | None:
    card = entry.path.parent / "MODEL_CARD.md"
    return card if card.is_file() else None


__all__ = ["ModelEntry", "Registry", "model_card_path", "subscribe", "unsubscribe"]
