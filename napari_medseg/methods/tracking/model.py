"""The ``tracking`` model in the registry: train, save, load.

``train_tracking`` wraps :func:`~.ppo.train_tracker` as a job: it keeps the best
deterministic validation coverage, writes it as a new registry version when the run
ends or is stopped, and records when validation coverage first reached 90 % (wall and
CPU minutes, the ``train_minutes_to_90pct`` benchmark key).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import torch

from napari_medseg.core import distributed
from napari_medseg.core.errors import InputError, NotACheckpointError, TrainingError
from napari_medseg.core.registry import ModelEntry, Registry
from napari_medseg.core.runstate import TrainingRun

from .policy import ARCH_NAME, BetaPolicy
from .env import EnvConfig
from .ppo import PPOConfig, train_tracker
from .runfiles import prune_imitation_chunks, read_imitation_chunks, write_imitation_chunks

MODEL_NAME = "tracking"
METHOD = "dai2019-tracking"
STATE_EVERY = 10  # updates between two kept states of a run (a kill -9 loses at most this many)


def load_tracker(version: int | None = None, registry: Registry | None = None, name: str = MODEL_NAME,
                 device="cpu") -> tuple[BetaPolicy, dict]:
    """The tracking agent of ``name`` (current version by default) and its metadata."""
    entry = (registry or Registry()).get(name, version)
    return policy_from_entry(entry, device)


def policy_from_entry(entry: ModelEntry, device="cpu") -> tuple[BetaPolicy, dict]:
    if entry.meta.get("arch", {}).get("name") != ARCH_NAME:
        what = entry.meta.get("method", "another method")
        raise NotACheckpointError(f"{entry.path.name} is a {what} model, not a tracking agent; pick a tracking model.")
    model, meta = entry.load(device)
    return model, meta


def suggested_entropy_threshold(metrics: dict) -> float | None:
    """Halfway between the mean entropy on and off the centreline (validation)."""
    a, b = metrics.get("val_entropy_within"), metrics.get("val_entropy_outside")
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b <= a:
        return None
    return float((a + b) / 2)


def _first_reaching(history: list[dict], key: str, level: float, minutes_key: str) -> float | None:
    for h in history:
        if h.get(key, -math.inf) >= level:
            return h[minutes_key]
    return None


def train_tracking(registry: Registry, config: PPOConfig | None = None, setting: str = "SI", *,
                   policy: BetaPolicy | None = None, episodes=None, env_config=None, name: str = MODEL_NAME,
                   minutes: float | None = None, extra_meta: dict | None = None, make_current: bool | None = None,
                   state_every: int = STATE_EVERY, resume_run=None):
    """Job generator: train (or fine-tune ``policy``) and save the best model as a new
    version of ``name`` — at the end, after ``minutes`` of wall time, or when stopped.
    Returns ``{"entry", "history", "best_metrics"}``.

    While it trains, a run folder (:class:`~napari_medseg.core.runstate.TrainingRun`,
    ``<user models>/<name>/runs/``) holds the best agent (at every improvement) and,
    every ``state_every`` updates, what continuing needs, so a kill -9 loses at most
    ``state_every`` updates; :func:`resume_tracking` (``train tracking --resume``)
    continues it. Runs on the synthetic settings (no ``episodes``) can be continued;
    others keep their best agent on disk. ``resume_run``: that folder (use
    :func:`resume_tracking`, which rebuilds the settings)."""
    config = config or PPOConfig()
    env_config = env_config or EnvConfig(max_steps=config.max_steps)
    h = env_config.history
    arch = (policy or BetaPolicy(3 * h, 4 * h, env_config.view_size, env_config.max_displacement,
                                 env_config.agent_input)).arch
    t0, c0 = time.perf_counter(), time.process_time()
    record: dict = {}
    history: list[dict] = []
    run, resume, resumed = _open_run(name, config, setting, env_config, arch, minutes, extra_meta, episodes,
                                     state_every, resume_run)
    if resume is not None:
        history[:] = json.loads(resume["outer_history"])
    wall0, cpu0 = (resume["wall_minutes"], resume["cpu_minutes"]) if resume is not None else (0.0, 0.0)

    def keep_state(at: int, state: dict) -> None:
        if run is not None:
            chunks = state.pop("buffer_chunks", [])
            write_imitation_chunks(run, chunks)  # first: the state written next may need them
            run.save_state(at, {**state, "outer_history": json.dumps(history),
                                "wall_minutes": history[-1]["wall_minutes"] if history else wall0,
                                "cpu_minutes": history[-1]["cpu_minutes"] if history else cpu0})
            prune_imitation_chunks(run, int(state.get("buffer_total", 0)), config.imitation_buffer,
                                   done=at >= config.imitation_updates)

    def save_best(state: dict, metrics: dict, at: int) -> None:
        if run is not None:
            run.save_best(state, metrics, at)

    gen = train_tracker(config, setting, policy=policy, episodes=episodes, env_config=env_config, record=record,
                        save_best=save_best, keep_state=keep_state, state_every=state_every, resume=resume)
    extra_meta = {**(extra_meta or {}), **resumed}

    def save(make_current=make_current):
        return _save(registry, record, history, config, setting, name, arch, extra_meta, make_current)

    try:
        for p in gen:
            p.metrics["wall_minutes"] = wall0 + (time.perf_counter() - t0) / 60
            p.metrics["cpu_minutes"] = cpu0 + (time.process_time() - c0) / 60
            history.append({"update": p.step, **p.metrics})
            yield p
            # under torchrun rank 0's clock decides, so every rank stops after the same update
            if minutes is not None and distributed.from_main(p.metrics["wall_minutes"] >= minutes):
                break
    except GeneratorExit:  # stopped: keep the best so far
        gen.close()
        if record.get("best_state_dict") is not None:
            save()
        raise
    except Exception as exc:  # failed mid-run: keep the best so far, as a version that is not current
        if isinstance(exc, TrainingError) or record.get("best_state_dict") is None:
            raise
        kept = save(make_current=False)
        label = kept["entry"].label if kept["entry"] is not None else "(on rank 0)"
        raise TrainingError(f"Training failed after update {len(history)}: {exc}. The best agent so far (update "
                            f"{record.get('best_step')}) was saved as {label}, not made current"
                            + (f" ({kept['entry'].path})." if kept["entry"] is not None else ".")) from exc
    finally:
        if run is not None:  # the result is a registry version now (a kill -9 never gets here: the run stays)
            run.finish()
    gen.close()
    return save()


def _open_run(name, config, setting, env_config, arch, minutes, extra_meta, episodes, every, resume_run):
    """``(run, resume, resumed)``: the run folder (rank 0 only), the kept state to continue
    from (or None) and what the saved version records about it."""
    if not distributed.is_main():  # under torchrun rank 0 keeps the folder; every rank reads it to resume
        return None, (_kept_state(TrainingRun.open(resume_run)) if resume_run is not None else None), {}
    if resume_run is not None:
        run = TrainingRun.open(resume_run)
        resume = _kept_state(run)
        run.claim()
        return run, resume, {"resumed_from_update": int(resume["update"])}
    settings = {"resumable": episodes is None, "arch": arch, "config": dataclasses.asdict(config), "setting": setting,
                "env": dataclasses.asdict(env_config), "minutes": minutes, "extra_meta": extra_meta or {}}
    return TrainingRun.start(name, settings if episodes is None else {"resumable": False}, config.updates,
                             every=every), None, {}


def _kept_state(run: TrainingRun) -> dict:
    last = run.last()
    if last is None:
        raise InputError(f"{run.folder} holds no state to continue from; start a new run.")
    state = dict(last["extra"])
    state.update(update=int(last["step"]), model=last["model"], optimizer=last["optimizer"], rng=last["rng"],
                 best=run.best(), buffer_chunks=read_imitation_chunks(run, int(state.get("buffer_total", 0))))
    return state


def resume_tracking(registry: Registry, folder, make_current: bool | None = None):
    """Job generator: continue the interrupted ``train_tracking`` run kept in ``folder``
    (see :func:`~napari_medseg.core.runstate.find_interrupted_runs`) with its own settings,
    from the update after its last kept state, and save the best agent as usual."""
    from napari_medseg.core import nets

    info = TrainingRun.open(folder).info
    s = info.get("settings") or {}
    if not s.get("resumable"):
        raise InputError(f"The run in {folder} trained on images that are not stored with it; its best agent is "
                         "kept there (best.pt), but it cannot be continued.")
    policy = nets.build(s["arch"])
    return train_tracking(registry, PPOConfig(**s["config"]), s["setting"], policy=policy,
                          env_config=EnvConfig(**s["env"]), name=info["name"], minutes=s["minutes"],
                          extra_meta=s["extra_meta"] or None, make_current=make_current,
                          state_every=int(info.get("every", STATE_EVERY)), resume_run=folder)


def _save(registry, result, history, config, setting, name, arch, extra_meta, make_current=None):
    if not distributed.is_main():  # under torchrun, rank 0 saves the (identical) weights
        return {"entry": None, "history": history, "best_metrics": dict(result["best_metrics"])}
    state = result["best_state_dict"] or result["state_dict"]
    if any(not torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise TrainingError("Training diverged (non-finite weights); nothing was saved.")
    metrics = dict(result["best_metrics"])
    metrics["best_update"] = result["best_step"]
    threshold = suggested_entropy_threshold(metrics)
    if threshold is not None:
        metrics["entropy_threshold"] = threshold
    val = [h for h in history if "val_coverage_pct" in h]
    metrics["train_minutes_to_90pct"] = _first_reaching(val, "val_coverage_pct", 90.0, "wall_minutes")
    metrics["train_cpu_minutes_to_90pct"] = _first_reaching(val, "val_coverage_pct", 90.0, "cpu_minutes")
    curve = [{k: h.get(k) for k in ("update", "wall_minutes", "val_coverage_pct", "val_error_px", "mean_reward")}
             for h in val]
    entry = registry.save_new_version(
        name, state, method=METHOD, arch=arch,
        config={**dataclasses.asdict(config), "setting": setting}, metrics=metrics,
        extra={"validation_curve": curve, "torch_threads": torch.get_num_threads(), **(extra_meta or {})},
        make_current=make_current,
    )
    return {"entry": entry, "history": history, "best_metrics": metrics}
