"""The GAN training step shared by the three adversarial methods.

One iteration is one discriminator (or critic) update followed by one generator update
(Chen et al., Algorithm 1; SegAN; Delisle et al.'s two alternating steps). During the
generator step the discriminator's parameters do not require gradients, so the
generator's loss flows *through* D into G but never reaches D's parameters. "Generator"
means whatever the generator optimiser updates: Chen's segmentor, SegAN's segmentor,
or Delisle's normaliser *and* segmenter together.

Fine-tuning with the critic frozen (Giacomello et al., transfer strategy (i)) is
:func:`frozen` held for the whole run: D in eval mode (fixed batch-norm statistics)
with no gradients; :class:`AdversarialTrainer` does this with
``freeze_discriminator=True`` and then skips D updates.

Mixed precision: float16 autocast on CUDA through :func:`napari_medseg.core.device.autocast`,
with one loss scaler per optimiser; float32 elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .. import distributed
from ..device import autocast
from ..errors import TrainingError

#: a loss closure: returns the loss, or (loss, {name: value}) to log more
LossFn = Callable[[], "torch.Tensor | tuple[torch.Tensor, dict]"]


def _modules(modules: nn.Module | Iterable[nn.Module]) -> list[nn.Module]:
    return [modules] if isinstance(modules, nn.Module) else list(modules)


def set_requires_grad(modules: nn.Module | Iterable[nn.Module], flag: bool) -> None:
    """Switch gradients of every parameter of ``modules`` on or off."""
    for m in _modules(modules):
        for p in m.parameters():
            p.requires_grad_(flag)


@contextlib.contextmanager
def no_param_grads(modules: nn.Module | Iterable[nn.Module]):
    """Parameters of ``modules`` do not require gradients inside; each flag (and the
    train/eval mode, untouched) is as before afterwards."""
    params = [p for m in _modules(modules) for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


@contextlib.contextmanager
def frozen(modules: nn.Module | Iterable[nn.Module]):
    """Eval mode and no parameter gradients inside; modes and flags restored afterwards."""
    mods = _modules(modules)
    modes = [[(sub, sub.training) for sub in m.modules()] for m in mods]
    try:
        for m in mods:
            m.eval()
        with no_param_grads(mods):
            yield
    finally:
        for per_module in modes:
            for sub, mode in per_module:
                sub.train(mode)


def clip_weights(module: nn.Module, limit: float) -> None:
    """Clamp every parameter to [−limit, limit] (the SegAN critic's weight clipping)."""
    with torch.no_grad():
        for p in module.parameters():
            p.clamp_(-limit, limit)


def _split(out) -> tuple[torch.Tensor, dict]:
    if isinstance(out, tuple):
        loss, logs = out
        return loss, dict(logs)
    return out, {}


def _number(v) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


class AdversarialTrainer:
    """Holds the two optimisers (passed in) and runs D and G updates.

    ``d_step(loss_fn)`` and ``g_step(loss_fn)`` each zero the gradients, evaluate the
    closure under autocast, back-propagate, optionally clip the gradient norm, step
    the optimiser and drop the gradients again (``set_to_none``), so gradients never
    linger between the two updates. ``g_step`` runs with D's parameters not requiring
    gradients. Closures compute their own forward passes; detach G's output in D's.
    A non-finite loss raises :class:`TrainingError` before any update.

    ``freeze_discriminator``: D stays in eval mode with no gradients until :meth:`close`
    (fine-tuning with the critic frozen); ``d_step`` then does nothing.
    ``critic_clip``: clamp D's weights to ±this after each D update (SegAN).
    """

    def __init__(self, generator: nn.Module | Sequence[nn.Module], discriminator: nn.Module,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None = None,
                 device: torch.device | str = "cpu", amp: bool = True, grad_clip: float | None = None,
                 critic_clip: float | None = None, freeze_discriminator: bool = False):
        self.generators = _modules(generator)
        self.discriminator = discriminator
        self.opt_g, self.opt_d = opt_g, opt_d
        self.device = torch.device(device)
        self.use_amp = bool(amp) and self.device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.grad_clip, self.critic_clip = grad_clip, critic_clip
        self.freeze_discriminator = bool(freeze_discriminator)
        self._stack = contextlib.ExitStack()
        if self.freeze_discriminator:
            self._stack.enter_context(frozen(discriminator))
        elif opt_d is None:
            raise TrainingError("A discriminator optimiser is needed unless the discriminator is frozen.")
        self.step_count = 0
        for module in [*self.generators, discriminator]:  # under torchrun: every rank starts from rank 0's weights
            distributed.broadcast_weights(module)

    def autocast(self):
        """The mixed-precision context of this trainer's forward passes."""
        return autocast(self.device, self.use_amp)

    def _update(self, what: str, loss_fn: LossFn, opt: torch.optim.Optimizer, scaler, params) -> dict:
        opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss, logs = _split(loss_fn())
        if not torch.isfinite(loss.detach()).all():
            opt.zero_grad(set_to_none=True)
            raise TrainingError(f"The {what} loss became {loss.detach().float().item()} at step "
                                f"{self.step_count + 1}; lower the learning rate.")
        scaler.scale(loss).backward()
        distributed.average_gradients(params)  # under torchrun: the ranks' mean, as DDP would (no-op alone)
        if self.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return {f"loss_{what[0]}": float(loss.detach()), **{k: _number(v) for k, v in logs.items()}}

    def d_step(self, loss_fn: LossFn) -> dict:
        """One discriminator update; nothing when D is frozen."""
        if self.freeze_discriminator:
            return {}
        out = self._update("discriminator", loss_fn, self.opt_d, self.scaler_d, list(self.discriminator.parameters()))
        if self.critic_clip is not None:
            clip_weights(self.discriminator, self.critic_clip)
        return out

    def g_step(self, loss_fn: LossFn) -> dict:
        """One generator update with D's parameters held out of the graph's leaves.
        Also the supervised pre-training and warm-up steps (closures that skip D)."""
        params = [p for g in self.generators for p in g.parameters()]
        with no_param_grads(self.discriminator):
            return self._update("generator", loss_fn, self.opt_g, self.scaler_g, params)

    def step(self, d_loss_fn: LossFn, g_loss_fn: LossFn) -> dict:
        """One iteration: D update, then G update with D frozen. Returns the logged losses."""
        logs = self.d_step(d_loss_fn)
        logs.update(self.g_step(g_loss_fn))
        self.step_count += 1
        return logs

    def close(self) -> None:
        """Give D back its mode and gradient flags (after ``freeze_discriminator``)."""
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def gan_step(generator: nn.Module | Sequence[nn.Module], discriminator: nn.Module, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, d_loss_fn: LossFn, g_loss_fn: LossFn,
             device: torch.device | str = "cpu", amp: bool = False) -> dict:
    """A single D-then-G iteration without keeping a trainer (no loss scaler state:
    use :class:`AdversarialTrainer` for AMP over many steps)."""
    return AdversarialTrainer(generator, discriminator, opt_g, opt_d, device=device, amp=amp).step(d_loss_fn, g_loss_fn)
