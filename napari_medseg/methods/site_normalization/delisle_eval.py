"""Inference and evaluation of the normalisation models (Delisle et al. 2019): whole-image
normalisation and segmentation, Dice per site and class, and the JSD between site histograms.
See :mod:`.delisle` for the three modes and their training."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from ...core.errors import InputError
from .sites import TISSUE_NAMES, histogram_jsd

MODES = ("adversarial", "standardized", "none")


def standardize(image) -> np.ndarray:
    """Z-score with the mean and std of the brain (non-zero voxels; all when none is zero)."""
    img = np.asarray(image, np.float32)
    brain = img != 0
    vals = img[brain] if brain.any() and not brain.all() else img.ravel()
    return ((img - vals.mean()) / max(float(vals.std()), 1e-6)).astype(np.float32)


def nyquist_fraction(image) -> float:
    """The share of an image's spectral power (mean removed, per plane of its last two axes)
    at the 2-px period: the rows and columns of the Nyquist frequency, where a stride-2
    transposed convolution leaves its checkerboard."""
    img = np.asarray(image, np.float64)
    planes = img.reshape(-1, *img.shape[-2:])
    total = at = 0.0
    for plane in planes:
        power = np.abs(np.fft.fft2(plane - plane.mean())) ** 2
        h, w = plane.shape
        total += power.sum()
        nyq = np.zeros_like(power, dtype=bool)
        if h % 2 == 0:
            nyq[h // 2, :] = True
        if w % 2 == 0:
            nyq[:, w // 2] = True
        at += power[nyq].sum()
    return float(at / total) if total > 0 else 0.0


def checkerboard_ratio(outputs, inputs) -> float:
    """Mean Nyquist share of the outputs over that of their inputs: about 1 (or below, a
    smoother output) when G adds no 2-px pattern; well above 1 with a checkerboard."""
    out = np.mean([nyquist_fraction(o) for o in outputs])
    ref = np.mean([nyquist_fraction(i) for i in inputs])
    return float(out / max(ref, 1e-12))


def _input(image, mode: str) -> np.ndarray:
    return standardize(image) if mode == "standardized" else np.asarray(image, np.float32)


def _stride(module) -> int:
    if module is None:
        return 1
    if hasattr(module, "generator") and hasattr(module, "segmenter"):
        return math.lcm(_stride(module.generator), _stride(module.segmenter))
    if hasattr(module, "total_stride"):
        return int(module.total_stride)
    return int(np.prod(getattr(module, "strides", [1])))


def _padded_run(fn, image: np.ndarray, stride: int, device) -> torch.Tensor:
    """fn on the whole image padded (with its minimum) to a multiple of ``stride``, cropped back."""
    pad = [(0, -(-n // stride) * stride - n) for n in image.shape]
    x = np.pad(image, pad, constant_values=float(image.min()))
    with torch.no_grad():
        out = fn(torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device))
    return out[(slice(None), slice(None), *(slice(0, n) for n in image.shape))].float().cpu()


def _unpack(model_or_pair):
    if isinstance(model_or_pair, (tuple, list)):
        return model_or_pair[0], model_or_pair[1]
    if hasattr(model_or_pair, "normalize"):  # NormalizeAndSegment
        return model_or_pair.generator, model_or_pair.segmenter
    return None, model_or_pair


def normalize_volume(generator, image, device="cpu") -> np.ndarray:
    """G(image) for a whole 2-D or 3-D image (padded to G's stride), float32, same shape."""
    pair = isinstance(generator, (tuple, list)) or hasattr(generator, "normalize")
    gen = _unpack(generator)[0] if pair else generator
    img = np.asarray(image, np.float32)
    if img.ndim not in (2, 3) or not np.isfinite(img).all():
        raise InputError(f"Expected a finite 2-D or 3-D image, got shape {img.shape}.")
    gen.to(device).eval()
    return _padded_run(gen, img, _stride(gen), device)[0, 0].numpy()


def segment(model_or_pair, image, device="cpu", mode: str = "adversarial", return_probs: bool = False):
    """Labels (uint8) of a whole image: S(G(x)) in adversarial mode (a NormalizeAndSegment or a
    (G, S) pair), S(z-score(x)) when standardized, S(x) for "none"."""
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}; choose one of {list(MODES)}.")
    gen, seg = _unpack(model_or_pair)
    if mode == "adversarial" and gen is None:
        raise InputError("Adversarial mode needs the generator: pass the trained pair (G, S).")
    img = _input(image, mode)
    if img.ndim not in (2, 3) or not np.isfinite(img).all():
        raise InputError(f"Expected a finite 2-D or 3-D image, got shape {img.shape}.")
    nets_ = [m for m in (gen if mode == "adversarial" else None, seg) if m is not None]
    for m in nets_:
        m.to(device).eval()
    fn = (lambda t: seg(gen(t))) if mode == "adversarial" else seg
    probs = torch.softmax(_padded_run(fn, img, math.lcm(*[_stride(m) for m in nets_]), device), 1)[0]
    labels = probs.argmax(0).numpy().astype(np.uint8)
    return (labels, probs.numpy()) if return_probs else labels


def _class_dice(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[int, float]:
    """Dice of each foreground class present in either map."""
    from ...core.metrics import dice

    return {c: dice(pred, truth, c) for c in range(1, n_classes) if (pred == c).any() or (truth == c).any()}


def _class_name(c: int, n_classes: int) -> str:
    return TISSUE_NAMES[c] if n_classes == len(TISSUE_NAMES) else str(c)


def site_dice(model_or_pair, domains: Mapping, mode: str, device="cpu", n_classes: int = 4) -> dict:
    """Per-site, per-class Dice (mean over each site's images), their means, the overall mean."""
    per_site, means = {}, {}
    for site, items in domains.items():
        scores: dict[int, list[float]] = {}
        for img, lab in items:
            for c, d in _class_dice(segment(model_or_pair, img, device, mode), np.asarray(lab), n_classes).items():
                scores.setdefault(c, []).append(d)
        per_site[site] = {_class_name(c, n_classes): float(np.mean(v)) for c, v in sorted(scores.items())}
        means[site] = float(np.mean(list(per_site[site].values()))) if per_site[site] else 0.0
    classes = sorted({k for v in per_site.values() for k in v})
    per_class = {k: float(np.mean([v[k] for v in per_site.values() if k in v])) for k in classes}
    return {"dice": per_site, "dice_site": means, "dice_class": per_class,
            "dice_overall": float(np.mean(list(means.values()))) if means else 0.0}


def _mean_pairwise_jsd(images: Mapping, masks: Mapping) -> float:
    names = list(images)
    vals = [histogram_jsd(images[a], images[b], mask=(masks[a], masks[b]))
            for i, a in enumerate(names) for b in names[i + 1:]]
    return float(np.mean(vals)) if vals else 0.0


def evaluate_sites(generator, segmenter, test_domains: Mapping, mode: str = "adversarial", device="cpu",
                   n_classes: int = 4) -> dict:
    """Dice per site and class (:func:`site_dice`), and the JSD between the sites' brain
    intensity histograms (mean over site pairs) on raw images (``jsd_before``) and on what
    the segmenter sees (``jsd_after``: G(x), the z-scored image, or the raw one for "none")."""
    _check_labelled(test_domains, "test")
    model = (generator, segmenter) if generator is not None else segmenter
    out = site_dice(model, test_domains, mode, device, n_classes)
    masks = {s: [np.asarray(lab) > 0 for _, lab in items] for s, items in test_domains.items()}
    raw = {s: [np.asarray(img, np.float32) for img, _ in items] for s, items in test_domains.items()}
    if mode == "adversarial":
        seen = {s: [normalize_volume(generator, im, device) for im in ims] for s, ims in raw.items()}
    else:
        seen = {s: [_input(im, mode) for im in ims] for s, ims in raw.items()}
    out.update(jsd_before=_mean_pairwise_jsd(raw, masks), jsd_after=_mean_pairwise_jsd(seen, masks))
    if mode == "adversarial":
        out["checkerboard_ratio"] = checkerboard_ratio([g for ims in seen.values() for g in ims],
                                                       [x for ims in raw.values() for x in ims])
    return out


def _check_labelled(domains, what: str, n_classes: int | None = None) -> None:
    for site, items in domains.items():
        for k, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) != 2 or item[1] is None:
                raise InputError(f"{what.capitalize()} domain {site!r}, image {k} has no labels; "
                                 "every image needs its label map here.")
            img, lab = np.asarray(item[0]), np.asarray(item[1])
            if lab.shape != img.shape:
                raise InputError(f"{what.capitalize()} domain {site!r}, image {k}: the labels have shape "
                                 f"{lab.shape} but the image {img.shape}; labels must be on the image's grid.")
            if n_classes is not None and (lab.min() < 0 or lab.max() >= n_classes):
                raise InputError(f"{what.capitalize()} domain {site!r}, image {k} has labels outside "
                                 f"0..{n_classes - 1}.")
