"""Checkpoints: written atomically with a JSON sidecar, loaded with ``weights_only=True``.

The ``.pt`` file holds ``{"format", "state_dict", "meta"}``; ``meta`` (method, model
version, architecture, config, metrics, training-data fingerprint, creation time) is
also written next to it as ``<name>.json`` for people and tools that do not load torch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .atomic import atomic_write_json as _atomic_write_json
from .errors import InputError, NotACheckpointError

FORMAT = "napari-medseg/1"


def atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_json(path, obj, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _plain(obj: Any) -> Any:
    """Meta as plain JSON types, so ``weights_only`` loading accepts it."""
    return json.loads(json.dumps(obj, default=_json_default))


def data_fingerprint(*arrays, max_bytes: int = 64 * 2**20) -> str:
    """SHA-256 of the training data; large (dask, zarr) arrays hash shape, dtype and 9 blocks
    of 64 px along the diagonal, so only those few chunks are ever read (a strided sample
    of a gigapixel slide would read every chunk)."""
    h = hashlib.sha256()
    for a in arrays:
        shape = tuple(int(s) for s in a.shape)
        h.update(repr((shape, str(a.dtype))).encode())
        nbytes = int(np.prod(shape)) * np.dtype(a.dtype).itemsize
        if nbytes <= max_bytes:
            h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
        else:
            for k in range(9):
                at = tuple(slice(s * k // 9, s * k // 9 + 64) for s in shape[:2])
                h.update(np.ascontiguousarray(np.asarray(a[at])).tobytes())
    return h.hexdigest()


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(
    path: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    *,
    method: str,
    arch: dict,
    version: int = 1,
    config: dict | None = None,
    metrics: dict | None = None,
    data_fingerprint: str = "",
    extra: dict | None = None,
) -> dict:
    """Write a checkpoint atomically (temp file + rename) and its JSON sidecar; return meta."""
    path = Path(path)
    meta = _plain(
        {
            "method": method,
            "version": int(version),
            "arch": arch,
            "config": config or {},
            "metrics": metrics or {},
            "data_fingerprint": data_fingerprint,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            **(extra or {}),
        }
    )
    cpu_state = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    payload = {"format": FORMAT, "state_dict": cpu_state, "meta": meta}
    atomic_write_bytes(path, lambda fh: torch.save(payload, fh))
    meta_with_hash = {**meta, "sha256": file_sha256(path)}
    atomic_write_json(sidecar_path(path), meta_with_hash)
    return meta_with_hash


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> tuple[dict, dict]:
    """Return ``(state_dict, meta)``. Anything that is not our checkpoint gets one clear error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"No checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError) as exc:
        raise NotACheckpointError(
            f"{path.name} is not a napari-medseg checkpoint, or it is truncated/damaged "
            f"({type(exc).__name__})."
        ) from exc
    except Exception as exc:  # pickle.UnpicklingError and friends from weights_only
        raise NotACheckpointError(
            f"{path.name} is not a napari-medseg checkpoint (refused by the safe loader: "
            f"{type(exc).__name__})."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NotACheckpointError(f"{path.name} is a torch file but not a napari-medseg checkpoint.")
    if not isinstance(payload.get("meta"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise NotACheckpointError(f"{path.name}: its metadata or weights are not what a checkpoint holds.")
    return payload["state_dict"], payload["meta"]


def verify_sidecar_hash(path: Path) -> None:
    """Refuse weights whose bytes differ from what their sidecar recorded when they were written."""
    side = sidecar_path(path)
    if not side.is_file():
        return
    try:
        recorded = json.loads(side.read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        raise NotACheckpointError(f"{side.name}, the description of {path.name}, is damaged (not a JSON object); "
                                  f"the weights cannot be checked.") from None
    if recorded and recorded != file_sha256(path):
        raise NotACheckpointError(f"{path.name} is damaged: its checksum does not match the one recorded when it "
                                  f"was written; restore an earlier version or train again.")


def check_meta(meta: dict, name: str) -> None:
    """One clear error for metadata no registered network or segmentation I/O can use."""
    arch = meta.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise NotACheckpointError(f"{name}: its architecture entry is not a {{'name', 'kwargs'}} description.")
    if not isinstance(arch.get("kwargs", {}), dict):
        raise NotACheckpointError(f"{name}: its architecture arguments are not a mapping.")
    io = meta.get("io")
    if io is None:
        return
    from .segment import POSTPROCESS, PREPROCESS

    if not isinstance(io, dict):
        raise NotACheckpointError(f"{name}: its input/output description is not a mapping.")
    if io.get("input") not in PREPROCESS or io.get("postprocess", "softmax") not in POSTPROCESS:
        raise NotACheckpointError(f"{name}: input {io.get('input')!r} / output {io.get('postprocess')!r} are not "
                                  f"ones this version runs ({sorted(PREPROCESS)} / {sorted(POSTPROCESS)}).")
    for key, low in (("stride", 1), ("margin", 0)):
        v = io.get(key, low)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise NotACheckpointError(f"{name}: io.{key} must be a whole number >= {low}, not {v!r}.")


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the network a checkpoint describes, load its weights, put it in eval mode."""
    from . import nets

    path = Path(path)
    verify_sidecar_hash(path)
    state, meta = load_checkpoint(path)
    check_meta(meta, path.name)
    try:
        model = nets.build(meta["arch"])
    except NotACheckpointError as exc:
        raise NotACheckpointError(f"{path.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a constructor given arguments it cannot take
        raise NotACheckpointError(f"{path.name}: its architecture {meta['arch'].get('name')!r} cannot be built "
                                  f"from the stored arguments ({type(exc).__name__}: {exc}).") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotACheckpointError(f"{path.name}: weights do not match its architecture ({first}).") from None
    return model.to(device).eval(), meta
