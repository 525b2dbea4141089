"""The best weights of a killed training run, saved as a version after all.

The custom training loops (joint, staining, the adversarial methods) cannot be continued
step by step, but :func:`~napari_medseg.core.training.save_best_on_exit` keeps their best
weights on disk at every improvement (the run's ``best.pt``). At the first improvement it
also writes down, in ``run.json``, what the trainer's own save would have written:
:func:`describe_saves` runs that save under :func:`~.registry.recording_saves`, so nothing
is written then, and keeps each version's name, metadata and which part of the state it
takes. After a kill -9, :func:`recover_run` (``napari-medseg models recover NAME``) writes
those versions from ``best.pt``, never as the current version, and removes the run.
"""

from __future__ import annotations

from pathlib import Path

from . import paths
from .checkpoints import _plain
from .errors import InputError
from .registry import ModelEntry, Registry, recording_saves
from .runstate import TrainingRun, find_interrupted_runs


def describe_saves(save, best: dict) -> list[dict]:
    """What ``save(best)`` would write, as JSON: ``[{"name", "part", "kwargs"}]``, ``part``
    being the key of ``best["state"]`` the version takes (None: the whole state)."""
    with recording_saves() as calls:
        save(best)
    state = best["state"]
    parts = {id(v): k for k, v in state.items() if isinstance(v, dict)}  # a generator and its critic, say
    out = []
    for call in calls:
        if call["state"] is not state and id(call["state"]) not in parts:
            raise ValueError(f"the state saved as {call['name']} is not best['state'] or one of its parts")
        part = None if call["state"] is state else parts[id(call["state"])]
        out.append({"name": call["name"], "part": part, "kwargs": _plain(call["kwargs"])})
    return out


def _remap(obj, versions: dict):
    """References to pending versions (``{"name", "version"}`` with the negative number a
    recording answered) replaced by the versions written."""
    if isinstance(obj, dict):
        key = (obj.get("name"), obj.get("version"))
        if key in versions:
            return {**obj, "version": versions[key]}
        return {k: _remap(v, versions) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_remap(v, versions) for v in obj]
    return obj


def recoverable_runs(name: str, root: Path | None = None) -> list[dict]:
    """Killed runs of ``name`` (under ``root``, default the user's models folder) that hold best
    weights and the description of their versions."""
    return [r for r in find_interrupted_runs(name, root)
            if r["settings"].get("versions") and r["best_step"] is not None]


def killed_runs(method: str | None = None, root: Path | None = None) -> list[dict]:
    """Every model's killed runs whose best weights can be saved, newest first, each with the
    model's ``name``; ``method``: only runs whose versions would record a method starting so
    (e.g. "dorent2019" for the joint dock); ``root``: a registry's user models folder."""
    root = Path(root or paths.user_models_dir())
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not (folder / "runs").is_dir():
            continue
        for r in recoverable_runs(folder.name, root):
            methods = [str(v["kwargs"].get("method", "")) for v in r["settings"]["versions"]]
            if method is None or any(m.startswith(method) for m in methods):
                found.append({**r, "name": folder.name})
    return sorted(found, key=lambda r: r["folder"].name, reverse=True)


def killed_runs_note(method: str | None = None, root: Path | None = None) -> str:
    """One line for a dock: which killed runs hold best weights that are not saved yet."""
    try:
        runs = killed_runs(method, root)
    except OSError:  # an unreadable models folder: a dock still opens
        return ""
    if not runs:
        return ""
    listed = "; ".join(f"{r['name']} (run {r['folder'].name}, best at step {r['best_step']})" for r in runs)
    return (f"Killed training run{'s' if len(runs) > 1 else ''} with unsaved best weights: {listed}. "
            "Save them as versions (not made current) with the button below.")


def recover_killed(registry: Registry, method: str | None = None) -> tuple[list[ModelEntry], list[str]]:
    """:func:`recover_run` for every run :func:`killed_runs` finds in the registry's folder:
    ``(versions written, one message per run that could not be saved)``; one run that fails
    does not stop the others."""
    entries, problems = [], []
    for r in killed_runs(method, registry.user_root):
        try:
            entries += recover_run(registry, r["folder"])
        except (InputError, OSError) as exc:
            problems.append(f"{r['name']} run {r['folder'].name}: {exc}")
    return entries, problems


def recover_run(registry: Registry, folder: str | Path) -> list[ModelEntry]:
    """Write the killed run's best weights as the versions its trainer would have saved
    (not made current; ``recovered_from_run`` in their metadata), then remove the run."""
    run = TrainingRun.open(folder)
    recipe = (run.info.get("settings") or {}).get("versions")
    if not recipe:
        raise InputError(f"{run.folder} was killed before its first validation, or by a trainer that does not "
                         "describe its versions: there are no best weights to save.")
    best = run.best()
    if best is None:
        raise InputError(f"{run.folder} holds no best weights yet (killed before its first validation).")
    flat, written, entries = best["state"], {}, []
    for i, v in enumerate(recipe):
        part = v["part"]
        state = flat if part is None else {k[len(part) + 1:]: t for k, t in flat.items() if k.startswith(part + ".")}
        if not state:
            raise InputError(f"{run.folder}/best.pt has no weights for {v['name']} ({part}).")
        kwargs = _remap(dict(v["kwargs"]), written)
        kwargs["metrics"] = {**kwargs.get("metrics", {}), **best["metrics"], "best_step": int(best["step"])}
        kwargs["extra"] = {**kwargs.get("extra", {}), "recovered_from_run": run.folder.name}
        entry = registry.save_new_version(v["name"], state, make_current=False, **kwargs)
        written[(v["name"], -(i + 1))] = entry.version
        entries.append(entry)
    run.finish()
    return entries


__all__ = ["describe_saves", "killed_runs", "killed_runs_note", "recover_killed", "recover_run", "recoverable_runs"]
