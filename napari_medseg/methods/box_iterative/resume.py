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

from ...core import distributed
from ...core.checkpoints import data_fingerprint
from ...core.runstate import TrainingRun, find_interrupted_runs


def round_key(session, stage: int, slides) -> dict:
    """What makes two rounds the same round (JSON, as kept in ``run.json``)."""
    cfg = {k: v for k, v in asdict(session.config).items() if k not in ("device", "tile")}
    cfg["patch"], cfg["batch_size"] = session.config.patch_and_batch()
    arrays = []
    for s in slides:
        arrays += [s.image, s.labels] + (list(s.fixed) if s.fixed is not None else [])
    key = {"stage": int(stage), "start_version": session.model_version, "head": session.io.get("classes"),
           "config": cfg, "data": data_fingerprint(*arrays)}
    return json.loads(json.dumps(key))


def open_round(session, stage: int, slides, steps: int):
    """``(run, last)``: the killed run of this very round and its ``last.pt`` (claimed by this
    process), or a new run and None; ``(None, None)`` where rounds are not kept."""
    if session.config.adversarial > 0 or distributed.active():
        return None, None
    key, root = round_key(session, stage, slides), session.registry.user_root
    for r in find_interrupted_runs(session.name, root):
        if r["settings"].get("box_round") == key and r["total_steps"] == steps and r["step"] > 0:
            run = TrainingRun.open(r["folder"])
            last = run.last()
            run.claim()
            return run, last
    return TrainingRun.start(session.name, {"resumable": False, "box_round": key}, steps, root=root), None


def resume_point(registry, name: str) -> dict:
    """Where ``train box_iterative --resume`` goes on: the newest killed Stage-1 round
    (``{"version": its start version or None, "step", "killed": True}``), else the current
    version (``{"version", "killed": False}``: fine-tuning it)."""
    from ...core.errors import InputError

    killed = [r for r in find_interrupted_runs(name, registry.user_root) if r["settings"].get("box_round")]
    if killed:
        key = killed[0]["settings"]["box_round"]
        if key["stage"] != 1:
            raise InputError(f"The killed round ({killed[0]['folder'].name}) is a Stage-{key['stage']} round; only "
                             "Stage-1 rounds continue from the command line. Every finished round is a saved version "
                             f"(`napari-medseg models list {name}`).")
        return {"version": key["start_version"], "step": killed[0]["step"], "killed": True}
    return {"version": registry.get(name).version, "killed": False}


def continue_session(session, version: int | None) -> int:
    """Start ``session`` from ``version`` with the Stage-1 rounds that led to it back in its
    history (from their registry metadata, so the best round is still chosen among all);
    returns how many Stage-1 rounds are done. ``version`` None: a new model, nothing done."""
    from .rounds import RoundRecord

    if version is None:
        return 0
    session.use_version(version)
    meta = session.registry.get(session.name, version).meta
    done = int(meta.get("round", 0)) if meta.get("stage") == 1 else 0
    earlier = []
    for k in range(done, 0, -1):  # the rounds of the same session were saved one after another
        try:
            m = session.registry.get(session.name, version - (done - k)).meta
        except Exception:  # noqa: BLE001 - a version deleted since: the history starts after it
            break
        if m.get("stage") != 1 or m.get("round") != k:
            break
        earlier.insert(0, RoundRecord(1, k, version - (done - k), m.get("metrics", {}), m.get("cues", []), []))
    session.history = earlier + session.history
    return done
