"""A box-supervised round that a kill -9 interrupted goes on from its last saved step.

Every round trains through :func:`~napari_medseg.core.training.train_supervised` with a
:class:`~napari_medseg.core.runstate.TrainingRun` in the session registry's models folder
(``<models>/glomeruli/runs/``), which writes ``last.pt`` every 10 steps: weights, optimizer,
learning-rate schedule and every random stream, the patch sampler's included. The run's
settings hold the round's key: the stage, the version the round started from, the
settings and a fingerprint of the slides, of the labels the round trains on and of the
user's corrections. The cues derive those labels from the start version's segmentation
and the boxes, so running the same stage again from the same version, on the same slides
and boxes with the same settings, makes the same key: that round claims the killed run
and continues from its ``last.pt``, and ends as the uninterrupted round would have.

Not for adversarial mode (its discriminator is not in ``last.pt``) or under torchrun.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from ...core import distributed
from ...core.checkpoints import data_fingerprint
from ...core.errors import InputError
from ...core.runstate import TrainingRun, find_interrupted_runs


def round_key(session, stage: int, slides) -> dict:
    """What makes two rounds the same round (JSON, as kept in ``run.json``): the stage, the
    start version (its number and file hash), the settings, and what the labels are made of:
    the slides, the boxes and objects, the corrections (all hashed in full) and the labels."""
    cfg = {k: v for k, v in asdict(session.config).items() if k not in ("device", "tile")}
    cfg["patch"], cfg["batch_size"] = session.config.patch_and_batch()
    start, sha = session.model_version, None
    if start is not None:
        try:
            sha = session.registry.get(session.name, start).meta.get("sha256")
        except Exception:  # noqa: BLE001 - a rank's in-memory round (torchrun): its number alone
            sha = None
    data = []
    for s in slides:
        data.append(data_fingerprint(s.image, s.labels))  # large slides: sampled blocks (cheap)
        small = [np.asarray(a) for a in (s.boxes, s.objects) if a is not None]
        small += [np.asarray(a) for a in s.fixed] if s.fixed is not None else []
        data.append(data_fingerprint(*small, max_bytes=2**62))  # these decide the labels: in full
    key = {"stage": int(stage), "start_version": start, "start_sha256": sha, "head": session.io.get("classes"),
           "config": cfg, "data": data}
    return json.loads(json.dumps(key))


def open_round(session, stage: int, slides, steps: int):
    """``(run, last)``: the killed run of this very round and its ``last.pt`` (claimed by this
    process), or a new run and None; ``(None, None)`` where rounds are not kept. A killed run
    of this round that saved no step yet is removed."""
    if session.config.adversarial > 0 or distributed.active():
        return None, None
    key, root = round_key(session, stage, slides), session.registry.user_root
    for r in killed_rounds(session.registry, session.name):
        if r["settings"]["box_round"] != key or r["total_steps"] != steps:
            continue
        try:
            run = TrainingRun.open(r["folder"])
            last = run.last()
            if last is None:  # killed before its first saved step: nothing to go on from
                run.finish()
                continue
            run.claim()
        except (InputError, OSError):  # gone or damaged since it was listed: a new run instead
            continue
        return run, last
    return TrainingRun.start(session.name, {"resumable": False, "box_round": key}, steps, root=root), None


def killed_rounds(registry, name: str) -> list[dict]:
    """The killed (or failed) box-supervised rounds under the registry's folder, newest first
    (:func:`~napari_medseg.core.runstate.find_interrupted_runs` entries)."""
    return [r for r in find_interrupted_runs(name, registry.user_root) if r["settings"].get("box_round")]


def forget_killed_rounds(registry, name: str) -> int:
    """Remove the saved steps of every killed round (finished rounds stay versions); how many."""
    runs = killed_rounds(registry, name)
    for r in runs:
        TrainingRun(r["folder"]).finish()
    return len(runs)


def resume_point(registry, name: str) -> dict:
    """Where ``train box_iterative --resume`` goes on: the newest killed Stage-1 round
    (``{"version": its start version or None, "step", "killed": True}``), else the current
    version (``{"version", "killed": False}``: fine-tuning it)."""
    killed = killed_rounds(registry, name)
    if killed:
        key = killed[0]["settings"]["box_round"]
        if key["stage"] != 1:
            raise InputError(f"The killed round ({killed[0]['folder'].name}) is a Stage-{key['stage']} round; only "
                             "Stage-1 rounds continue from the command line. Every finished round is a saved version "
                             f"(`napari-medseg models list {name}`).")
        return {"version": key["start_version"], "step": killed[0]["step"], "killed": True}
    return {"version": registry.get(name).version, "killed": False}


def continue_session(session, resume: dict) -> int:
    """Start ``session`` where ``resume`` (:func:`resume_point`) says; returns how many Stage-1
    rounds are done. After a killed round, the Stage-1 rounds that led to its start version
    come back into the history (from their metadata, following each round's
    ``parent_version``), so the best round is still chosen among all of them; fine-tuning the
    current version starts a new count."""
    from .rounds import RoundRecord

    version = resume["version"]
    if version is None:
        return 0
    session.use_version(version)
    if not resume.get("killed"):
        return 0
    earlier, v = [], version
    while v is not None:
        try:
            meta = session.registry.get(session.name, v).meta
        except Exception:  # noqa: BLE001 - deleted since: the history starts after it
            break
        if meta.get("stage") != 1 or "parent_version" not in meta:
            break
        earlier.insert(0, RoundRecord(1, int(meta["round"]), v, meta.get("metrics", {}), meta.get("cues", []), []))
        v = meta["parent_version"]
    session.history = earlier + session.history
    return len(earlier)
