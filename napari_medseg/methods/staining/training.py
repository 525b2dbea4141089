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


def psnr(clean: np.ndarray, estimate: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(clean, np.clip(estimate, 0, 1), data_range=1.0))


def train_despeckler(model: torch.nn.Module, rgb_images, val_rgb_images, *, steps: int = 2000, batch_size: int = 8,
                     crop: int = 256, lr: float = 5e-4, std: float = PAPER_STD, seed: int = 0, device="cpu",
                     keep=None):
    """Generator (progress): train ``model`` in place; ``keep(state, metrics, step)`` gets each
    new best by validation PSNR (at std 0.2 when the range holds it). ``std``: the paper's
    single level (0.2), or a (low, high) range drawn per crop, for one model that serves
    several noise levels. Returns train_supervised's summary."""
    train, val = luma_images(rgb_images), luma_images(val_rgb_images)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    vrng = np.random.default_rng(seed + 1)
    val_clean = crops(val, max(8, 2 * len(val)), crop, vrng)

    low, high = (std, std) if np.isscalar(std) else (float(std[0]), float(std[1]))
    if not 0 <= low <= high:
        raise InputError(f"The speckle std range must satisfy 0 <= low <= high; got {std}.")
    val_std = low if low == high else PAPER_STD if low <= PAPER_STD <= high else (low + high) / 2

    def next_batch(_step):
        clean = crops(train, batch_size, crop, rng)
        # one noise level per crop: a blind despeckler when a range is given
        stds = rng.uniform(low, high, (batch_size, 1, 1, 1)).astype(np.float32)
        noisy = clean * (1.0 + stds * rng.standard_normal(clean.shape).astype(np.float32))
        return torch.from_numpy(noisy), torch.from_numpy(clean)

    val_noisy = add_speckle(val_clean, val_std, vrng)

    def validate(net):
        with torch.no_grad():
            out = net(torch.from_numpy(val_noisy).to(device)).float().cpu().numpy()
        return {"psnr": float(np.mean([psnr(c[0], o[0]) for c, o in zip(val_clean, out)])),
                "psnr_noisy": float(np.mean([psnr(c[0], n[0]) for c, n in zip(val_clean, val_noisy)]))}

    return (yield from train_supervised(model, next_batch, torch.nn.functional.mse_loss, steps=steps, device=device,
                                        lr=lr, validate=validate, val_every=max(1, steps // 10), monitor="psnr",
                                        save_best=keep, cpu_bf16=False))
