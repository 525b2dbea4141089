"""Adversarial segmentation with weak domain transfer (Chen et al. 2019), as a stoppable job.

Three methods, the paper's Table 1 rows:

* ``"unet"`` (U+D): the dilated residual U-net G alone on L_ID = β·CE + (1−β)·Dice;
  no discriminator at all (one passed in is left untouched).
* ``"adversarial"`` (U+A+D): G on L_ID plus the adversarial term, against the
  conditional mask discriminator D.
* ``"adversarial_transfer"`` (U+A+D+T): G on λ·L_ID + (1−λ)·L_DT plus the adversarial
  term, L_DT on the LGE slices with bSSFP/T2 pseudo-masks (Eqs. 2-4).

Algorithm 1: G is first trained alone for ``pretrain_steps`` (j) iterations on its
segmentation loss (L_ID, plus L_DT when transferring), then each of the remaining
iterations up to ``steps`` (k) updates D on a mini-batch with G fixed, then G with D
frozen (:class:`~.gan.AdversarialTrainer`). ``steps`` counts all k iterations. With
``d_warmup`` (not in Algorithm 1; issue 20) D also learns during the pre-training, on the
masks G has just made, so that the adversarial phase starts against an informed D; G's
pre-training is the same either way. With ``real_scaling`` = τ (not in the paper; issue 20)
D's real masks are not one-hot but scaled towards G's own probabilities (the true class
gets at least τ; Luc et al. 2016), so that D cannot tell real from fake by softness alone.

What D sees (Eq. 5): each image x concatenated with a mask; real = the one-hot expert
labels of S, fake = G's softmax on the same images. With weak transfer D also sees the
set T, LGE slices whose pseudo-masks are real and G's softmax on them fake, as in Eq. 5.
S and T go through D as one batch (one expectation over both sets, so the adversarial
weight stays that of Eq. 6 in both adversarial methods); real and fake masks go through
D separately, in both the D and the G step. The adversarial term weighs 1 (Eq. 6).
Adam at 2e-4 with Keras-style decay lr / (1 + 1e-8·t), batch 16, z-scored slices (the
paper's values); random flips and 90° rotations stand in for its rotation, shear and zoom.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...core.adversarial import losses
from ...core.adversarial.gan import AdversarialTrainer
from ...core.adversarial.metrics import mean_over_classes, segmentation_metrics
from ...core.adversarial.networks import ConditionalMaskDiscriminator, probabilities
from ...core.checkpoints import data_fingerprint
from ...core.device import preflight, select_device
from ...core.errors import InputError, TrainingError
from ...core.jobs import Progress
from ...core.training import save_best_on_exit
from ...core import distributed
from .cardiac import LABEL_NAMES
from .chen_data import ChenData, SliceSet, chen_training_data, chen_validation_data, sample, zscore
from .networks import DilatedResUNet

METHODS = ("unet", "adversarial", "adversarial_transfer")
PAPER_NAMES = {"unet": "U+D", "adversarial": "U+A+D", "adversarial_transfer": "U+A+D+T"}
BENCH_KEYS = {"unet": "cardiac_dice_unet", "adversarial": "cardiac_dice_adv",
              "adversarial_transfer": "cardiac_dice_adv_transfer"}
CLASS_NAMES = {1: "LV", 2: "myo", 3: "RV"}  # the paper's table order and names


@dataclass
class ChenConfig:
    method: str = "adversarial_transfer"
    beta: float = 0.9  # CE weight in L_ID and L_DT (β1 = β2)
    lam: float = 0.9  # λ: L_ID weight; the weak transfer gets 1 − λ
    adv_weight: float = 1.0  # Eq. 6 adds L_D and L_G with equal weight
    pretrain_steps: int = 500  # j: supervised iterations of G before the adversarial ones
    d_warmup: bool = False  # D also learns during G's pre-training (on G's detached masks; G unchanged)
    real_scaling: float = 0.0  # τ > 0: D's real masks are scaled towards G's (Luc et al. 2016); 0: one-hot, the paper
    steps: int = 3000  # k: all iterations, pre-training included
    batch_size: int = 16
    lr: float = 2e-4
    lr_decay: float = 1e-8  # Keras decay: lr / (1 + decay · iteration)
    size: tuple[int, int] | None = None  # common in-plane size (centre crop / zero pad)
    crop: tuple[int, int] | None = None  # random training crop (the paper's shifted boxes)
    augment: bool = True  # random flips and 90° rotations
    seed: int = 0
    device: str = "cpu"
    val_every: int = 100
    amp: bool = True
    n_classes: int = 4
    target: str = "LGE"
    sources: tuple[str, ...] = ("bSSFP", "T2")


def check_config(cfg: ChenConfig, model=None, discriminator=None) -> None:
    if cfg.method not in METHODS:
        raise InputError(f"Unknown method {cfg.method!r}; choose one of {list(METHODS)}.")
    if not (cfg.steps >= 1 and 0 <= cfg.pretrain_steps <= cfg.steps and cfg.batch_size >= 1 and cfg.val_every >= 1):
        raise InputError(f"Need steps >= 1, 0 <= pretrain_steps <= steps, batch_size >= 1 and val_every >= 1; got "
                         f"{cfg.steps}, {cfg.pretrain_steps}, {cfg.batch_size}, {cfg.val_every}.")
    if not (0 <= cfg.beta <= 1 and 0 <= cfg.lam <= 1 and cfg.lr > 0 and cfg.adv_weight >= 0):
        raise InputError(f"beta and lam must lie in [0, 1], lr > 0 and adv_weight >= 0; got {cfg.beta}, "
                         f"{cfg.lam}, {cfg.lr}, {cfg.adv_weight}.")
    if not 0 <= cfg.real_scaling <= 1:
        raise InputError(f"real_scaling must lie in [0, 1] (0: one-hot real masks); got {cfg.real_scaling}.")
    if cfg.target in cfg.sources or not cfg.sources:
        raise InputError(f"The sources {list(cfg.sources)} must be non-empty and exclude the target {cfg.target!r}.")
    if model is None:  # the config alone
        return
    out = model.arch()["kwargs"].get("out_channels") if hasattr(model, "arch") else None
    if out is not None and out != cfg.n_classes:
        raise InputError(f"The segmentor predicts {out} classes; the config has {cfg.n_classes}.")
    if cfg.method != "unet":
        if discriminator is None:
            raise InputError(f"Method {cfg.method!r} needs a discriminator.")
        if getattr(discriminator, "mask_channels", cfg.n_classes) != cfg.n_classes:
            raise InputError(f"The discriminator reads {discriminator.mask_channels} mask channels; the config "
                             f"has {cfg.n_classes} classes.")


def _pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % stride, 0, -h % stride))


def _logits(model, x: np.ndarray, device) -> torch.Tensor:
    """Logits (B, C, H, W) of a (B, 1, H, W) batch, padded to the net's stride and cropped back."""
    h, w = x.shape[-2:]
    t = _pad(torch.as_tensor(x, device=device), int(getattr(model, "total_stride", 1)))
    return model(t)[..., :h, :w]


def predict_slices(model, images, device="cpu", batch_size: int = 16) -> np.ndarray:
    """Labels uint8 (N, H, W) for a (N, H, W) stack (or one (H, W) slice) of any size;
    each slice is z-scored, as in training. The model's train/eval mode is kept."""
    x = np.asarray(images)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.size == 0:
        raise InputError(f"Expected a non-empty stack of slices (N, H, W); got shape {np.shape(images)}.")
    if not np.isfinite(x).all():
        raise InputError("The image has NaN or infinite values.")
    device = select_device(str(device))
    was_training = model.training
    model.to(device).eval()
    x = zscore(x)[:, None]
    try:
        with torch.no_grad():
            out = [_logits(model, x[i:i + batch_size], device).argmax(1).cpu().numpy()
                   for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.uint8)


def validation_dice(model, val: SliceSet, device) -> dict:
    """Dice per class (LV, myo, RV) of each validation patient's target stack, averaged over
    patients (classes absent from truth and prediction are not scored); ``dice`` is the
    mean over the classes, the monitored value."""
    pred = predict_slices(model, val.images, device)
    ids = np.array([o[0] for o in val.origin])
    per = {c: [] for c in CLASS_NAMES}
    for pid in dict.fromkeys(ids):
        p, t = pred[ids == pid], val.labels[ids == pid]
        for c in per:
            a, b = p == c, t == c
            if a.any() or b.any():
                per[c].append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    out = {f"dice_{CLASS_NAMES[c]}": float(np.mean(v)) for c, v in per.items() if v}
    out["dice"] = float(np.mean(list(out.values()))) if out else 0.0
    return out


def _one_hot(y: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(y, n).permute(0, 3, 1, 2).float()


def train_chen(model, discriminator, train_data: ChenData, val_data: SliceSet | None, config: ChenConfig,
               keep=None):
    """Yield :class:`Progress` each iteration; return ``{"best_metrics", "best_step", "history"}``.

    Metrics: ``loss_g`` and ``loss_id`` always, ``loss_dt`` with weak transfer, ``loss_adv``
    and ``loss_d`` in the adversarial phase only; ``val_dice`` (mean over LV, myo, RV) and
    ``val_dice_<class>`` every ``val_every`` steps and at the end. ``keep(state, metrics,
    step)`` receives a CPU copy of G's weights on each new best ``val_dice`` (without
    validation data, the last weights once at the end). A non-finite loss raises
    :class:`~napari_medseg.core.errors.TrainingError`.
    """
    cfg = config
    check_config(cfg, model, discriminator)
    if train_data is None or len(train_data.identity) == 0:
        raise InputError("There are no labelled slices to train on.")
    transfer = cfg.method == "adversarial_transfer"
    if transfer and (train_data.transfer is None or len(train_data.transfer) == 0):
        raise InputError(f"Empty target set: weak domain transfer needs {cfg.target} slices with pseudo-masks.")
    if val_data is not None and len(val_data) == 0:
        raise InputError(f"Empty target set: there are no labelled {cfg.target} validation slices.")
    for data in (train_data.identity, train_data.transfer if transfer else None):
        if data is not None and int(data.labels.max()) >= cfg.n_classes:
            raise InputError(f"The labels hold values up to {int(data.labels.max())}; expected 0..{cfg.n_classes - 1}.")
    if cfg.crop is not None and any(c > s for c, s in zip(cfg.crop, train_data.identity.images.shape[1:])):
        raise InputError(f"The crop {cfg.crop} is larger than the slices {train_data.identity.images.shape[1:]}.")
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(distributed.rank_seed(cfg.seed))  # under torchrun, each rank its own batches
    keep = keep if distributed.is_main() else None  # rank 0 saves
    adversarial = cfg.method != "unet"
    d_net = discriminator.to(device) if adversarial else nn.Module()  # "unet": D is never touched
    model.to(device).train()
    d_net.train()
    opt_g = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam(d_net.parameters(), lr=cfg.lr) if adversarial else None
    decay = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 / (1.0 + cfg.lr_decay * t))
             for k, o in (("g", opt_g), ("d", opt_d)) if o is not None}
    trainer = AdversarialTrainer(model, d_net, opt_g, opt_d, device=device, amp=cfg.amp,
                                 freeze_discriminator=not adversarial)
    stride = int(getattr(model, "total_stride", 1))
    best = {"score": -math.inf, "metrics": {}, "step": 0, "state": None}
    history: list[dict] = []
    step, diverged = 0, False

    def batch():
        xs, ys = sample(rng, train_data.identity, cfg.batch_size, cfg.crop, cfg.augment)
        if transfer:
            xt, yt = sample(rng, train_data.transfer, cfg.batch_size, cfg.crop, cfg.augment)
            xs, ys = np.concatenate([xs, xt]), np.concatenate([ys, yt])
        x = _pad(torch.from_numpy(xs).to(device), stride)
        y = _pad(torch.from_numpy(ys).to(device), stride)
        return x, y

    seen = {}  # the pre-training step's logits, for D's warm-up

    def g_loss(x, y, with_adv):
        def fn():
            logits = model(x)
            seen["logits"] = logits
            n = cfg.batch_size
            l_id = losses.segmentation_loss(logits[:n], y[:n], cfg.beta)
            l_dt = losses.segmentation_loss(logits[n:], y[n:], cfg.beta) if transfer else None
            adv = losses.adversarial_loss(d_net(x, probabilities(logits))) if with_adv else None
            logs = {"loss_id": l_id} | ({"loss_dt": l_dt} if transfer else {}) | ({"loss_adv": adv} if with_adv else {})
            return losses.generator_loss(l_id, l_dt, adv, cfg.lam, cfg.adv_weight), logs
        return fn

    def d_loss(x, y, logits=None):
        def fn():
            with torch.no_grad():
                fake = probabilities(model(x) if logits is None else logits.detach()).float()
            real = _one_hot(y, cfg.n_classes)
            if cfg.real_scaling > 0:
                real = losses.scaled_real_masks(real, fake, cfg.real_scaling)
            return losses.discriminator_loss(d_net(x, real), d_net(x, fake))
        return fn

    def validate(at_step: int) -> dict:
        metrics = validation_dice(model, val_data, device) if val_data is not None else {}
        score = metrics.get("dice", -math.inf) if val_data is not None else math.inf
        if score > best["score"] or best["state"] is None:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best.update(score=score, metrics=metrics, step=at_step, state=state)
            if keep is not None:
                keep(state, metrics, at_step)
        return metrics

    try:
        for step in range(1, cfg.steps + 1):
            x, y = batch()
            if step == 1:
                preflight(model, device, tuple(x.shape[2:]), x.shape[0] * (3 if adversarial else 1), 1, training=True)
            trainer.step_count = step - 1
            if step <= cfg.pretrain_steps or not adversarial:
                logs = trainer.g_step(g_loss(x, y, False))
                if adversarial and cfg.d_warmup:  # D on the masks G just made, before they change
                    logs.update(trainer.d_step(d_loss(x, y, seen["logits"])))
                phase = "pre-training G" if adversarial else PAPER_NAMES[cfg.method]
            else:
                logs = trainer.step(d_loss(x, y), g_loss(x, y, True))
                phase = "adversarial"
            seen.clear()
            for k in ("g", "d") if phase == "adversarial" else ("g",):
                decay[k].step()
            metrics = dict(logs)
            if val_data is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                metrics.update({f"val_{k}": v for k, v in validate(step).items()})
            history.append({"step": step, **metrics})
            yield Progress(step, cfg.steps, f"{cfg.method} ({phase}) step {step}/{cfg.steps}", metrics)
    except TrainingError:
        diverged = True
        raise
    finally:
        trainer.close()
        if best["state"] is None and step > 0 and not diverged:  # no validation data, or stopped early
            validate(step)
        model.eval()
    return {"best_metrics": best["metrics"], "best_step": best["step"], "history": history}


def evaluate_target(model, cases, device="cpu", target: str = "LGE", spacing=1.0) -> dict:
    """Per-class Dice and HD95 on the target stacks of ``cases`` with reference labels
    (``truth`` on phantoms, else ``labels``), scored per patient in 3D and averaged:
    ``{"dice": {LV, myo, RV}, "hd95": {...}, "mean_dice", "mean_hd95", "per_case": {id: ...}}``."""
    per_case = {}
    for i, case in enumerate(cases or []):
        ref = (getattr(case, "truth", None) or {}).get(target, case.labels.get(target))
        if ref is None or target not in case.images:
            continue
        img, ref = np.asarray(case.images[target]), np.asarray(ref)
        if img.shape != ref.shape:
            raise InputError(f"Patient {getattr(case, 'id', i + 1)}: the {target} labels are {ref.shape} but the "
                             f"image is {img.shape}; labels must be on the image's grid.")
        m = segmentation_metrics(predict_slices(model, img, device), ref.astype(np.uint8), spacing, CLASS_NAMES)
        per_case[str(getattr(case, "id", i + 1))] = {k: m[k] for k in ("dice", "hd95")}
    if not per_case:
        raise InputError(f"Empty target set: none of the {len(cases or [])} patients has {target} reference labels.")
    out = {k: {c: float(np.nanmean([p[k][c] for p in per_case.values()])) for c in CLASS_NAMES.values()}
           for k in ("dice", "hd95")}
    return {**out, "mean_dice": mean_over_classes(out["dice"]), "mean_hd95": mean_over_classes(out["hd95"]),
            "per_case": per_case}


def plain_config(cfg: ChenConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def train_chen_model(registry, cohort_train, cohort_val, config: ChenConfig, name: str = "chen_cardiac", *,
                     features=(16, 32, 48), dilations=(2, 4), d_features=(16, 32, 64, 64), data: str = "phantom"):
    """Generator: assemble the slices, build G (and D), train, and save the best G as a new
    registry version (also when stopped). Returns ``{"entry", "best_metrics", "best_step",
    "model"}``, ``model`` being G with the best weights."""
    check_config(config)
    train_data = chen_training_data(cohort_train, config)
    val_data = chen_validation_data(cohort_val, config) if cohort_val else None
    torch.manual_seed(config.seed)
    model = DilatedResUNet(2, 1, config.n_classes, features=features, dilations=dilations)
    disc = (ConditionalMaskDiscriminator(2, 1, config.n_classes, features=d_features)
            if config.method != "unet" else None)
    best: dict = {}

    def keep(state, metrics, step):
        best.update(state=state, metrics=metrics, step=step)

    def save(b):
        arrays = [train_data.identity.images] + ([train_data.transfer.images] if train_data.transfer else [])
        return registry.save_new_version(
            name, b["state"], method=f"chen2019-{config.method}", arch=model.arch(),
            config={**plain_config(config), "data": data, "paper_name": PAPER_NAMES[config.method],
                    "discriminator": None if disc is None else disc.arch()},
            metrics={**b["metrics"], "best_step": b["step"]}, data_fingerprint=data_fingerprint(*arrays),
            extra={"class_names": list(LABEL_NAMES), "short_names": ["background", *CLASS_NAMES.values()],
                   "target": config.target, "sources": list(config.sources), "normalisation": "z-score per slice"})

    result = yield from save_best_on_exit(train_chen(model, disc, train_data, val_data, config, keep=keep), best, save,
                                          name=name)
    if best.get("state") is not None:
        model.load_state_dict(best["state"])
    summary = {k: v for k, v in (result or {}).items() if k != "history"}
    return {**summary, "entry": best.get("entry"), "model": model.eval()}
