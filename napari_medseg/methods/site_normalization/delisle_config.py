"""Settings of the normalisation training (Delisle et al. 2019), the sampler that puts patches of
every domain in each batch, and the checks made before training. See :mod:`.delisle`."""

from __future__ import annotations

import dataclasses

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ...core.errors import InputError
from .delisle_eval import MODES, _check_labelled, _input
from .options import DEFAULTS as _SHORT  # the dock's short-run defaults, declared once
from .sites import check_domains


@dataclass
class NormalizationConfig:
    spatial_dims: int = 3
    patch_size: tuple[int, ...] | None = None  # default 32^3 (the authors' patches) or 64x64
    batch_size: int = 8  # patches per domain and step (the authors: 16 per step, two domains)
    steps: int = 3000  # warm-up included
    warmup_steps: int = 500  # G on identity MSE only
    optimizer: str = "sgd"  # "sgd" (the paper) or "adam"
    lr_generator: float = 1e-4
    lr_segmenter: float = 1e-3
    lr_discriminator: float = 1e-4
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 0.1 with SGD (the paper), 0 with Adam
    plateau_patience: int | None = 3  # validations without improvement before lr / 10
    adv_weight: float = 1.0
    identity_weight: float = 0.0  # MSE(G(x), x) kept after the warm-up (the paper: 0)
    dice_weights: tuple[float, ...] | None = None  # weighted Dice, one weight per class
    warmup_segmenter: bool = True  # S learns on detached G(x) during the warm-up
    n_classes: int = 4
    mode: str = "adversarial"
    seed: int = 0
    device: str = "cpu"
    val_every: int = 100
    amp: bool = True
    generator_features: tuple[int, ...] = (16, 32, 64)
    # "linear": FullResolutionUNet, the paper's 3-D U-Net with a full-resolution level (issue 20);
    # "resize" (nearest + convolution) and "transposed" build MONAI's UNet, as models saved before it
    generator_upsample: str = "linear"
    segmenter_features: tuple[int, ...] = (16, 32, 64, 128)
    discriminator_features: tuple[int, ...] = (16, 32, 64, 64)

    @property
    def patch(self) -> tuple[int, ...]:
        default = (32, 32, 32) if self.spatial_dims == 3 else (64, 64)
        return tuple(int(p) for p in (self.patch_size or default))



def short_run_config(*, n_classes: int, spatial_dims: int, mode: str = "adversarial", steps: int = _SHORT["steps"],
                     warmup_steps: int = _SHORT["warmup_steps"], patch: int = _SHORT["patch"],
                     batch_size: int = _SHORT["batch_size"], adv_weight: float = _SHORT["adv_weight"],
                     identity_weight: float = _SHORT["identity_weight"], lr: float = _SHORT["lr"],
                     features: int = _SHORT["features"], seed: int = _SHORT["seed"], device: str = "cpu",
                     advanced: dict | None = None) -> NormalizationConfig:
    """A configuration for short runs on a user's own domains (the dock's defaults): Adam at one
    rate for G, S and D, no plateau schedule, validation ten times per run, every network
    ``features`` wide at its first level (doubled per level). ``advanced``: any other
    :class:`NormalizationConfig` field, by name."""
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}; choose one of {list(MODES)}.")
    w, steps = int(features), int(steps)
    cfg = NormalizationConfig(
        spatial_dims=spatial_dims, patch_size=(int(patch),) * spatial_dims, batch_size=int(batch_size), steps=steps,
        warmup_steps=int(warmup_steps), optimizer="adam", lr_generator=float(lr), lr_segmenter=float(lr),
        lr_discriminator=float(lr), plateau_patience=None, adv_weight=float(adv_weight),
        identity_weight=float(identity_weight), n_classes=int(n_classes), mode=mode, seed=int(seed), device=str(device),
        val_every=max(1, steps // 10), generator_features=(w, 2 * w, 4 * w), segmenter_features=(w, 2 * w, 4 * w, 8 * w),
        discriminator_features=(w, 2 * w, 4 * w, 4 * w))
    known = {f.name for f in dataclasses.fields(NormalizationConfig)}
    unknown = sorted(set(advanced or {}) - known)
    if unknown:
        raise InputError(f"Unknown advanced setting(s) {unknown}; NormalizationConfig has {sorted(known)}.")
    return dataclasses.replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in (advanced or {}).items()})

class DomainPatches:
    """Every batch holds ``n`` patches of every domain, with the domain's index (0..K-1).

    Patches are centred on a random foreground voxel (labels > 0; the paper's patches are
    centred on foreground) of a random image of the domain, shifted to stay inside it;
    images smaller than the patch are padded with their minimum. No augmentation (the paper).
    In "standardized" mode the images are z-scored once, here.
    """

    def __init__(self, domains: Mapping, patch, rng: np.random.Generator, mode: str = "adversarial"):
        self.patch, self.rng, self.domains = tuple(patch), rng, []
        for items in domains.values():
            per = []
            for img, lab in items:
                img, lab = _input(img, mode), np.asarray(lab, np.int64)
                pad = [(0, max(p - n, 0)) for p, n in zip(self.patch, img.shape)]
                img, lab = np.pad(img, pad, constant_values=float(img.min())), np.pad(lab, pad)
                fg = np.flatnonzero(lab > 0)
                per.append((img, lab, fg if fg.size else None))
            self.domains.append(per)

    def _crop(self, img, lab, fg):
        rng = self.rng
        c = np.unravel_index(int(fg[rng.integers(fg.size)]), img.shape) if fg is not None else \
            [int(rng.integers(n)) for n in img.shape]
        sl = tuple(slice(s, s + p) for s, p in
                   ((min(max(int(ci) - p // 2, 0), n - p), p) for ci, p, n in zip(c, self.patch, img.shape)))
        return img[sl], lab[sl]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images (K*n, 1, *patch) float32, labels (K*n, 1, *patch) int64, domains (K*n,) int64)."""
        xs, ys, ds = [], [], []
        for k, per in enumerate(self.domains):
            for _ in range(int(n)):
                x, y = self._crop(*per[int(self.rng.integers(len(per)))])
                xs.append(x), ys.append(y), ds.append(k)
        return (torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)[:, None]),
                torch.tensor(ds, dtype=torch.long))


def check_data(domains, val, cfg: NormalizationConfig) -> None:
    """One :class:`InputError` for bad domains, validation images or settings, before training."""
    if cfg.mode not in MODES:
        raise InputError(f"Unknown mode {cfg.mode!r}; choose one of {list(MODES)}.")
    if cfg.optimizer not in ("sgd", "adam"):
        raise InputError(f"Unknown optimizer {cfg.optimizer!r}; choose 'sgd' (the paper) or 'adam'.")
    if cfg.steps < 1 or cfg.warmup_steps < 0 or cfg.batch_size < 1 or cfg.val_every < 1:
        raise InputError("steps, batch_size and val_every must be positive and warmup_steps not negative.")
    if cfg.mode == "none" and isinstance(domains, Mapping) and len(domains) == 1:
        name, items = next(iter(domains.items()))  # no adaptation may train on one site (cross-site rows)
        dims = check_domains({name: items, f"{name} (again)": items})
    else:
        dims = check_domains(domains)
    if dims != cfg.spatial_dims or len(cfg.patch) != dims:
        raise InputError(f"The images are {dims}-D; spatial_dims is {cfg.spatial_dims} and the patch "
                         f"{cfg.patch} has {len(cfg.patch)} axes. They must agree.")
    _check_labelled(domains, "training", cfg.n_classes)
    if val:
        _check_labelled(val, "validation", cfg.n_classes)
        bad = [s for s, items in val.items() for img, _ in items if np.ndim(img) != dims]
        if bad:
            raise InputError(f"Validation domain {bad[0]!r} has images that are not {dims}-D like the training ones.")
    if cfg.dice_weights is not None and len(cfg.dice_weights) != cfg.n_classes:
        raise InputError(f"{len(cfg.dice_weights)} Dice weights for {cfg.n_classes} classes.")
