"""The staining method's training jobs as progress generators, Qt-free: which H&E images
train and validate, and the despeckler's or the CycleGAN's job on them. The dock and the
console call the same functions; each job writes a new registry version and hands a
preview image (RGB) to ``on_preview`` at every new best.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError
from .card import MODEL_NAMES

VAL_FRACTION = 0.2  # the bottom rows of each user image validate


def he_training_images(images: list | None = None, folder: str | None = None, what: str = ""):
    """(train, validation, description) H&E images: ``images`` (RGB arrays; ``what`` names
    them), else the images in ``folder``, else the bundled H&E and its held-out split. A
    user's image gives its bottom ``VAL_FRACTION`` of rows to validation."""
    if not images and folder:
        from .hne import read_images

        images, what = read_images(folder), f"folder {folder}"
    if not images:
        from . import hne

        s = hne.split()
        return s.train, s.val, "bundled H&E (" + s.sources[0] + ")"
    train, val = [], []
    for im in images:
        cut = int(im.shape[0] * (1 - VAL_FRACTION))
        if cut < 64 or im.shape[0] - cut < 32:
            raise InputError(f"An image of {im.shape[0]} rows is too small to keep {VAL_FRACTION:.0%} for validation.")
        train.append(im[:cut])
        val.append(im[cut:])
    return train, val, what


def _smallest(images) -> int:
    return min(min(im.shape[:2]) for im in images)


def despeckle_job(registry, train, val, *, steps: int, device, finetune: bool = True, data: str = "",
                  on_preview=None, distill_filters: int = 0, body: str = "conv"):
    """Train (or fine-tune the current) despeckler with the real-image recipe that
    ``napari-medseg train despeckle`` uses; the preview is noisy | despeckled | clean.
    ``distill_filters`` > 0: distil the current version into that many filters per layer
    instead (``train despeckle --distill --filters N``; a faster despeckler). ``body``: a
    new network's (``finetune`` off, or nothing to fine-tune), "conv" (the paper's) or
    "unet" (``train despeckle --body unet``); a fine-tune keeps the current version's."""
    from . import models
    from .speckle import PAPER_STD, add_speckle, inverted_luma

    name, state = MODEL_NAMES["despeckle"], None
    if finetune and not distill_filters and registry.list(name):
        model, meta = registry.get(name).load(device)
        state = (model.state_dict(), meta)
    clean = inverted_luma(val[0])[:256, :256]
    noisy = add_speckle(clean, PAPER_STD, np.random.default_rng(0))

    def on_best(model, _metrics, _step):
        if on_preview is None:
            return
        import torch

        with torch.no_grad():
            was = model.training
            model.eval()
            out = model(torch.from_numpy(noisy)[None, None].to(device)).float().cpu().numpy()[0, 0]
            model.train(was)
        gray = np.concatenate([np.clip(noisy, 0, 1), np.clip(out, 0, 1), clean], axis=1)
        on_preview(np.repeat(gray[..., None], 3, axis=2))

    return models.train_despeckle_model(registry, train, val, steps=steps, crop=min(128, _smallest(train)),
                                        batch_size=8, device=device, resume=state, data=data, on_best=on_best,
                                        std=models.BLIND_STD, augment=True, val_stds=models.REAL_VAL_STDS,
                                        val_crop=min(128, _smallest(val)), median="gated", lr=3e-4,
                                        distill_filters=distill_filters, arch=new_body(body))


def new_body(body: str):
    """The architecture of a new despeckler: None for the paper's (the default), or the U-shaped one."""
    if body not in ("conv", "unet"):
        raise InputError(f"A new despeckler's body is 'conv' or 'unet', not {body!r}.")
    if body == "conv":
        return None
    from .despeckle_unet import ARCH_NAME, FEATURES

    return {"name": ARCH_NAME, "kwargs": {"features": list(FEATURES)}}


def cyclegan_job(registry, train, val, *, steps: int, steps_large: int, device, finetune: bool = True,
                 a_images=None, data: str = "", on_preview=None):
    """Train (or fine-tune the current) stain CycleGAN: 256-px crops, then 512-px ones;
    ``a_images``: the confocal domain's images (default: derived from the H&E)."""
    from . import models

    name = MODEL_NAMES["cyclegan"]
    crop = min(256, _smallest(train) // 4 * 4)
    return models.train_cyclegan_model(registry, train, val, a_images=a_images, steps_small=steps,
                                       steps_large=steps_large, crop_small=crop, crop_large=2 * crop, device=device,
                                       resume=finetune and bool(registry.list(name)), data=data,
                                       on_preview=(lambda _step, rgb: on_preview(rgb)) if on_preview else None,
                                       preview_every=max(1, (steps + steps_large) // 10))


def stained_confocal(registry, fcm, rcm, device) -> np.ndarray:
    """The confocal pair stained by Gareau's mapping with the shipped despeckler: the
    CycleGAN's domain A when a user trains on their own confocal images."""
    from .models import shipped_despeckler
    from .pipeline import StainingNet, stain_array

    return stain_array(StainingNet(despeckler=shipped_despeckler(registry, device)), np.asarray(fcm),
                       np.asarray(rcm), device=device)
