"""Training the staining CycleGAN as in Combalia et al. 2019: unpaired Gareau-stained
confocal (domain A) and H&E (domain B) images, Adam 2e-4, progressive patch size.

The paper trains on 256x256 patches first, then on 512x512 patches "so that the
architecture could learn features seen at a higher scale" with learning-rate decay.
Here the two stages are counted in steps (``steps_256``, then ``steps_512``); the lr is
constant in the first and decays linearly to zero over the second (CycleGAN's rule).
The losses are CycleGAN's: least squares GAN, L1 cycle consistency (weight 10) and L1
identity (0.5 x the cycle weight), with a pool of 50 past fakes per discriminator.

Crops, flips and the pools draw from one seeded numpy generator and the weights from
``torch.manual_seed(seed)``, so a CPU run is reproducible. The caller's ``keep`` gets a
CPU copy of G_AB's weights (the shipped staining model) at every preview point and
when the job is stopped; copies are taken between steps, so they are always consistent.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch.nn.functional import l1_loss

from ...core import distributed
from ...core.device import autocast, preflight
from ...core.errors import InputError, TrainingError
from ...core.jobs import Progress
from .cyclegan import STRIDE, ImagePool, ResnetGenerator, lsgan_loss, patch_discriminator

METHOD = "combalia2019-cyclegan"
MIN_CROP = 32  # the 70x70 PatchGAN needs this much to give a score map


def lr_at(step: int, steps_256: int, steps_512: int, lr: float) -> float:
    """Learning rate of training step ``step`` (1-based): ``lr`` in the first stage, then a
    linear decay over the second stage, reaching ``lr / (steps_512 + 1)`` at its last step
    and 0 after it."""
    decayed = max(0, step - steps_256) / (steps_512 + 1)
    return float(lr * max(0.0, 1.0 - decayed))


def check_rgb_images(images, domain: str, min_size: int) -> list[np.ndarray]:
    """float32 (H, W, 3) copies in [0, 1]; one clear InputError for anything else."""
    if images is None or len(images) == 0:
        raise InputError(f"Give at least one {domain} image to train the staining CycleGAN on.")
    out = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise InputError(f"{domain} image {i} has shape {a.shape}; the CycleGAN needs RGB images "
                             "(height, width, 3).")
        if a.dtype == np.uint8:
            a = a / 255.0
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise InputError(f"{domain} image {i} has NaN or infinite values; fix or mask them first.")
        if a.min() < -1e-3 or a.max() > 1 + 1e-3:
            raise InputError(f"{domain} image {i} has values in [{a.min():.3g}, {a.max():.3g}]; give RGB "
                             "values in [0, 1].")
        if min(a.shape[:2]) < min_size:
            raise InputError(f"{domain} image {i} is {a.shape[0]}x{a.shape[1]}; training crops are {min_size} px, "
                             f"so every image must be at least {min_size}x{min_size}.")
        out.append(np.clip(a, 0.0, 1.0))
    return out


def random_crops(images, n: int, size: int, rng) -> torch.Tensor:
    """(n, 3, size, size) in [-1, 1]: random crops of random images, randomly flipped."""
    batch = np.empty((n, 3, size, size), np.float32)
    for k in range(n):
        im = images[rng.integers(len(images))]
        y0, x0 = rng.integers(0, im.shape[0] - size + 1), rng.integers(0, im.shape[1] - size + 1)
        c = im[y0: y0 + size, x0: x0 + size]
        if rng.random() < 0.5:
            c = c[::-1]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        batch[k] = c.transpose(2, 0, 1)
    return torch.from_numpy(batch * 2.0 - 1.0)


def stain_preview(generator: torch.nn.Module, rgb: np.ndarray, device) -> np.ndarray:
    """``generator`` (eval mode) on a whole [0, 1] RGB image, padded to a multiple of 4."""
    h, w = rgb.shape[:2]
    ph, pw = -h % STRIDE, -w % STRIDE
    x = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > max(ph, pw) else "edge")
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None] * 2.0 - 1.0).to(device)
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            y = generator(x).float()
    finally:
        generator.train(was_training)
    return ((y[0, :, :h, :w].cpu().numpy().transpose(1, 2, 0) + 1.0) / 2.0).clip(0, 1).astype(np.float32)


def recalibrate_norm(generator: torch.nn.Module, images, size: int, n: int, rng, device) -> None:
    """Re-estimate the generator's batch-norm statistics from ``n`` crops of ``images``.

    Trained one image at a time, batch norm normalises each crop by its own statistics;
    in eval mode (tiling) it uses running averages instead, which lag the changing
    weights and mix in the identity and cycle inputs (H&E, fake confocal). Averaging the
    per-crop statistics of the current weights on the images the model will stain makes
    the eval-mode output match the training-mode one (measured: the mean colour error of
    a 150-step test run fell from up to 0.39 to 0.04 of the domain gap).
    """
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if n < 1 or not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = generator.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the crops
    generator.train()
    try:
        with torch.no_grad():
            for _ in range(n):
                generator(random_crops(images, 1, size, rng).to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        generator.train(was_training)


def cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def train_cyclegan(a_images, b_images, *, steps_256: int, steps_512: int, crop_small: int = 256,
                   crop_large: int = 512, batch_size: int = 1, ngf: int = 16, n_blocks: int = 6, ndf: int = 64,
                   lr: float = 2e-4, beta1: float = 0.5, cycle_weight: float = 10.0, identity_weight: float = 0.5,
                   pool_size: int = 50, seed: int = 0, device="cpu", preview=None, preview_every: int = 200,
                   on_preview=None, keep=None, generators=None, norm_crops: int = 32, upsample: str = "transposed"):
    """Generator (progress): train G_AB (A -> B, the staining model) and G_BA, and their
    discriminators; yields a :class:`Progress` per step and returns a summary.

    ``on_preview(step, rgb)`` gets G_AB's output on ``preview`` (RGB in [0, 1]) and
    ``keep(state, metrics, step)`` a CPU copy of G_AB's state dict, every
    ``preview_every`` steps and at the end; ``keep`` is called once more when the job is
    stopped. ``generators=(G_AB, G_BA)`` fine-tunes those in place (G_BA None: a fresh
    one). The summary has ``steps``, the final losses, ``seconds``, G_AB's ``arch`` and
    ``generator_state``. Before each of these, G_AB's batch-norm statistics are
    re-estimated on ``norm_crops`` crops of the A images (:func:`recalibrate_norm`).
    """
    if crop_small < MIN_CROP or crop_small % STRIDE:
        raise InputError(f"The small crop must be a multiple of {STRIDE} and at least {MIN_CROP} px, not {crop_small}.")
    if steps_256 < 0 or steps_512 < 0 or steps_256 + steps_512 == 0 or batch_size < 1 or preview_every < 1:
        raise InputError("Give a positive number of steps, batch size and preview interval.")
    a_images = check_rgb_images(a_images, "Domain A (confocal)", crop_small)
    b_images = check_rgb_images(b_images, "Domain B (H&E)", crop_small)
    if preview is not None:
        preview = check_rgb_images([preview], "Preview", STRIDE)[0]
    smallest = min(min(im.shape[:2]) for im in a_images + b_images)
    large = max(crop_small, min(crop_large, smallest) // STRIDE * STRIDE)
    total = steps_256 + steps_512

    device = torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(distributed.rank_seed(seed))  # under torchrun, each rank its own crops
    keep = keep if distributed.is_main() else None  # rank 0 judges and saves checkpoints
    g_ab, g_ba = generators if generators is not None else (None, None)
    g_ab = g_ab if g_ab is not None else ResnetGenerator(ngf=ngf, n_blocks=n_blocks, upsample=upsample)
    g_ba = g_ba if g_ba is not None else ResnetGenerator(ngf=ngf, n_blocks=n_blocks, upsample=upsample)
    d_a, d_b = patch_discriminator(ndf=ndf), patch_discriminator(ndf=ndf)
    for net in (g_ab, g_ba, d_a, d_b):
        net.to(device).train()
        distributed.broadcast_weights(net)  # under torchrun: every rank starts from rank 0's weights
    gen_params = list(g_ab.parameters()) + list(g_ba.parameters())
    opt_g = torch.optim.Adam(gen_params, lr=lr, betas=(beta1, 0.999))
    opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), lr=lr, betas=(beta1, 0.999))
    pool_a, pool_b = ImagePool(pool_size, rng), ImagePool(pool_size, rng)
    # float16 autocast on CUDA, with a loss scaler; float32 elsewhere
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    w_idt = identity_weight * cycle_weight

    step, kept_step = 0, 0
    metrics: dict[str, float] = {}
    started = time.perf_counter()

    def checkpoint(at_step: int) -> None:
        nonlocal kept_step
        # the same crops at every checkpoint, drawn apart from training's random stream
        recalibrate_norm(g_ab, a_images, size, norm_crops, np.random.default_rng([seed, 1]), device)
        if on_preview is not None and preview is not None:
            on_preview(at_step, stain_preview(g_ab, preview, device))
        if keep is not None:
            keep(cpu_state(g_ab), dict(metrics), at_step)
        kept_step = at_step

    try:
        for step in range(1, total + 1):
            size = crop_small if step <= steps_256 else large
            if step == 1 or step == steps_256 + 1:
                preflight(g_ab, device, (size, size), batch_size, 3, training=True)
                pool_a.clear()  # a stored 256 fake cannot be batched with 512 ones
                pool_b.clear()
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, steps_256, steps_512, lr)
            real_a = random_crops(a_images, batch_size, size, rng).to(device)
            real_b = random_crops(b_images, batch_size, size, rng).to(device)

            # generators: fool both discriminators, close both cycles, keep the target domain unchanged
            for p in list(d_a.parameters()) + list(d_b.parameters()):
                p.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            with autocast(device, use_amp):
                fake_b, fake_a = g_ab(real_a), g_ba(real_b)
                loss_adv = lsgan_loss(d_b(fake_b), True) + lsgan_loss(d_a(fake_a), True)
                loss_cycle = cycle_weight * (l1_loss(g_ba(fake_b).float(), real_a)
                                             + l1_loss(g_ab(fake_a).float(), real_b))
                loss_idt = (w_idt * (l1_loss(g_ab(real_b).float(), real_b) + l1_loss(g_ba(real_a).float(), real_a))
                            if w_idt > 0 else torch.zeros((), device=device))
                loss_g = loss_adv + loss_cycle + loss_idt
            if not torch.isfinite(loss_g):
                raise TrainingError(f"The generator loss became {loss_g.item()} at step {step}; lower the "
                                    "learning rate.")
            scaler.scale(loss_g).backward()
            distributed.average_gradients(gen_params)  # under torchrun: the ranks' mean, as DDP would
            scaler.step(opt_g)

            # discriminators: real vs. pooled fakes, the loss halved as in CycleGAN
            for p in list(d_a.parameters()) + list(d_b.parameters()):
                p.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            with autocast(device, use_amp):
                loss_d_b = 0.5 * (lsgan_loss(d_b(real_b), True) + lsgan_loss(d_b(pool_b.query(fake_b)), False))
                loss_d_a = 0.5 * (lsgan_loss(d_a(real_a), True) + lsgan_loss(d_a(pool_a.query(fake_a)), False))
                loss_d = loss_d_a + loss_d_b
            if not torch.isfinite(loss_d):
                raise TrainingError(f"The discriminator loss became {loss_d.item()} at step {step}; lower the "
                                    "learning rate.")
            scaler.scale(loss_d).backward()
            distributed.average_gradients(opt_d.param_groups[0]["params"])
            scaler.step(opt_d)
            scaler.update()

            metrics = distributed.mean_metrics(  # under torchrun: the ranks' mean
                {"loss_g": float(loss_g.detach()), "loss_d": float(loss_d.detach()),
                 "loss_cycle": float(loss_cycle.detach()), "loss_identity": float(loss_idt.detach())})
            if step % preview_every == 0 or step == total:
                checkpoint(step)
            yield Progress(step, total, f"{size} px crops, step {step}/{total}", metrics)
    except GeneratorExit:  # stopped: hand over what was learned since the last preview
        if step > kept_step and keep is not None:
            checkpoint(step)
        raise
    finally:
        for net in (g_ab, g_ba, d_a, d_b):
            net.eval()
    return {"steps": step, **metrics, "seconds": time.perf_counter() - started, "method": METHOD,
            "arch": copy.deepcopy(getattr(g_ab, "arch", None)), "generator_state": cpu_state(g_ab)}
