"""A supervised training loop as a progress generator, shared by the methods.

It validates every ``val_every`` steps and keeps the best state whenever the monitored
metric improves. Given a :class:`~napari_medseg.core.runstate.TrainingRun`, it also
writes that best state to disk at once (``best.pt``) and everything needed to continue
every ``run.every`` steps (``last.pt``), so a kill -9 loses at most ``run.every`` steps
and ``resume_from`` (a ``last.pt``) continues the run exactly where it was saved.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from . import distributed
from .device import autocast, preflight
from .errors import TrainingError
from .jobs import Progress


def train_supervised(
    model: torch.nn.Module,
    next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    device: torch.device | str = "cpu",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    validate: Callable[[torch.nn.Module], dict] | None = None,
    val_every: int = 50,
    monitor: str = "dice",
    mode: str = "max",
    save_best: Callable[[dict, dict, int], None] | None = None,
    amp: bool = True,
    cpu_bf16: bool = False,
    grad_clip: float | None = None,
    cosine: bool = False,
    adversary=None,
    run=None,
    resume_from: dict | None = None,
    data_rng=None,
):
    """Yield :class:`Progress` each step; return ``{"best_metrics", "best_step", "history"}``.

    ``save_best(state, metrics, step)`` is called whenever the monitored validation
    metric improves (the method decides where that goes), and once more when a job is
    stopped before its first validation. ``cpu_bf16`` runs the forward pass in bfloat16
    autocast on CPUs that have native support. A diverged run (non-finite loss) raises
    :class:`TrainingError` and saves nothing from after the divergence.

    ``adversary`` switches on adversarial mode: an object with
    ``generator_term(x, logits, y) -> loss`` (added to the segmentation loss, its own
    networks frozen) and ``discriminator_step(x, y, logits) -> dict`` (one update of its
    discriminator after each model update), e.g.
    :class:`napari_medseg.core.adversarial.mode.MaskAdversary`. The engine only calls
    these two methods, so any method can bring its own adversary.

    Under torchrun (:mod:`napari_medseg.core.distributed`) the model trains in DDP: each
    rank's ``next_batch`` draws its own patches, gradients are averaged, the reported
    losses are the ranks' mean, every rank validates the same (identical) weights, and
    only rank 0 calls ``save_best`` and writes ``run``.

    ``run`` (a :class:`~napari_medseg.core.runstate.TrainingRun`) keeps the run on disk;
    ``resume_from`` (its ``last.pt``, a dict) continues from the step it holds, with the
    optimizer, scheduler, scaler and RNG states (``data_rng``: the numpy Generator that
    ``next_batch`` draws from, restored too) and the run's best so far.
    """
    device = torch.device(device)
    model.to(device)
    main = distributed.is_main()
    run = run if main else None
    save_best = save_best if main else None
    net = distributed.wrap(model, device)  # the model itself on one process
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    # cosine: the learning rate decays to 5 % over the run, so the weights settle by its end
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps), eta_min=0.05 * lr) if cosine else None
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    sign = 1.0 if mode == "max" else -1.0
    diverged = False
    best = {"score": -math.inf, "metrics": {}, "step": 0, "state": None}
    history: list[dict] = []
    step = 0
    first = 1
    if resume_from is not None:
        from .runstate import set_rng_state

        model.load_state_dict(resume_from["model"])
        opt.load_state_dict(resume_from["optimizer"])
        if sched is not None and resume_from.get("scheduler"):
            sched.load_state_dict(resume_from["scheduler"])
        if resume_from.get("scaler"):
            scaler.load_state_dict(resume_from["scaler"])
        # under torchrun the other ranks keep their own sampling stream (rank 0 saved its own)
        set_rng_state(resume_from["rng"], data_rng if main else None)
        first = step = int(resume_from["step"]) + 1
        step -= 1
        kept = run.best() if run is not None else None
        if kept is not None and monitor in kept["metrics"]:
            best.update(score=sign * kept["metrics"][monitor], metrics=kept["metrics"], step=kept["step"],
                        state=kept["state"])
            if save_best is not None:
                save_best(best["state"], best["metrics"], best["step"])

    def evaluate_and_keep(at_step: int) -> dict:
        if validate is None:
            return {}
        distributed.broadcast_buffers(model)  # under torchrun every rank scores (and keeps) the same weights
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in validate(model).items()}
        net.train()
        score = sign * metrics[monitor]
        if score > best["score"]:
            best.update(score=score, metrics=metrics, step=at_step, state=copy.deepcopy(model.state_dict()))
            if run is not None:
                run.save_best(best["state"], metrics, at_step)
            if save_best is not None:
                save_best(best["state"], metrics, at_step)
        return metrics

    net.train()
    try:
        for step in range(first, steps + 1):
            x, y = next_batch(step)
            if step == first:  # memory preflight on the real batch shape
                preflight(model, device, tuple(x.shape[2:]), int(x.shape[0]), int(x.shape[1]), training=True)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with autocast(device, use_amp or cpu_bf16, cpu_bf16=cpu_bf16):
                logits = net(x)
                loss = loss_fn(logits, y)
                adv = adversary.generator_term(x, logits, y) if adversary is not None else None
                if adv is not None:
                    loss = loss + adv
            if not torch.isfinite(loss):
                diverged = True
                raise TrainingError(f"The training loss became {loss.item()} at step {step}; lower the learning rate.")
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            if sched is not None:
                sched.step()
            metrics = {"loss": float(loss.detach())}
            if adversary is not None:
                metrics["loss_adv"] = float(adv.detach())
                metrics.update(adversary.discriminator_step(x, y, logits.detach()))
            metrics = distributed.mean_metrics(metrics)
            if validate is not None and (step % val_every == 0 or step == steps):
                metrics.update({f"val_{k}": v for k, v in evaluate_and_keep(step).items()})
            history.append({"step": step, **metrics})
            if run is not None and (step % run.every == 0 or step == steps):
                run.save_last(step, model, opt, sched, scaler, data_rng)
            yield Progress(step, steps, f"step {step}/{steps}", metrics)
        distributed.broadcast_buffers(model)  # the ranks end with one set of weights and statistics
    finally:
        # stopped before any validation: still keep what was learned
        if best["state"] is None and step > 0 and validate is not None and not diverged:
            evaluate_and_keep(step)
        model.eval()
    return {"best_metrics": best["metrics"], "best_step": best["step"], "history": history}


def save_best_on_exit(gen, best: dict, save, name: str | None = None):
    """Generator: run the training generator ``gen``; when it ends, fails or is closed
    (Stop), ``save(best)`` writes the best state kept so far, if any, and its return
    value lands in ``best["entry"]``. Returns ``gen``'s result (None when stopped).

    With ``name``, each new best is also written to disk at once (a
    :class:`~napari_medseg.core.runstate.TrainingRun` folder of that model), so a kill -9
    keeps the best weights so far; the folder goes when the job ends normally. At the first
    best, what ``save`` would write is described in the run's settings
    (:func:`~napari_medseg.core.recover.describe_saves`), so that after a kill -9
    ``napari-medseg models recover NAME`` can save those weights as the same versions;
    ``save`` is then called once with the registry recording instead of writing, so it
    should write only through ``Registry.save_new_version``."""
    result = None
    run, seen, described = None, None, False
    if name is not None and distributed.is_main():  # under torchrun, rank 0 keeps the run
        from .runstate import TrainingRun

        run = TrainingRun.start(name, {"resumable": False}, 0)
    try:
        while True:
            try:
                report = next(gen)
            except StopIteration as done:
                result = done.value
                break
            if run is not None and best.get("state") is not None and best.get("step") != seen:
                seen = best.get("step")  # a new best: on disk at once, so a kill -9 keeps it
                run.save_best(_flat_state(best["state"]), best.get("metrics") or {}, seen or 0)
                if not described:
                    described = _describe(run, save, best)
            yield report
    finally:
        gen.close()
        if best.get("state") is not None:
            best["entry"] = save(best)
        if run is not None:
            run.finish()
    return result


def _describe(run, save, best: dict) -> bool:
    """Write into the run what ``save`` would write (core.recover); a save that cannot be
    described leaves the run without it (``models recover`` then says so), never stops training."""
    import warnings

    from .recover import describe_saves

    try:
        run.update_settings(versions=describe_saves(save, best))
    except Exception as exc:  # noqa: BLE001 - training goes on; only recovery after a kill is lost
        warnings.warn(f"the model's save could not be described for recovery after a kill ({exc})", stacklevel=2)
    return True


def _flat_state(state: dict) -> dict:
    """A state dict, or a dict of them (a generator and its critic) as one flat dict."""
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out
