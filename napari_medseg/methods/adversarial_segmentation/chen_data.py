"""Training and validation slices for Chen et al. (2019), from an MS-CMR-like cohort.

* **L_ID** (the set S of Eq. 5): every annotated slice of every annotated sequence among
  the sources and the target (bSSFP, T2 and, for the fully labelled patients, LGE), with
  its expert labels. The paper trains on "only those MR scans with manual annotations".
* **L_DT** (the set T of Eq. 5, weak domain transfer only): the target (LGE) slices of
  every patient whose target is *not* annotated but whose sources are, each paired with
  the pseudo-mask of :func:`~.cardiac.patient_pseudo_masks`, once per annotated source
  (a patient with bSSFP and T2 labels gives 2·m pairs for its m LGE slices). Patients
  with LGE labels are in S with their expert labels instead (the paper's T is "LGE data
  without masks, but with pseudo masks").
* **Validation**: the annotated target (LGE) slices of the validation patients.

Every slice is z-scored on its own, as in the paper ("the intensities of each 2D slice
from three modalities are normalized using z-scores"). ``size`` centre-crops or
zero-pads slices (after normalisation, so padding is the slice mean) to one in-plane
shape; without it every slice must already share one. Patients are duck-typed: any
object with ``images`` and ``labels`` dicts of (slices, H, W) stacks and an ``id``
(:class:`~.cardiac.CohortCase`, :class:`~.cardiac.CardiacPatient`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core.errors import InputError
from .cardiac import patient_pseudo_masks


@dataclass
class SliceSet:
    """2D training or validation slices: images (N, H, W) float32 z-scored per slice,
    labels (N, H, W) uint8, and per slice its (patient id, sequence) origin; for pseudo-mask
    pairs the sequence reads ``"LGE<-bSSFP"`` (target image, source labels)."""

    images: np.ndarray
    labels: np.ndarray
    origin: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class ChenData:
    """``identity``: S, the expert-labelled slices (L_ID); ``transfer``: T, the target slices
    with pseudo-masks (L_DT), only for ``adversarial_transfer``, else None."""

    identity: SliceSet
    transfer: SliceSet | None = None


def zscore(images: np.ndarray) -> np.ndarray:
    """Per-slice z-score of a (N, H, W) stack (a constant slice becomes zeros)."""
    x = np.asarray(images, np.float32)
    mean = x.mean(axis=(-2, -1), keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    return ((x - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def fit(stack: np.ndarray, size) -> np.ndarray:
    """Centre-crop or zero-pad a (N, H, W) stack to ``size`` (H, W); None keeps it."""
    if size is None:
        return stack
    out = np.zeros((stack.shape[0], *size), stack.dtype)
    src, dst = [], []
    for have, want in zip(stack.shape[1:], size):
        a, b = max(0, (have - want) // 2), max(0, (want - have) // 2)
        n = min(have, want)
        src.append(slice(a, a + n))
        dst.append(slice(b, b + n))
    out[(slice(None), *dst)] = stack[(slice(None), *src)]
    return out


def _name(case, i: int) -> str:
    return str(getattr(case, "id", f"patient {i + 1}"))


def _checked(case, i: int, seq: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One annotated stack, with one clear error for each way it can be wrong."""
    name = _name(case, i)
    img = case.images.get(seq)
    if img is None:
        raise InputError(f"Patient {name} has {seq} labels but no {seq} image.")
    img, lab = np.asarray(img), np.asarray(case.labels[seq])
    if img.ndim != 3 or len(img) == 0:
        raise InputError(f"Patient {name}: the {seq} image must be a non-empty stack (slices, H, W); "
                         f"got shape {img.shape}.")
    if lab.shape != img.shape:
        raise InputError(f"Patient {name}: the {seq} labels are {lab.shape} but the image is {img.shape}; "
                         "labels must be on the image's grid (resample them first).")
    if not np.isfinite(img).all():
        raise InputError(f"Patient {name}: the {seq} image has NaN or infinite values.")
    if lab.min() < 0 or lab.max() >= n_classes:
        raise InputError(f"Patient {name}: the {seq} labels hold values outside 0..{n_classes - 1}.")
    return img, lab.astype(np.uint8)


def _stack(parts, size, what: str) -> SliceSet:
    shapes = {p[0].shape[1:] for p in parts}
    if size is None and len(shapes) > 1:
        raise InputError(f"The {what} slices have different in-plane shapes {sorted(shapes)}; set a common "
                         "size (config.size) to crop or pad them to.")
    images = np.concatenate([fit(zscore(p[0]), size) for p in parts])
    labels = np.concatenate([fit(p[1], size) for p in parts])
    origin = [o for p in parts for o in [p[2]] * len(p[0])]
    return SliceSet(images, labels, origin)


def chen_training_data(cases, config) -> ChenData:
    """S (and T for ``adversarial_transfer``) from the training patients; see the module."""
    cases = list(cases or [])
    if not cases:
        raise InputError("No training patients given.")
    seqs = (*config.sources, config.target)
    ident, transfer = [], []
    for i, case in enumerate(cases):
        for seq in seqs:
            if seq in case.labels:
                img, lab = _checked(case, i, seq, config.n_classes)
                ident.append((img, lab, (_name(case, i), seq)))
        if config.method == "adversarial_transfer" and config.target not in case.labels:
            if not any(s in case.labels for s in config.sources):
                continue  # an unlabelled patient: nothing to transfer
            for s in config.sources:
                if s in case.labels:
                    _checked(case, i, s, config.n_classes)
            masks = patient_pseudo_masks(case, config.target, config.sources)
            img = np.asarray(case.images[config.target])
            if not np.isfinite(img).all():
                raise InputError(f"Patient {_name(case, i)}: the {config.target} image has NaN or infinite values.")
            for s, m in masks.items():
                transfer.append((img, m.astype(np.uint8), (_name(case, i), f"{config.target}<-{s}")))
    if not ident:
        raise InputError(f"None of the {len(cases)} training patients has labels on "
                         f"{' / '.join(seqs)}; there are no labelled slices to train on.")
    out = ChenData(_stack(ident, config.size, "training"))
    if config.method == "adversarial_transfer":
        if not transfer:
            raise InputError(f"Empty target set: weak domain transfer needs {config.target} slices of patients "
                             f"annotated on {' or '.join(config.sources)} but not on {config.target}; "
                             "none of the training patients is. Use method 'adversarial' instead.")
        out.transfer = _stack(transfer, config.size, "pseudo-mask")
        if out.transfer.images.shape[1:] != out.identity.images.shape[1:]:
            raise InputError(f"The {config.target} slices are {out.transfer.images.shape[1:]} in-plane but the "
                             f"labelled slices {out.identity.images.shape[1:]}; set a common size (config.size).")
    return out


def chen_validation_data(cases, config) -> SliceSet:
    """The annotated target (LGE) slices of the validation patients."""
    parts = [(*_checked(c, i, config.target, config.n_classes), (_name(c, i), config.target))
             for i, c in enumerate(cases or []) if config.target in c.labels]
    if not parts:
        raise InputError(f"Empty target set: none of the {len(cases or [])} validation patients has "
                         f"{config.target} labels to validate on.")
    return _stack(parts, config.size, "validation")


def augment(rng: np.random.Generator, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random flips along both axes and, for square slices, a random multiple of 90°."""
    for axis in (0, 1):
        if rng.random() < 0.5:
            image, label = np.flip(image, axis), np.flip(label, axis)
    if image.shape[0] == image.shape[1]:
        k = int(rng.integers(4))
        image, label = np.rot90(image, k), np.rot90(label, k)
    return image, label


def sample(rng: np.random.Generator, data: SliceSet, n: int, crop=None, flip_rotate: bool = True):
    """A mini-batch (n, 1, H, W) float32 images and (n, H, W) int64 labels, drawn with
    replacement, randomly cropped to ``crop`` (H, W) when given, and augmented."""
    idx = rng.integers(len(data), size=n)
    h, w = data.images.shape[1:]
    ch, cw = (h, w) if crop is None else crop
    xs, ys = [], []
    for i in idx:
        y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        img, lab = data.images[i, y0:y0 + ch, x0:x0 + cw], data.labels[i, y0:y0 + ch, x0:x0 + cw]
        if flip_rotate:
            img, lab = augment(rng, img, lab)
        xs.append(img)
        ys.append(lab)
    return np.ascontiguousarray(np.stack(xs)[:, None]), np.stack(ys).astype(np.int64)
