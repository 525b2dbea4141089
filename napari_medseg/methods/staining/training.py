"""Training the despeckling network as in the paper: inverted luma of histology images,
artificial speckle (std 0.2), random flips and 256x256 crops, MSE, Adam 5e-4.

Clean crops and their noise come from one seeded generator, so a run is reproducible;
the best validation PSNR so far is kept, also when the job is stopped.
"""

from __future__ import annotations

import numpy as np
import torch

from ...core.errors import InputError
from ...core.training import train_supervised
from .despeckle import ARCH_NAME
from .speckle import PAPER_STD, add_speckle, inverted_luma

MODEL_NAME = "despeckle"
METHOD = "combalia2019-despeckle"
ARCH = {"name": ARCH_NAME, "kwargs": {}}
TISSUE_MEAN, TISSUE_TRIES = 0.1, 10  # a crop's mean inverted luma that counts as tissue; draws to find one


def luma_images(rgb_images) -> list[np.ndarray]:
    """Inverted luma of each RGB image; every image must be at least 32 px on a side."""
    out = []
    for i, rgb in enumerate(rgb_images):
        y = inverted_luma(rgb)
        if min(y.shape) < 32:
            raise InputError(f"Training image {i} is {y.shape[0]}x{y.shape[1]}; despeckling needs 32 px or more.")
        out.append(y)
    if not out:
        raise InputError("Give at least one histology image to train the despeckler on.")
    return out


def crops(images, n: int, size: int, rng) -> np.ndarray:
    """``n`` random ``size`` crops (smaller images are used whole), randomly flipped; each
    is redrawn up to ``TISSUE_TRIES`` times until it holds tissue."""
    size = min(size, *(min(im.shape) for im in images))
    batch = np.empty((n, 1, size, size), np.float32)
    for k in range(n):
        for _try in range(TISSUE_TRIES):  # mostly tissue: empty glass teaches nothing
            im = images[rng.integers(len(images))]
            y0, x0 = rng.integers(0, im.shape[0] - size + 1), rng.integers(0, im.shape[1] - size + 1)
            c = im[y0: y0 + size, x0: x0 + size]
            if c.mean() >= TISSUE_MEAN:
                break
        if rng.random() < 0.5:
            c = c[::-1]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        batch[k, 0] = c
    return batch


def weighted_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE weighted per pixel: ``target`` is (clean, weight) on the channel axis."""
    return ((pred - target[:, :1]) ** 2 * target[:, 1:]).mean()


def distill_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted MSE to the clean image plus the same to the teacher's estimate: ``target``
    is (clean, weight, teacher) on the channel axis (knowledge distillation, Hinton et al.
    2015, with the ground truth kept in the loss)."""
    w = target[:, 1:2]
    return (((pred - target[:, :1]) ** 2 + (pred - target[:, 2:3]) ** 2) * w).mean()


def psnr(clean: np.ndarray, estimate: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(clean, np.clip(estimate, 0, 1), data_range=1.0))


def train_despeckler(model: torch.nn.Module, rgb_images, val_rgb_images, *, steps: int = 2000, batch_size: int = 8,
                     crop: int = 256, lr: float = 5e-4, std=PAPER_STD, seed: int = 0, device="cpu",
                     keep=None, augment: bool = False, val_stds=None, val_crop: int | None = None,
                     pool_size: int = 24, refresh: int = 100, cosine: bool = False, val_every: int | None = None,
                     teacher: torch.nn.Module | None = None):
    """Generator (progress): train ``model`` in place; ``keep(state, metrics, step)`` gets each
    new best by validation PSNR. ``std``: the paper's single level (0.2), or a (low, high)
    range drawn per crop, for one model that serves several noise levels.

    ``augment``: crops come from a pool of :mod:`.augment` redraws (stain, zoom, gamma,
    luma or stain density), renewed every ``refresh`` steps, half of the speckle is
    spatially correlated, and each crop's error is weighted by 1/std so that every
    noise level counts about alike in dB.
    ``val_stds``: validate at each of these levels and monitor their mean PSNR (default:
    0.2 when the range holds it); ``cosine``: the learning rate decays over the run.
    ``teacher`` (with ``augment``): a trained despeckler whose estimate of each noisy crop
    is a second target (:func:`distill_mse`), to train a narrower network from it.
    Returns train_supervised's summary."""
    from . import augment as aug

    train, val = luma_images(rgb_images), luma_images(val_rgb_images)
    if augment:  # validate on reflectance-like images too: the eosin density of each
        from .confocal import stain_densities

        val = val + [stain_densities(rgb)[1] for rgb in val_rgb_images]
    from ...core.distributed import rank_seed

    rng = np.random.default_rng(rank_seed(seed))  # under torchrun, each rank its own crops and noise
    torch.manual_seed(seed)
    vrng = np.random.default_rng(seed + 1)
    val_clean = crops(val, max(8, 2 * len(val)), val_crop or crop, vrng)

    low, high = (std, std) if np.isscalar(std) else (float(std[0]), float(std[1]))
    if not 0 <= low <= high:
        raise InputError(f"The speckle std range must satisfy 0 <= low <= high; got {std}.")
    if val_stds is None:
        val_stds = (low if low == high else PAPER_STD if low <= PAPER_STD <= high else (low + high) / 2,)
    val_stds = tuple(float(v) for v in val_stds)
    state = {"pool": None}

    def source(step):
        if not augment:
            return train
        if state["pool"] is None or step % refresh == 0:
            state["pool"] = aug.pool(rgb_images, pool_size, rng, min_side=crop)
        return state["pool"]

    def next_batch(step):
        clean = crops(source(step), batch_size, crop, rng)
        if augment and rng.random() < 0.5:
            clean = np.ascontiguousarray(np.rot90(clean, 1, axes=(2, 3)))
        # one noise level per crop: a blind despeckler when a range is given
        stds = rng.uniform(low, high, (batch_size, 1, 1, 1)).astype(np.float32)
        unit = (aug.unit_noise(clean.shape, rng) if augment
                else rng.standard_normal(clean.shape).astype(np.float32))
        noisy = torch.from_numpy(clean * (1.0 + stds * unit))
        if not augment:
            return noisy, torch.from_numpy(clean)
        # each crop's squared error over its std: a denoiser's error grows about linearly
        # with the std (v1: 5.3x from 0.1 to 0.5), so every level counts about alike in dB
        weight = np.broadcast_to(PAPER_STD / stds, clean.shape).astype(np.float32)
        parts = [clean, weight]
        if teacher is not None:
            with torch.no_grad():
                parts.append(teacher(noisy.to(device)).float().cpu().numpy())
        return noisy, torch.from_numpy(np.concatenate(parts, axis=1))

    val_noisy = {v: add_speckle(val_clean, v, np.random.default_rng(seed + 2 + k)) for k, v in enumerate(val_stds)}

    def validate(net):
        out = {}
        for v, noisy in val_noisy.items():
            with torch.no_grad():
                est = torch.cat([net(torch.from_numpy(noisy[i: i + 8]).to(device)).float().cpu()
                                 for i in range(0, len(noisy), 8)]).numpy()
            out[f"psnr_std{v:g}"] = float(np.mean([psnr(c[0], o[0]) for c, o in zip(val_clean, est)]))
            out[f"psnr_noisy_std{v:g}"] = float(np.mean([psnr(c[0], n[0]) for c, n in zip(val_clean, noisy)]))
        out["psnr"] = float(np.mean([out[f"psnr_std{v:g}"] for v in val_stds]))
        out["psnr_noisy"] = float(np.mean([out[f"psnr_noisy_std{v:g}"] for v in val_stds]))
        return out

    if teacher is not None and not augment:
        raise InputError("Distillation from a teacher uses the real-image recipe (augment=True).")
    if teacher is not None:
        teacher = teacher.to(device).eval()
    loss = distill_mse if teacher is not None else weighted_mse if augment else torch.nn.functional.mse_loss
    return (yield from train_supervised(model, next_batch, loss,
                                        steps=steps, device=device,
                                        lr=lr, validate=validate, val_every=val_every or max(1, steps // 10),
                                        monitor="psnr", save_best=keep, cpu_bf16=False, cosine=cosine))
