"""A supervised training loop as a progress generator, shared by the methods.

It validates every ``val_every`` steps and writes a checkpoint whenever the monitored
metric improves, so stopping at any moment leaves the best model so far on disk.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

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
    :class:`napari_medseg.methods.adversarial.mode.MaskAdversary`. The engine only calls
    these two methods, so any method can bring its own adversary.
    """
    device = torch.device(device)
    model.to(device)
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

    def evaluate_and_keep(at_step: int) -> dict:
        if validate is None:
            return {}
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in validate(model).items()}
        model.train()
        score = sign * metrics[monitor]
        if score > best["score"]:
            best.update(score=score, metrics=metrics, step=at_step, state=copy.deepcopy(model.state_dict()))
            if save_best is not None:
                save_best(best["state"], metrics, at_step)
        return metrics

    model.train()
    try:
        for step in range(1, steps + 1):
            x, y = next_batch(step)
            if step == 1:  # memory preflight on the real batch shape
                preflight(model, device, tuple(x.shape[2:]), int(x.shape[0]), int(x.shape[1]), training=True)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with autocast(device, use_amp or cpu_bf16, cpu_bf16=cpu_bf16):
                logits = model(x)
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
            if validate is not None and (step % val_every == 0 or step == steps):
                metrics.update({f"val_{k}": v for k, v in evaluate_and_keep(step).items()})
            history.append({"step": step, **metrics})
            yield Progress(step, steps, f"step {step}/{steps}", metrics)
    finally:
        # stopped before any validation: still keep what was learned
        if best["state"] is None and step > 0 and validate is not None and not diverged:
            evaluate_and_keep(step)
        model.eval()
    return {"best_metrics": best["metrics"], "best_step": best["step"], "history": history}


def save_best_on_exit(gen, best: dict, save):
    """Generator: run the training generator ``gen``; when it ends, fails or is closed
    (Stop), ``save(best)`` writes the best state kept so far, if any, and its return
    value lands in ``best["entry"]``. Returns ``gen``'s result (None when stopped)."""
    result = None
    try:
        result = yield from gen
    finally:
        gen.close()
        if best.get("state") is not None:
            best["entry"] = save(best)
    return result
