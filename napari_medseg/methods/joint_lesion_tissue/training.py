"""Training the joint model (and its baselines) as a stoppable progress generator.

One iteration follows the paper: one sub-volume from the tissue (control) dataset,
sampled uniformly, and one from the lesion dataset, sampled around the dilated
lesions; random flips; Adam at 0.005. The baselines are the same loop with fewer
terms: ``tissue_only`` (model N: T1 → tissue, controls only), ``lesion_only``
(model W: T1 + FLAIR → lesion, patients only) and ``supervised`` (model M: fully
labelled scans with the whole Eq. 6 loss).

Volumes arrive preprocessed (normalised, co-registered) as numpy arrays: controls
``{"T1", "tissue"}``, patients ``{"T1", "FLAIR", "lesion"}``, fully labelled subjects
``{"T1", "FLAIR", "labels"}``. Model inputs always carry every model modality in the
model's order; channels of absent modalities are zeros that the network never reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...core.device import autocast, preflight
from ...core.errors import InputError, TrainingError
from ...core.jobs import Progress
from . import losses
from .labels import FULL, LabelSet
from .sampling import PatchSampler

MODES = ("joint", "tissue_only", "lesion_only", "supervised")


@dataclass
class JointConfig:
    patch_size: tuple[int, ...] = (120, 120, 40)  # the paper's sub-volumes
    batch_size: int = 1  # sub-volumes per dataset and iteration (paper: 1)
    lr: float = 0.005  # Adam, beta = (0.9, 0.999) as in the paper
    warmup: int = 5000  # iterations before the inter-modality term
    steps: int = 20000
    seed: int = 0
    device: str = "cpu"
    modalities: tuple[str, ...] = ("T1", "FLAIR")  # of the lesion scans
    shared_modalities: tuple[str, ...] = ("T1",)  # p(X): what the controls have
    label_set: LabelSet = FULL
    mode: str = "joint"
    val_every: int = 500
    lesion_dilation: int = 3  # voxels; centres are drawn inside the dilated lesions
    flip: bool = True
    mask_lesion: bool = True  # leave annotated lesions out of the inter-modality term
    detach_reference: bool = False  # stop gradients through h(T1) in that term
    amp: bool = True  # float16 autocast on CUDA
    roi_size: tuple[int, ...] | None = None  # validation window; default patch_size


def check_subjects(subjects, keys, what: str, ndim: int) -> None:
    """One clear error for a missing key, a wrong dimensionality, a shape mismatch or NaN."""
    for i, s in enumerate(subjects):
        missing = [k for k in keys if k not in s]
        if missing:
            raise InputError(f"{what.capitalize()} {i} lacks {missing} (has {sorted(s)}).")
        shapes = {k: np.shape(s[k]) for k in keys}
        ref = shapes[keys[0]]
        if len(ref) != ndim or any(v != ref for v in shapes.values()):
            raise InputError(f"{what.capitalize()} {i}: every array must be {ndim}D with one shape; got {shapes}.")
        bad = [k for k in keys if not np.isfinite(np.asarray(s[k], dtype=np.float32)).all()]
        if bad:
            raise InputError(f"{what.capitalize()} {i} has NaN or infinite values in {bad}.")


def infer_probs(model, subject: dict, present, device, roi_size=None, overlap: float = 0.25) -> np.ndarray:
    """Softmax probabilities (C, *spatial) of one subject by sliding-window inference."""
    from monai.inferers import sliding_window_inference

    shape = np.shape(subject[present[0]])
    stride = int(getattr(model, "total_stride", 1))
    roi = tuple(roi_size) if roi_size is not None else shape
    roi = tuple(-(-min(int(r), int(n)) // stride) * stride for r, n in zip(roi, shape))
    x = np.zeros((1, len(model.modalities), *shape), np.float32)
    for m in present:
        x[0, model.modalities.index(m)] = subject[m]
    with torch.no_grad():  # the volume stays on the CPU; windows go to the device
        logits = sliding_window_inference(torch.from_numpy(x), roi, 1, model, overlap, sw_device=device,
                                          device="cpu", present=list(present))
    return torch.softmax(torch.as_tensor(logits).float(), 1)[0].numpy()


def decode(probs: np.ndarray, label_set: LabelSet, mode: str = "joint") -> np.ndarray:
    """Labels from probabilities, for the classes the mode was trained on: tissue_only
    picks among background + tissues; lesion_only is one-vs-all (lesion if p >= 0.5)."""
    if mode == "lesion_only":
        return np.where(probs[label_set.lesion] >= 0.5, label_set.lesion, 0)
    if mode == "tissue_only":
        return np.argmax(probs[: label_set.lesion], 0)
    return np.argmax(probs, 0)


def scored_classes(label_set: LabelSet, mode: str) -> tuple[int, ...]:
    """The classes a mode can predict (background is never scored)."""
    return {"tissue_only": label_set.tissues, "lesion_only": (label_set.lesion,)}.get(
        mode, (*label_set.tissues, label_set.lesion))


def evaluate(model, subjects, label_set, mode, modalities, shared, device, roi) -> dict:
    """Per-class Dice (classes absent from both truth and prediction are not scored)
    averaged over subjects; ``dice`` is their mean, the monitored value."""
    present = list(shared if mode == "tissue_only" else modalities)
    per: dict[int, list[float]] = {c: [] for c in scored_classes(label_set, mode)}
    for s in subjects:
        pred = decode(infer_probs(model, s, present, device, roi), label_set, mode)
        truth = np.asarray(s["labels"])
        for c in per:
            a, b = pred == c, truth == c
            if a.any() or b.any():
                per[c].append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    out = {"dice_" + label_set.names[c].replace(" ", "_"): float(np.mean(v)) for c, v in per.items() if v}
    out["dice"] = float(np.mean(list(out.values()))) if out else 0.0
    return out


def _check_config(model, cfg: JointConfig, controls, patients) -> None:
    if cfg.mode not in MODES:
        raise InputError(f"Unknown mode {cfg.mode!r}; choose one of {MODES}.")
    if len(cfg.patch_size) != model.spatial_dims:
        raise InputError(f"patch_size {cfg.patch_size} has {len(cfg.patch_size)} axes; "
                         f"the model is {model.spatial_dims}D.")
    if model.n_classes != cfg.label_set.n_classes:
        raise InputError(f"The model predicts {model.n_classes} classes; the label set has "
                         f"{cfg.label_set.n_classes} ({', '.join(cfg.label_set.names)}).")
    for m in (*cfg.modalities, *cfg.shared_modalities):
        if m not in model.modalities:
            raise InputError(f"Modality {m!r} is not an input of this model ({list(model.modalities)}).")
    if cfg.mode in ("joint", "tissue_only"):
        if not controls:
            raise InputError(f"Mode {cfg.mode!r} needs at least one control scan with tissue labels; none given.")
        check_subjects(controls, (*cfg.shared_modalities, "tissue"), "control", model.spatial_dims)
    if cfg.mode != "tissue_only":
        what, label = ("fully labelled scan", "labels") if cfg.mode == "supervised" else ("lesion scan", "lesion")
        if not patients:
            raise InputError(f"Mode {cfg.mode!r} needs at least one {what}; none given.")
        check_subjects(patients, (*cfg.modalities, label), what, model.spatial_dims)


def _step_losses(model, cfg: JointConfig, step: int, control, patient):
    """Forward passes and loss terms of one iteration for the configured mode."""
    ls = cfg.label_set
    zero = torch.zeros((), device=next(model.parameters()).device)
    parts = {"loss_tissue": zero, "loss_lesion": zero, "loss_inter": zero}
    if cfg.mode == "tissue_only":
        parts["loss_tissue"] = losses.tissue_loss(model(control[0], cfg.shared_modalities), control[1], ls)
    elif cfg.mode == "lesion_only":
        parts["loss_lesion"] = losses.lesion_loss(model(patient[0], cfg.modalities), patient[1], ls)
    elif cfg.mode == "supervised":
        parts["loss_tissue"], parts["loss_lesion"] = losses.supervised_loss(model(patient[0], cfg.modalities),
                                                                            patient[1], ls)
    else:
        shared = model(patient[0], cfg.shared_modalities) if losses.inter_active(step, cfg.warmup) else None
        _, parts = losses.joint_risk(model(control[0], cfg.shared_modalities), control[1],
                                     model(patient[0], cfg.modalities), patient[1], shared, step, cfg.warmup, ls,
                                     mask_lesion=cfg.mask_lesion, detach_reference=cfg.detach_reference)
    return parts["loss_tissue"] + parts["loss_lesion"] + parts["loss_inter"], parts


def train_joint(model, controls: list[dict], patients: list[dict], config: JointConfig,
                val: list[dict] | None = None, keep=None):
    """Yield :class:`Progress` every iteration; return ``{"best_metrics", "best_step", "history"}``.

    ``val``: fully labelled subjects, scored by whole-volume (sliding-window) inference
    every ``val_every`` steps and at the end; ``keep(state, metrics, step)`` receives a
    CPU copy of the weights on each new best mean Dice (and once when stopped before
    the first validation). A non-finite loss raises :class:`TrainingError`.
    """
    cfg = config
    _check_config(model, cfg, controls or [], patients or [])
    if val:
        have = cfg.shared_modalities if cfg.mode == "tissue_only" else cfg.modalities
        check_subjects(val, (*have, "labels"), "validation scan", model.spatial_dims)
    from ...core import distributed

    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(distributed.rank_seed(cfg.seed))  # under torchrun, each rank its own patches
    keep = keep if distributed.is_main() else None  # rank 0 saves
    model.to(device)
    distributed.broadcast_weights(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    label_key = "labels" if cfg.mode == "supervised" else "lesion"
    ctrl_sampler = PatchSampler(controls or [], cfg.shared_modalities, "tissue", cfg.patch_size, rng,
                                weighted=False, flip=cfg.flip)
    pat_sampler = PatchSampler(patients or [], cfg.modalities, label_key, cfg.patch_size, rng, weighted=True,
                               flip=cfg.flip, dilation=cfg.lesion_dilation, label_set=cfg.label_set)
    roi = tuple(cfg.roi_size or cfg.patch_size)
    best = {"score": -math.inf, "metrics": {}, "step": 0, "state": None}
    history: list[dict] = []
    diverged, step = False, 0

    def validate(at_step: int) -> dict:
        model.eval()
        with torch.no_grad():
            metrics = evaluate(model, val, cfg.label_set, cfg.mode, cfg.modalities, cfg.shared_modalities,
                               device, roi)
        model.train()
        if metrics.get("dice", -math.inf) > best["score"]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best.update(score=metrics["dice"], metrics=metrics, step=at_step, state=state)
            if keep is not None:
                keep(best["state"], metrics, at_step)
        return metrics

    model.train()
    try:
        for step in range(1, cfg.steps + 1):
            control = patient = None
            if cfg.mode in ("joint", "tissue_only"):
                x, y = ctrl_sampler.batch(cfg.batch_size)
                control = (model.arrange(x, cfg.shared_modalities).to(device), y.to(device))
            if cfg.mode != "tissue_only":
                x, y = pat_sampler.batch(cfg.batch_size)
                patient = (model.arrange(x, cfg.modalities).to(device), y.to(device))
            if step == 1:
                n_fwd = {"joint": 3}.get(cfg.mode, 1)  # three forward graphs alive in joint mode
                preflight(model, device, tuple(cfg.patch_size), n_fwd * cfg.batch_size, len(model.modalities),
                          training=True)
            opt.zero_grad(set_to_none=True)
            with autocast(device, use_amp):
                loss, parts = _step_losses(model, cfg, step, control, patient)
            if not torch.isfinite(loss):
                diverged = True
                raise TrainingError(f"The training loss became {loss.item()} at step {step}; "
                                    f"lower the learning rate (now {cfg.lr}).")
            scaler.scale(loss).backward()
            distributed.average_gradients(model)  # several forwards per step: averaged by hand, as DDP would
            scaler.step(opt)
            scaler.update()
            metrics = distributed.mean_metrics(
                {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}})
            if val and (step % cfg.val_every == 0 or step == cfg.steps):
                metrics.update({f"val_{k}": v for k, v in validate(step).items()})
            history.append({"step": step, **metrics})
            yield Progress(step, cfg.steps, f"{cfg.mode} step {step}/{cfg.steps}", metrics)
    finally:
        if best["state"] is None and step > 0 and val and not diverged:
            validate(step)
        model.eval()
    return {"best_metrics": best["metrics"], "best_step": best["step"], "history": history}


def predict_volume(model, volumes: dict, modalities_present, label_set: LabelSet, device="cpu",
                   roi_size=None, mode: str = "joint", overlap: float = 0.25):
    """Whole-volume segmentation from any subset of modalities that includes T1.

    Returns ``(labels uint8 (*spatial), probabilities float32 (C, *spatial))``.
    """
    present = list(modalities_present)
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}; choose one of {MODES}.")
    if "T1" not in present:
        raise InputError(
            "This model needs the T1 scan: tissue was learnt from T1 alone (the controls have nothing else), "
            "so without T1 it cannot segment tissue, and it never saw FLAIR without T1, so a lesion-only "
            f"answer would be untested. Given {present or 'nothing'}; it can segment tissue from T1 alone, "
            "or tissue and lesions from T1 + FLAIR.")
    subject = {m: volumes[m] for m in present if m in volumes}
    check_subjects([subject], present, "input scan", model.spatial_dims)  # a listed volume missing, NaN...
    device = torch.device(device)
    model.to(device).eval()
    probs = infer_probs(model, subject, present, device, roi_size, overlap)
    return decode(probs, label_set, mode).astype(np.uint8), probs.astype(np.float32)
