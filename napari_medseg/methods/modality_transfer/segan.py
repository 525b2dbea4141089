"""SegAN with the concatenated critic input, and transfer across modalities (Giacomello et al. 2020).

Each step updates the critic to *maximise* the multi-scale L1 distance between its features
of (image, predicted mask) and (image, true mask), its weights clipped to ±``critic_clip``
(SegAN's code, which the paper re-implemented), then the segmentor to *minimise* that
distance plus a Dice term of weight 1 (Sec. III-i, Fig. 2). The paper uses RMSprop at 2e-5
and keeps the best validation Dice (early stopping). ``critic_input``: ``"concat"`` is the
paper's, ``"multiply"`` SegAN's. Transfer (Sec. IV-C) copies both nets of a source model
(e.g. FLAIR) and fine-tunes them on a target modality, ``"full"``, or ``"frozen_critic"``
(critic in eval mode, no gradients, no critic steps); ``"scratch"`` is the baseline.

Data are :func:`~.tumour.tumour_slices` parts (``{"images": {modality: (N, H, W)}, "mask",
"subject", "slice"}``); slices are zero-padded to the segmentor's stride. Scores are per
subject (its slices stacked into one volume), averaged over subjects, as in BraTS.

Registry: the segmentor is a version of ``name`` (loadable with ``load_model``), its critic
a version of ``name + "_critic"``; the segmentor's ``extra["critic"] = {"name", "version"}``
names the pair and :func:`load_segan` loads both. Plain state dicts: ``weights_only=True``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ...core import nets
from ...core.adversarial import losses
from ...core.adversarial.gan import AdversarialTrainer
from ...core.adversarial.metrics import segmentation_metrics
from ...core.adversarial.networks import probabilities
from ...core.checkpoints import data_fingerprint
from ...core.device import preflight
from ...core.errors import InputError, TrainingError
from ...core.jobs import Progress
from ...core.training import save_best_on_exit
from ...core import distributed
from .networks import CRITIC_MODES, SegANCritic, SegANSegmentor

MODEL_NAME = "segan_tumour"
CRITIC_SUFFIX = "_critic"  # the critic's registry name is the segmentor's + this
METHOD = "giacomello2020-segan"  # + "-concat" / "-multiply" (critic: + "-critic")
FINETUNE = (None, "full", "frozen_critic")
TRANSFER = ("full", "frozen_critic", "scratch")


@dataclass
class SeganConfig:
    critic_input: str = "concat"  # the paper's; "multiply" is the original SegAN
    modality: str | tuple[str, ...] = "FLAIR"  # one modality (the paper's per-modality models) or several channels
    steps: int = 2000
    batch_size: int = 16  # not given in the paper
    optimizer: str = "rmsprop"  # the paper: RMSprop (lr 2e-5); "adam" as in SegAN's code (betas (beta1, 0.999))
    lr: float = 2e-5
    beta1: float = 0.5  # Adam only
    dice_weight: float = 1.0
    critic_clip: float | None = 0.05  # SegAN's code clamps the critic's weights to ±0.05
    seed: int = 0
    device: str = "cpu"
    val_every: int = 100
    patience: int | None = None  # early stopping: validations without a better Dice
    amp: bool = True  # float16 autocast on CUDA
    finetune: str | None = None  # None / "full": both nets train; "frozen_critic": segmentor only


def modalities_of(config: SeganConfig) -> tuple[str, ...]:
    m = config.modality
    return (m,) if isinstance(m, str) else tuple(m)


def plain_config(config: SeganConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def build_segan(critic_input: str = "concat", in_channels: int = 1, seg_features=(16, 32, 64, 128),
                critic_features=(16, 32, 64), seed: int = 0):
    """A fresh (segmentor, critic) pair for binary whole-tumour masks, seeded."""
    torch.manual_seed(seed)
    seg = SegANSegmentor(2, in_channels, 1, features=tuple(seg_features))
    return seg, SegANCritic(2, in_channels, 1, mode=critic_input, features=tuple(critic_features))


def check_slices(part, modalities, what: str) -> None:
    """One clear error for a set lacking a modality, empty, off-grid or with NaN."""
    if not isinstance(part, Mapping) or "images" not in part or "mask" not in part:
        raise InputError(f"The {what} set needs 'images' ({{modality: (N, H, W)}}) and 'mask' (N, H, W).")
    missing = [m for m in modalities if m not in part["images"]]
    if missing:
        raise InputError(f"The {what} set has no {missing} images; it has {sorted(part['images'])}.")
    mask = np.asarray(part["mask"])
    if mask.ndim != 3 or len(mask) == 0:
        raise InputError(f"The {what} set is empty: no slices with a tumour mask (mask shape {mask.shape}).")
    for m in modalities:
        img = np.asarray(part["images"][m])
        if img.shape != mask.shape:
            raise InputError(f"The {what} {m} slices {img.shape} and their tumour masks {mask.shape} are on "
                             "different grids; resample the labels onto the images.")
        if not np.isfinite(img).all():
            raise InputError(f"The {what} {m} slices have NaN or infinite values.")


def _pad(a: np.ndarray, stride: int) -> np.ndarray:
    ph, pw = (-a.shape[-2]) % stride, (-a.shape[-1]) % stride
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]) if ph or pw else a


def _arrays(part, modalities, stride: int):
    x = np.stack([np.asarray(part["images"][m], np.float32) for m in modalities], 1)
    y = (np.asarray(part["mask"]) > 0).astype(np.float32)[:, None]
    return _pad(x, stride), _pad(y, stride)


def predict_slices(model, images, device="cpu", batch_size: int = 32) -> np.ndarray:
    """uint8 whole-tumour masks (N, H, W) of slices (N, H, W), (H, W) or channels (N, C, H, W)."""
    x = np.asarray(images, np.float32)
    x = x[None, None] if x.ndim == 2 else x[:, None] if x.ndim == 3 else x
    want = getattr(model, "_kwargs", {}).get("in_channels", x.shape[1] if x.ndim == 4 else None)
    if x.ndim != 4 or x.shape[1] != want:
        raise InputError(f"The model reads {want} channel(s); got slices of shape {np.shape(images)}.")
    h, w = x.shape[-2:]
    x = _pad(x, int(getattr(model, "total_stride", 1)))
    model.to(device).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(torch.from_numpy(x[i:i + batch_size]).to(device)).float()
            out.append((logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1)).cpu().numpy())
    return np.concatenate(out).astype(np.uint8)[:, :h, :w] if out else np.zeros((0, h, w), np.uint8)


def _scores(pred, part, spacing=None) -> dict:
    """Dice, precision and sensitivity per subject (its slices as one volume), averaged over
    subjects (NaN ones left out); with ``spacing`` (row, column, slice) also HD95."""
    truth = np.asarray(part["mask"]) > 0
    subjects = np.asarray(part.get("subject", np.zeros(len(truth), int)))
    order = np.asarray(part.get("slice", np.arange(len(truth))))
    rows: dict[str, list[float]] = {"dice": [], "precision": [], "sensitivity": [], "hd95": []}
    for s in np.unique(subjects):
        idx = np.flatnonzero(subjects == s)
        idx = idx[np.argsort(order[idx], kind="stable")]
        p, t = pred[idx] > 0, truth[idx]
        tp, fp, fn = float((p & t).sum()), float((p & ~t).sum()), float((~p & t).sum())
        rows["dice"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan)
        rows["precision"].append(tp / (tp + fp) if tp + fp else math.nan)
        rows["sensitivity"].append(tp / (tp + fn) if tp + fn else math.nan)
        if spacing is not None:
            sp = spacing if np.isscalar(spacing) else (spacing[2], spacing[0], spacing[1])
            rows["hd95"].append(segmentation_metrics(p.astype(np.uint8), t.astype(np.uint8), sp, [1])["hd95"]["1"])
    out = {}
    for k, v in rows.items():
        vals = [x for x in v if math.isfinite(x)]
        if k != "hd95" or spacing is not None:
            out[k] = float(np.mean(vals)) if vals else math.nan
    return out


def evaluate(model, data, modality, device="cpu", spacing=1.0) -> dict:
    """Dice, precision, sensitivity and HD95 (units of ``spacing``, given as (row, column,
    slice); subjects where either mask is empty are left out of HD95) on test slices."""
    mods = (modality,) if isinstance(modality, str) else tuple(modality)
    check_slices(data, mods, "test")
    x = np.stack([np.asarray(data["images"][m], np.float32) for m in mods], 1)
    return _scores(predict_slices(model, x, device), data, spacing)


def _states(*modules) -> list[dict]:
    return [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in modules]


def _check(segmentor, critic, data, val, cfg) -> tuple[str, ...]:
    if cfg.critic_input not in CRITIC_MODES or getattr(critic, "mode", cfg.critic_input) != cfg.critic_input:
        raise InputError(f"critic_input {cfg.critic_input!r} must be one of {list(CRITIC_MODES)} and match the "
                         f"critic's ({getattr(critic, 'mode', '?')!r}).")
    if cfg.finetune not in FINETUNE:
        raise InputError(f"Unknown finetune {cfg.finetune!r}; choose one of {list(FINETUNE)}.")
    if cfg.optimizer not in ("rmsprop", "adam"):
        raise InputError(f"Unknown optimizer {cfg.optimizer!r}; choose 'rmsprop' or 'adam'.")
    if min(cfg.steps, cfg.batch_size, cfg.val_every) < 1:
        raise InputError("steps, batch_size and val_every must be at least 1.")
    mods = modalities_of(cfg)
    check_slices(data, mods, "training")
    if not (np.asarray(data["mask"]) > 0).any():
        raise InputError("The training slices contain no tumour: there is nothing to segment.")
    if val is not None:
        check_slices(val, mods, "validation")
    seg_in = getattr(segmentor, "_kwargs", {}).get("in_channels", len(mods))
    crit_in = getattr(critic, "_kwargs", {}).get("image_channels", len(mods))
    if seg_in != len(mods) or crit_in != len(mods):
        raise InputError(f"The segmentor reads {seg_in} and the critic {crit_in} image channel(s); "
                         f"the modalities {list(mods)} give {len(mods)}.")
    return mods


def train_segan(segmentor, critic, data, val, config: SeganConfig, keep=None):
    """Yield :class:`Progress` every step; return ``{"best_metrics", "best_step", "history"}``.

    ``val`` (or None) is scored every ``val_every`` steps and at the end. On each new best
    Dice, ``keep({"segmentor": state, "critic": state}, metrics, step)`` receives CPU copies.
    At the end (also when stopped or failed) both nets hold the best weights and are in eval
    mode. A non-finite loss raises :class:`TrainingError`.
    """
    cfg = config
    mods = _check(segmentor, critic, data, val, cfg)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(distributed.rank_seed(cfg.seed))  # under torchrun, each rank its own batches
    keep = keep if distributed.is_main() else None  # rank 0 saves
    x, y = _arrays(data, mods, int(getattr(segmentor, "total_stride", 1)))
    xv = None if val is None else np.stack([np.asarray(val["images"][m], np.float32) for m in mods], 1)
    segmentor.to(device).train()
    critic.to(device).train()
    frozen = cfg.finetune == "frozen_critic"

    def optimiser(module):
        if cfg.optimizer == "adam":
            return torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        return torch.optim.RMSprop(module.parameters(), lr=cfg.lr, alpha=0.9)  # TF2's rho, as the paper used

    trainer = AdversarialTrainer(segmentor, critic, optimiser(segmentor), None if frozen else optimiser(critic),
                                 device=device, amp=cfg.amp, critic_clip=None if frozen else cfg.critic_clip,
                                 freeze_discriminator=frozen)
    bs = min(cfg.batch_size, len(x))
    best = {"score": -math.inf, "metrics": {}, "step": 0, "state": None}
    history: list[dict] = []
    step, stale, diverged, order = 0, 0, False, np.empty(0, int)

    def validate(at: int) -> dict:
        nonlocal stale
        metrics = {} if xv is None else _scores(predict_slices(segmentor, xv, device), val)
        segmentor.train()
        score = metrics.get("dice", 0.0) if xv is not None else at  # no validation: keep the last
        score = -1.0 if math.isnan(score) else score
        stale += 1
        if score > best["score"]:
            s, c = _states(segmentor, critic)
            best.update(score=score, metrics=metrics, step=at, state={"segmentor": s, "critic": c})
            stale = 0
            if keep is not None:
                keep(best["state"], metrics, at)
        return metrics

    try:
        for step in range(1, cfg.steps + 1):
            if len(order) < bs:  # epochs of shuffled slices
                order = np.concatenate([order, rng.permutation(len(x))])
            idx, order = order[:bs], order[bs:]
            xb, yb = torch.from_numpy(x[idx]).to(device), torch.from_numpy(y[idx]).to(device)
            if step == 1:
                preflight(segmentor, device, tuple(xb.shape[2:]), 3 * bs, len(mods), training=True)
            with trainer.autocast():
                logits = segmentor(xb)  # one forward: detached for the critic, live for the segmentor

            def critic_loss():
                return losses.segan_critic_loss(critic(xb, probabilities(logits.detach())), critic(xb, yb))

            def segmentor_loss():
                l1 = losses.multiscale_l1(critic(xb, probabilities(logits)), critic(xb, yb))
                dice = losses.dice_loss(logits, yb)
                return l1 + cfg.dice_weight * dice, {"l1": l1, "dice_loss": dice}

            try:
                logs = trainer.step(critic_loss, segmentor_loss)
            except TrainingError:
                diverged = True
                raise
            metrics = {"loss_s": logs["loss_g"], "loss_c": logs.get("loss_d", -logs["l1"]), "l1": logs["l1"],
                       "dice_loss": logs["dice_loss"]}
            last = step == cfg.steps
            if (xv is not None and (step % cfg.val_every == 0 or last)) or (xv is None and last):
                metrics.update({f"val_{k}": v for k, v in validate(step).items()})
                last = last or (cfg.patience is not None and stale >= cfg.patience)
            history.append({"step": step, **metrics})
            yield Progress(step, cfg.steps, f"SegAN ({cfg.critic_input}) step {step}/{cfg.steps}", metrics)
            if last:
                break
    finally:
        trainer.close()
        if best["state"] is None and step > 0 and not diverged:
            validate(step)
        if best["state"] is not None:
            segmentor.load_state_dict(best["state"]["segmentor"])
            critic.load_state_dict(best["state"]["critic"])
        segmentor.eval()
        critic.eval()
    return {"best_metrics": best["metrics"], "best_step": best["step"], "history": history}


def _materialise(source) -> tuple:
    """Copies of ``source["segmentor"]`` and ``source["critic"]``, each a module or
    ``{"arch", "state_dict"}``; the source itself is never changed."""
    if not isinstance(source, Mapping) or "segmentor" not in source or "critic" not in source:
        raise InputError("A source model is {'segmentor': ..., 'critic': ...} (see load_segan); the critic is "
                         "needed for transfer.")
    out = []
    for key in ("segmentor", "critic"):
        item = source[key]
        if isinstance(item, torch.nn.Module):
            out.append(copy.deepcopy(item).cpu())
        else:
            net = nets.build(item["arch"])
            net.load_state_dict(item["state_dict"])
            out.append(net)
    return tuple(out)


def transfer(source_state, target_modality, data, val, config: SeganConfig, how: str = "full"):
    """Generator: fine-tune a copy of a source (segmentor, critic) pair on ``target_modality``
    (``how="full"`` or ``"frozen_critic"``), or train the same architecture from scratch
    (``"scratch"``, seeded by ``config.seed``). The critic input follows the source's critic.
    Returns ``{"how", "modality", "segmentor", "critic", **train_segan's result}``."""
    if how not in TRANSFER:
        raise InputError(f"Unknown transfer {how!r}; choose one of {list(TRANSFER)}.")
    seg, critic = _materialise(source_state)
    if how == "scratch":
        torch.manual_seed(config.seed)
        seg, critic = nets.build(seg.arch()), nets.build(critic.arch())
    cfg = dataclasses.replace(config, modality=target_modality, critic_input=critic.mode,
                              finetune=None if how == "scratch" else how)
    result = yield from train_segan(seg, critic, data, val, cfg)
    return {"how": how, "modality": target_modality, "segmentor": seg, "critic": critic, **(result or {})}


def compare_transfer(source_state, target_modality, data, val, test, config: SeganConfig, hows=TRANSFER,
                     spacing=1.0):
    """Generator: each of ``hows`` in turn, scored on ``test``; also the source segmentor on
    the target modality without any fine-tuning (``"source_only"``, paper Fig. 3).
    Returns ``{how: {"dice", "precision", "sensitivity", "hd95", "best_step"}}``."""
    seg, _ = _materialise(source_state)
    results = {"source_only": evaluate(seg, test, target_modality, config.device, spacing)}
    total = len(hows) * config.steps
    for i, how in enumerate(hows):
        gen = transfer(source_state, target_modality, data, val, config, how)
        try:
            while True:
                p = next(gen)
                yield Progress(i * config.steps + p.step, total, f"{how}: {p.message}", p.metrics)
        except StopIteration as done:
            out = done.value
        finally:
            gen.close()
        results[how] = {**evaluate(out["segmentor"], test, target_modality, config.device, spacing),
                        "best_step": out["best_step"]}
    return results


def load_segan(registry, name: str = MODEL_NAME, version: int | None = None, device="cpu") -> dict:
    """``{"segmentor", "critic", "meta", "critic_meta"}`` of a saved SegAN (the critic is the
    version the segmentor's ``extra["critic"]`` names)."""
    segmentor, meta = registry.get(name, version).load(device)
    ref = meta.get("critic")
    if not ref:
        raise InputError(f"{name} v{meta.get('version')} has no critic saved with it; it cannot be fine-tuned "
                         "adversarially.")
    critic, critic_meta = registry.get(ref["name"], ref["version"]).load(device)
    return {"segmentor": segmentor, "critic": critic, "meta": meta, "critic_meta": critic_meta}


def train_segan_model(registry, data, val, config: SeganConfig, name: str = MODEL_NAME, resume=None,
                      seg_features=(16, 32, 64, 128), critic_features=(16, 32, 64), data_name: str = "tumour slices"):
    """Generator: train (or fine-tune ``resume``, a :func:`load_segan` dict) and save the best
    validation Dice: the segmentor as a new version of ``name``, method
    ``giacomello2020-segan-<input>``, and its critic as ``name + "_critic"``.
    Returns ``{"entry", "critic_entry", "best_metrics", "best_step"}``."""
    mods = modalities_of(config)
    if resume is not None:
        seg, critic = _materialise(resume)
        config = dataclasses.replace(config, critic_input=critic.mode)
    elif config.finetune is not None:
        raise InputError(f"Fine-tuning ({config.finetune}) needs a source model: pass resume=load_segan(...).")
    else:
        seg, critic = build_segan(config.critic_input, len(mods), seg_features, critic_features, config.seed)
    best: dict = {}

    def keep(states, metrics, step):
        best.update(state=states, metrics=metrics, step=step)

    def save(b):
        method = f"{METHOD}-{critic.mode}"
        common = {"config": {**plain_config(config), "data": data_name,
                             "resumed_from": None if resume is None else {
                                 "name": resume.get("meta", {}).get("name", None),
                                 "version": resume.get("meta", {}).get("version")}},
                  "metrics": {**b["metrics"], "best_step": b["step"]},
                  "data_fingerprint": data_fingerprint(*[np.asarray(data["images"][m]) for m in mods]),
                  }
        extra = {"modality": list(mods) if len(mods) > 1 else mods[0], "critic_input": critic.mode}
        critic_entry = registry.save_new_version(name + CRITIC_SUFFIX, b["state"]["critic"], method=method + "-critic",
                                                 arch=critic.arch(), **common,
                                                 extra={**extra, "role": "critic", "segmentor": name})
        best["critic_entry"] = critic_entry
        return registry.save_new_version(name, b["state"]["segmentor"], method=method, arch=seg.arch(), **common,
                                         extra={**extra, "role": "segmentor", "name": name,
                                                "critic": {"name": critic_entry.name,
                                                           "version": critic_entry.version}})

    result = yield from save_best_on_exit(train_segan(seg, critic, data, val, config, keep=keep), best, save,
                                          name=name)
    summary = {k: v for k, v in (result or {}).items() if k != "history"}
    return {**summary, "entry": best.get("entry"), "critic_entry": best.get("critic_entry")}
