"""Train and run the tissue detector (a MONAI U-Net) through the shared engine."""

from __future__ import annotations

import numpy as np
import torch

from ...core import nets
from ...core.checkpoints import data_fingerprint
from ...core.errors import InputError
from ...core.metrics import dice
from ...core.registry import Registry
from ...core.segment import POSTPROCESS, PREPROCESS
from ...core.tiling import predict_whole
from ...core.training import train_supervised
from .synthetic import synthetic_slide

MODEL_NAME = "tissue"
METHOD = "tissue"
ARCH = nets.bench_unet_arch(in_channels=3, out_channels=2)
IO = {"input": "rgb_uint8", "postprocess": "softmax", "classes": ["background", "tissue"], "stride": 8, "margin": 48}


def _to_input(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.moveaxis(rgb, -1, 0).astype(np.float32) / 255.0)


def _adversary(weight: float, device):
    if weight <= 0:
        return None
    from ...core.adversarial.mode import MaskAdversary

    return MaskAdversary(image_channels=3, n_classes=2, weight=weight, device=device)


def train_tissue(
    registry: Registry,
    *,
    steps: int = 400,
    patch: int = 192,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    train_seeds=(1, 2, 3),
    val_seed: int = 100,
    slide_size: int = 1536,
    device="cpu",
    resume=None,
    images=None,
    masks=None,
    weights=None,
    val=None,
    adversarial: float = 0.0,
    run_every: int = 10,
    resume_run=None,
):
    """Generator: train (or fine-tune from ``resume``) and save a new model version.

    ``adversarial`` > 0 switches on adversarial mode: a conditional mask discriminator
    (:class:`~napari_medseg.core.adversarial.mode.MaskAdversary`) adds its term with
    this weight.
    ``images``/``masks`` replace the synthetic slides (e.g. a user's corrected masks);
    ``weights`` (same shapes as masks) make corrected pixels count more in the loss.
    The best validation Dice so far is kept, also when the job is stopped; while it
    trains, the run is kept on disk (:class:`~napari_medseg.core.runstate.TrainingRun`:
    the best weights at every improvement, a resumable state every ``run_every`` steps).
    ``resume_run``: the folder of a killed run on synthetic data to continue (its
    settings are the ones to pass again, see :func:`resume_settings`).
    """
    from ...core import distributed
    from ...core.runstate import TrainingRun

    torch.manual_seed(seed)
    rng = np.random.default_rng(distributed.rank_seed(seed))  # under torchrun, each rank its own patches
    main = distributed.is_main()
    synthetic = images is None
    if synthetic:
        pairs = [synthetic_slide((slide_size, slide_size), s) for s in train_seeds]
        images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    weights = weights or [np.ones(m.shape, np.float32) for m in masks]
    val_rgb, val_mask = val if val is not None else synthetic_slide((768, 768), val_seed)
    # what the Dice is measured on: versions are compared (made current or not) only on the same set
    validation = (f"synthetic tissue slide 768x768, seed {val_seed}" if val is None
                  else f"user labels {data_fingerprint(val_mask)[:16]}")
    patch = int(min(patch, *(min(im.shape[:2]) for im in images)))
    model = nets.build(ARCH)
    if resume is not None:
        state, _meta = resume
        model.load_state_dict(state)
    def loss_fn(logits, target):
        """Pixel-weighted cross-entropy (corrected pixels weigh more) + soft Dice."""
        y, w = target[:, :1], target[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits, y[:, 0].long(), reduction="none")
        soft = torch.softmax(logits, 1)[:, 1]
        fg = y[:, 0].float()
        dice_loss = 1 - (2 * (soft * fg).sum() + 1) / (soft.sum() + fg.sum() + 1)
        return (ce * w[:, 0]).sum() / w.sum() + dice_loss

    def next_batch(_step):
        xs, ys = [], []
        for _ in range(batch_size):
            k = rng.integers(len(images))
            img, m, w = images[k], masks[k], weights[k]
            y0 = rng.integers(0, img.shape[0] - patch + 1)
            x0 = rng.integers(0, img.shape[1] - patch + 1)
            sl = (slice(y0, y0 + patch), slice(x0, x0 + patch))
            a, b, c = img[sl], m[sl], w[sl]
            rot, flip = rng.integers(4), rng.integers(2)
            a, b, c = (np.rot90(t, rot, (0, 1)) for t in (a, b, c))
            if flip:
                a, b, c = a[:, ::-1], b[:, ::-1], c[:, ::-1]
            jitter = rng.uniform(0.9, 1.1, 3).astype(np.float32)
            xs.append(torch.clamp(_to_input(np.ascontiguousarray(a)) * torch.from_numpy(jitter)[:, None, None], 0, 1))
            ys.append(torch.from_numpy(np.stack([b, c]).astype(np.float32)))
        return torch.stack(xs), torch.stack(ys)

    def validate(net):
        prob = predict_whole(net, val_rgb, channel_axis=-1, preprocess=PREPROCESS[IO["input"]],
                             postprocess=POSTPROCESS[IO["postprocess"]], device=device)
        return {"dice": dice(prob.argmax(0), val_mask)}

    best = {}

    def keep(state, metrics, step):
        best.update(state=state, metrics=metrics, step=step)

    config = {"resumed_from": None if resume is None else resume[1].get("version"), "steps": steps, "patch": patch,
              "batch_size": batch_size, "lr": lr, "seed": seed}
    if synthetic:
        config.update(data="synthetic", train_seeds=list(train_seeds), val_seed=val_seed, slide_size=slide_size)
    else:
        config.update(data="user images", image_shapes=[list(im.shape) for im in images],
                      corrected_pixels=int(sum(int((w > 1).sum()) for w in weights)))
    settings = {"steps": steps, "patch": patch, "batch_size": batch_size, "lr": lr, "seed": seed,
                "train_seeds": list(train_seeds), "val_seed": val_seed, "slide_size": slide_size,
                "adversarial": adversarial} if synthetic and resume is None else None
    if resume_run is not None:
        run = TrainingRun.open(resume_run)
        if main:
            run.claim()
        resume_from = run.last()
        run = run if main else None
    elif not main:  # rank 0 keeps the run folder
        run, resume_from = None, None
    else:
        run = TrainingRun.start(MODEL_NAME, {"resumable": settings is not None, **(settings or {})}, steps,
                                every=run_every)
        resume_from = None
    gen = train_supervised(model, next_batch, loss_fn, steps=steps, device=device, lr=lr,
                           validate=validate, val_every=max(1, steps // 8), monitor="dice", save_best=keep,
                           adversary=_adversary(adversarial, device), run=run, resume_from=resume_from,
                           data_rng=rng)
    result = None
    try:
        result = yield from gen
    finally:
        gen.close()
        entry = None
        if best.get("state") is not None and main:
            entry = registry.save_new_version(
                MODEL_NAME, best["state"], method=METHOD, arch=ARCH, config=config,
                metrics={**best["metrics"], "best_step": best["step"]},
                data_fingerprint=data_fingerprint(*images, *masks), extra={"io": IO, "validation": validation},
                monitor="dice",
            )
        best["entry"] = entry
        if run is not None:
            run.finish()  # the best is in the registry now (a kill -9 never gets here: the run stays resumable)
    return {**(result or {}), "entry": best["entry"]}


def resume_settings(run_info: dict) -> dict:
    """The keyword arguments of :func:`train_tissue` that continue an interrupted run."""
    settings = dict(run_info.get("settings") or {})
    if not settings.pop("resumable", False):
        raise InputError("That run trained on images from the viewer, which are not stored with it; its best "
                         "weights are kept in its folder, but it cannot be continued from the command line.")
    settings["train_seeds"] = tuple(settings.get("train_seeds", (1, 2, 3)))
    return settings


def retrain_tissue(registry: Registry, image, corrected, original, *, steps: int = 60, lr: float = 5e-4,
                   corrected_weight: float = 5.0, device="cpu", seed: int = 0, adversarial: float = 0.0):
    """Check the inputs, then return the generator that fine-tunes the current tissue model.

    Resumes from the current version and writes the next one; pixels the user changed
    weigh ``corrected_weight`` times more than untouched predictions. Validation is the
    Dice against the corrected labels.
    """
    from ...core.corrections import correction_weights

    image = np.asarray(image)
    corrected = (np.asarray(corrected) > 0).astype(np.uint8)
    if image.ndim != 3 or image.shape[-1] < 3:
        raise InputError("Retraining the tissue model needs the RGB slide the labels belong to.")
    if corrected.shape != image.shape[:2]:
        raise InputError(f"The labels ({corrected.shape}) do not match the image ({image.shape[:2]}).")
    weights = correction_weights((np.asarray(original) > 0).astype(np.uint8), corrected, corrected_weight)
    current = registry.get(MODEL_NAME)
    model, meta = current.load()
    return train_tissue(registry, steps=steps, lr=lr, seed=seed, device=device,
                        resume=(model.state_dict(), meta), images=[image[..., :3]], masks=[corrected],
                        weights=[weights], val=(image[..., :3], corrected), adversarial=adversarial)
