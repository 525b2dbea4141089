"""Where shipped models, sample data and the user's own models live.

A wheel carries ``models/`` and ``sample_data/`` under ``napari_medseg/_bundled``; an
editable install or a source checkout finds them at the repository top level.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

_PKG = Path(__file__).resolve().parents[1]


def _bundled(name: str) -> Path:
    inside = _PKG / "_bundled" / name
    if inside.is_dir():
        return inside
    return _PKG.parent / name


def models_dir() -> Path:
    """Shipped weights and model cards."""
    return _bundled("models")


def sample_data_dir() -> Path:
    """Small sample files and the synthetic generators' settings."""
    return _bundled("sample_data")


def user_data_dir() -> Path:
    """Per-user data (trained models); ``NAPARI_MEDSEG_HOME`` overrides it."""
    env = os.environ.get("NAPARI_MEDSEG_HOME")
    path = Path(env) if env else Path(platformdirs.user_data_dir("napari-medseg"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_models_dir() -> Path:
    path = user_data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Derived data that can be rebuilt (pyramids of single-level TIFFs)."""
    env = os.environ.get("NAPARI_MEDSEG_HOME")
    path = Path(env) / "cache" if env else Path(platformdirs.user_cache_dir("napari-medseg"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def safe_name(name, default: str) -> str:
    """``name`` as a file or group name: runs of anything but letters, digits, ``_ . -``
    become ``_``, no leading or trailing dots/underscores; ``default`` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name or "")).strip("._") or default
