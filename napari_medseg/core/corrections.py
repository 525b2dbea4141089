"""The interactive loop's bookkeeping: autosave what the user painted, weigh it in training.

Nothing a user painted is ever lost: corrections are written (atomically, never
overwriting) before any retraining starts, and pixels the user changed weigh more than
pixels where the model's prediction was left as it was.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import paths
from .errors import InputError


def corrections_dir(model_name: str) -> Path:
    path = paths.user_data_dir() / "corrections" / model_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def autosave_corrections(labels, folder: Path, meta: dict | None = None) -> Path:
    """Write ``labels`` to ``folder/corrections_NNNN.zarr`` (+ .json); return its path."""
    import zarr

    labels = np.asarray(labels)
    if labels.size == 0:
        raise InputError("The corrected labels layer is empty.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(p.stem.split("_")[1]) for p in folder.glob("corrections_*.zarr")), default=0)
    target = folder / f"corrections_{n:04d}.zarr"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".corrections-"))
    try:
        z = zarr.open_array(str(tmp / "data.zarr"), mode="w", shape=labels.shape, dtype=labels.dtype,
                            chunks=tuple(min(1024, s) for s in labels.shape))
        z[...] = labels
        os.replace(tmp / "data.zarr", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "shape": list(labels.shape),
            **(meta or {})}
    (folder / f"corrections_{n:04d}.json").write_text(json.dumps(info, indent=2, default=str))
    return target


def correction_weights(original, corrected, corrected_weight: float = 5.0) -> np.ndarray:
    """1 where the prediction was kept, ``corrected_weight`` where the user changed it."""
    original, corrected = np.asarray(original), np.asarray(corrected)
    if original.shape != corrected.shape:
        raise InputError(f"Corrections have shape {corrected.shape}, the prediction {original.shape}.")
    w = np.ones(corrected.shape, np.float32)
    w[original != corrected] = corrected_weight
    return w
