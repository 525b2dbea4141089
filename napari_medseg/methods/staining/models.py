"""Training jobs that write registry versions of the two staining models.

``despeckle``: the despeckling network; ``stain_cyclegan``: the CycleGAN generator that
maps Gareau-stained confocal to H&E. Each job is a progress generator; the best state so
far is saved as a new version when it ends, also when it is stopped.
"""

from __future__ import annotations

import numpy as np

from ...core import nets
from ...core.checkpoints import data_fingerprint
from ...core.errors import InputError
from .speckle import PAPER_STD
from .training import ARCH, METHOD, MODEL_NAME, train_despeckler

#: the shipped despeckler serves the paper's level and the benchmark's matched level
BLIND_STD = (0.1, 0.6)


def as_rgb_list(images, what: str) -> list[np.ndarray]:
    """uint8/float RGB arrays as a list; one clear message for anything else."""
    out = []
    for i, im in enumerate(images or []):
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[-1] not in (3, 4):
            raise InputError(f"{what} image {i} has shape {im.shape}; give RGB images (height, width, 3).")
        if im.dtype.kind == "f" and not np.isfinite(im).all():
            raise InputError(f"{what} image {i} has NaN or infinite values.")
        out.append(im[..., :3])
    if not out:
        raise InputError(f"Give at least one {what.lower()} image.")
    return out


def train_despeckle_model(registry, train_rgb, val_rgb, *, steps: int = 2000, batch_size: int = 8, crop: int = 256,
                          lr: float = 5e-4, std=PAPER_STD, seed: int = 0, device="cpu", resume=None,
                          data: str = "user images", on_best=None):
    """Generator: train (or fine-tune ``resume=(state, meta)``) the despeckler; save the best
    validation PSNR as a new ``despeckle`` version. Returns ``{"entry", ...summary}``.

    ``on_best(model, metrics, step)``: called with the model at each new best (previews)."""
    train_rgb, val_rgb = as_rgb_list(train_rgb, "Training"), as_rgb_list(val_rgb, "Validation")
    model = nets.build(ARCH)
    if resume is not None:
        model.load_state_dict(resume[0])
    best: dict = {}

    def keep(state, metrics, step):
        best.update(state=state, metrics=metrics, step=step)
        if on_best is not None:
            on_best(model, metrics, step)

    config = {"steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr, "seed": seed,
              "speckle_std": list(std) if not np.isscalar(std) else float(std), "data": data,
              "image_shapes": [list(im.shape) for im in train_rgb],
              "resumed_from": None if resume is None else resume[1].get("version")}
    gen = train_despeckler(model, train_rgb, val_rgb, steps=steps, batch_size=batch_size, crop=crop, lr=lr,
                           std=std, seed=seed, device=device, keep=keep)
    result = None
    try:
        result = yield from gen
    finally:
        gen.close()
        if best.get("state") is not None:
            best["entry"] = registry.save_new_version(
                MODEL_NAME, best["state"], method=METHOD, arch=ARCH, config=config,
                metrics={**best["metrics"], "best_step": best["step"]}, data_fingerprint=data_fingerprint(*train_rgb))
    return {**(result or {}), "entry": best.get("entry")}
