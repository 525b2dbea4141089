"""Training runs on disk, so a kill -9 loses at most a few steps.

A run keeps a folder ``<user models>/<name>/runs/<run id>/`` while it trains:

- ``run.json``: the model name, the trainer's settings (enough to start it again), the
  total steps, the pid and a status (``running``, then ``finished``/``stopped``);
- ``best.pt``: the best weights so far with their validation metrics and step, written
  atomically at every improvement;
- ``last.pt``: everything needed to continue (weights, optimizer, scheduler and
  gradient-scaler state, step, torch/numpy/python RNG states), written atomically every
  ``every`` steps.

All of it loads with ``torch.load(weights_only=True)``: RNG states are kept as tensors
or JSON text. A run whose status is ``running`` and whose process is gone was killed:
:func:`find_interrupted_runs` lists it and ``train --resume`` continues it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import paths
from .atomic import atomic_write_bytes, atomic_write_json
from .errors import InputError

#: how often (in steps) ``last.pt`` is written unless the trainer says otherwise
DEFAULT_EVERY = 10


def _pid_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def _save(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, lambda fh: torch.save(payload, fh))


def rng_state(data_rng: np.random.Generator | None = None) -> dict:
    """Every random stream a trainer draws from, in a ``weights_only``-loadable form."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(np.random.get_state()[1].tolist()) + "|" + json.dumps(list(np.random.get_state()[2:])),
        "python": json.dumps(random.getstate(), default=list),
        "data": json.dumps(_data_state(data_rng)) if data_rng is not None else "",
    }


def set_rng_state(state: dict, data_rng: np.random.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    keys, rest = state["numpy"].split("|")
    pos, has_gauss, cached = json.loads(rest)
    np.random.set_state(("MT19937", np.array(json.loads(keys), dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    if data_rng is not None and state.get("data"):
        if hasattr(data_rng, "bit_generator"):
            data_rng.bit_generator.state = json.loads(state["data"])
        else:
            data_rng.set_state(json.loads(state["data"]))


def _data_state(data_rng) -> dict:
    """A numpy Generator's state, or that of an object with its own ``get_state``/``set_state``
    (JSON-able; e.g. a patch sampler with augmentations)."""
    return data_rng.bit_generator.state if hasattr(data_rng, "bit_generator") else data_rng.get_state()


@dataclass
class TrainingRun:
    """One training run's folder; ``every``: steps between two ``last.pt`` writes."""

    folder: Path
    every: int = DEFAULT_EVERY

    @classmethod
    def start(cls, name: str, settings: dict, total_steps: int, every: int = DEFAULT_EVERY,
              root: Path | None = None) -> "TrainingRun":
        """A new run folder under ``root`` (a registry's user models folder; default the user's)."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = Path(root or paths.user_models_dir()) / name / "runs" / f"{stamp}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        run = cls(folder, int(every))
        run._write_info({"name": name, "settings": settings, "total_steps": int(total_steps), "every": int(every),
                         "status": "running", "pid": os.getpid(),
                         "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        return run

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "TrainingRun":
        folder = Path(folder)
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            raise InputError(f"{folder} is not a readable training run (run.json is missing or damaged).") from None
        return cls(folder, int(info.get("every", DEFAULT_EVERY)))

    # ------------------------------------------------------------------ state
    @property
    def info(self) -> dict:
        return json.loads((self.folder / "run.json").read_text())

    def _write_info(self, info: dict) -> None:
        atomic_write_json(self.folder / "run.json", info)

    def update_settings(self, **settings) -> None:
        """Add to the settings kept in ``run.json``."""
        info = self.info
        self._write_info({**info, "settings": {**info.get("settings", {}), **settings}})

    def claim(self) -> None:
        """This process continues the run (after a kill)."""
        self._write_info({**self.info, "status": "running", "pid": os.getpid()})

    def release(self) -> None:
        """Training stopped on an error: the run is left as a killed one is, to be continued
        (nothing to do once it is finished and gone)."""
        if (self.folder / "run.json").is_file():
            self._write_info({**self.info, "status": "released"})

    def save_best(self, state: dict, metrics: dict, step: int) -> None:
        cpu = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in state.items()}
        _save(self.folder / "best.pt", {"state": cpu, "metrics": {k: float(v) for k, v in metrics.items()
                                                                    if isinstance(v, (int, float))},
                                        "step": int(step)})

    def save_last(self, step: int, model, optimizer=None, scheduler=None, scaler=None, data_rng=None,
                  extra: dict | None = None) -> None:
        _save(self.folder / "last.pt", {
            "step": int(step),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict() if optimizer is not None else {},
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": rng_state(data_rng),
            "extra": extra or {},
        })

    def save_state(self, step: int, state: dict) -> None:
        """``last.pt`` from a trainer's own state: ``model``, ``optimizer`` and ``rng`` as
        :meth:`save_last` writes them, every other key under ``extra`` (tensors, numbers or
        JSON text: it must load with ``weights_only=True``)."""
        own = ("model", "optimizer", "rng")
        _save(self.folder / "last.pt", {"step": int(step), **{k: state[k] for k in own},
                                        "scheduler": {}, "scaler": {},
                                        "extra": {k: v for k, v in state.items() if k not in own}})

    def _load(self, name: str) -> dict | None:
        p = self.folder / name
        if not p.is_file():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file: say which
            raise InputError(f"{p} cannot be read ({type(exc).__name__}); start a new run instead.") from None

    def best(self) -> dict | None:
        return self._load("best.pt")

    def last(self) -> dict | None:
        return self._load("last.pt")

    def finish(self, status: str = "finished", keep: bool = False) -> None:
        """The run ended and its result is in the registry: mark it, and drop its files unless ``keep``."""
        if keep:
            self._write_info({**self.info, "status": status})
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


def find_interrupted_runs(name: str, root: Path | None = None) -> list[dict]:
    """Runs of ``name`` (under ``root``, default the user's models folder) whose process died
    while they trained, or that an error stopped (:meth:`TrainingRun.release`), newest first:
    ``{"folder", "step", "total_steps", "settings", "best_step"}``."""
    root = Path(root or paths.user_models_dir()) / name / "runs"
    found = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir(), reverse=True):
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            continue
        status = info.get("status")
        if status != "released" and (status != "running" or _pid_alive(int(info.get("pid", 0)))):
            continue
        try:
            step, best_step = _steps_of(TrainingRun(folder, int(info.get("every", DEFAULT_EVERY))))
        except InputError:
            continue
        found.append({"folder": folder, "step": step, "total_steps": int(info.get("total_steps", 0)),
                      "settings": info.get("settings", {}), "best_step": best_step})
    return found


#: (folder, size and time of last.pt and best.pt) -> (step, best step): docks ask again at every
#: registry event, and a killed run's checkpoints (up to some 100 MB) do not change
_STEPS: dict = {}


def _steps_of(run: "TrainingRun") -> tuple[int, int | None]:
    """The step of a run's ``last.pt`` (0 without one) and of its ``best.pt`` (None without)."""
    def stamp(name):
        try:
            st = (run.folder / name).stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino  # written atomically: a new file each time

    key = (str(run.folder), stamp("last.pt"), stamp("best.pt"))
    if key not in _STEPS:
        last, best = run.last(), run.best()
        _STEPS[key] = (int(last["step"]) if last else 0, int(best["step"]) if best else None)
    return _STEPS[key]


def interrupted_note(name: str, root: Path | None = None) -> str:
    """One line for a dock: the newest interrupted run of ``name`` and how to continue it."""
    runs = find_interrupted_runs(name, root)
    if not runs:
        return ""
    r = runs[0]
    if r["settings"].get("box_round"):
        k = r["settings"]["box_round"]
        v = k["start_version"]
        start = "a new model" if v is None else f"version {v} (in the dock: Roll back to v{v})"
        cli = " (or the same `napari-medseg train box_iterative` command with --resume)" if k["stage"] == 1 else ""
        how = (f"to continue it, run Stage {k['stage']} again from {start} with the same slides, boxes and "
               f"settings{cli}: the round goes on from its last saved step")
    elif r["settings"].get("resumable"):
        how = f"continue it with `napari-medseg train {name} --resume`"
    elif r["settings"].get("versions") and r["best_step"] is not None:
        how = (f"save its best weights (step {r['best_step']}) as a version with `napari-medseg models recover {name}` "
               "or the Models dock's button")
    else:
        how = "it was killed before its first validation: there is nothing to keep"
    return f"Resumable run found: {r['folder'].name}, step {r['step']} of {r['total_steps']}; {how}."


__all__ = ["interrupted_note", "DEFAULT_EVERY", "TrainingRun", "find_interrupted_runs", "rng_state", "set_rng_state"]
