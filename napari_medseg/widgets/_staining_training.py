"""Training from the Confocal digital staining widget: which images, which job, and the
previews it shows while it runs (kept apart from the controller to keep both small)."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..methods.staining.card import MODEL_NAMES
from ._common import layer_level

VAL_FRACTION = 0.2  # the bottom rows of each user image validate
MAX_LAYER_PIXELS = 64_000_000  # an H&E layer is read whole for training


def he_images(settings):
    """(train, validation, description) H&E images from the settings."""
    if settings.he_layers:
        images = []
        for layer in settings.he_layers:
            data, _ = layer_level(layer, 0)
            if not getattr(layer, "rgb", False):
                raise InputError(f"'{layer.name}' is not an RGB layer; pick H&E images.")
            if np.prod(data.shape[:2]) > MAX_LAYER_PIXELS:
                raise InputError(f"'{layer.name}' is {data.shape[0]}x{data.shape[1]} px; crop a region of at most "
                                 f"{MAX_LAYER_PIXELS // 1_000_000} megapixels to train on.")
            images.append(np.asarray(data)[..., :3])
        what = "layers " + ", ".join(lay.name for lay in settings.he_layers)
    elif settings.he_folder:
        from ..methods.staining.hne import read_images

        images, what = read_images(settings.he_folder), f"folder {settings.he_folder}"
    else:
        from ..methods.staining import hne

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


def start_training(c):
    """Start the job the settings describe on ``c.runner``; returns the worker."""
    from ..methods.staining import models

    c._check_idle()
    s = c.settings
    train, val, what = he_images(s)
    device = c._device()
    name = MODEL_NAMES[s.train_model]
    resume = s.finetune and bool(c.registry.list(name))
    if s.train_model == "despeckle":
        from ..methods.staining.speckle import PAPER_STD, add_speckle, inverted_luma

        state = None
        if resume:
            model, meta = c.registry.get(name).load(device)
            state = (model.state_dict(), meta)
        clean = inverted_luma(val[0])[:256, :256]
        noisy = add_speckle(clean, PAPER_STD, np.random.default_rng(0))

        def on_best(model, _metrics, _step):
            import torch

            with torch.no_grad():
                was = model.training
                model.eval()
                out = model(torch.from_numpy(noisy)[None, None].to(device)).float().cpu().numpy()[0, 0]
                model.train(was)
            gray = np.concatenate([np.clip(noisy, 0, 1), np.clip(out, 0, 1), clean], axis=1)
            c._pending = np.repeat(gray[..., None], 3, axis=2)  # noisy | despeckled | clean

        # the real-image recipe, as `napari-medseg train despeckle` uses by default
        gen = models.train_despeckle_model(c.registry, train, val, steps=s.steps, crop=min(128, _smallest(train)),
                                           batch_size=8, device=device, resume=state, data=what, on_best=on_best,
                                           std=models.BLIND_STD, augment=True, val_stds=models.REAL_VAL_STDS,
                                           val_crop=min(128, _smallest(val)), median="gated", lr=3e-4)
    else:
        a_images = None
        if s.confocal_domain:
            fcm, rcm, _ = c.channels()
            if np.prod(fcm.shape) > MAX_LAYER_PIXELS:
                raise InputError("The confocal pair is too large to train on whole; crop a region first.")
            from ..methods.staining.pipeline import StainingNet, stain_array

            despeckler = models.shipped_despeckler(c.registry, device)
            a_images = [stain_array(StainingNet(despeckler=despeckler), np.asarray(fcm), np.asarray(rcm),
                                    device=device)]

        def on_preview(_step, rgb):
            c._pending = rgb

        crop = min(256, _smallest(train) // 4 * 4)
        gen = models.train_cyclegan_model(c.registry, train, val, a_images=a_images, steps_small=s.steps,
                                          steps_large=s.steps_large, crop_small=crop, crop_large=2 * crop,
                                          device=device, resume=resume, data=what, on_preview=on_preview,
                                          preview_every=max(1, (s.steps + s.steps_large) // 10))

    def on_done(result):
        entry = (result or {}).get("entry") if result else None
        if entry is None and c.runner.job is not None and c.runner.job.stopped and c.registry.list(name):
            entry = c.registry.get(name)
        c._result = entry
        if entry is not None:
            m = entry.meta.get("metrics", {})
            score = (f"validation PSNR {m['psnr']:.2f} dB" if "psnr" in m else
                     f"validation colour distance {m.get('color_distance', float('nan')):.2f}")
            c._say(f"Saved {entry.label}: {score}. It is the current {name} model now.")
            c._emit("trained", entry)

    return c.runner.start(gen, on_done=on_done, on_progress=c._on_train_progress)


def _smallest(images) -> int:
    return min(min(im.shape[:2]) for im in images)
