"""Qt-free helpers of the Normalize across sites controller: rescaling, applying a saved
model the way it was trained, histograms for the dock, reading a folder domain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..methods.site_normalization.delisle import normalize_volume, segment, standardize
from ..methods.site_normalization.sites import histogram_jsd
from ..core.intensity import percentile_scale

PERCENTILES = (1.0, 99.0)
PREP_TAG = "; preprocessing "
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".tif", ".tiff")
LABELS_TAG = "_labels"
STAGES = {"raw": "raw (each image's own units)", "rescaled": "rescaled (the generator's input)",
          "normalized": "normalized (what the segmenter sees)"}


def rescale(image: np.ndarray) -> np.ndarray:
    """The brain's (non-zero voxels'; all when none is zero) 1st-99th percentile range to [0, 1]."""
    img = np.asarray(image, np.float32)
    brain = img != 0
    mask = brain if brain.any() and not brain.all() else None
    return percentile_scale(img, *PERCENTILES, mask=mask)


def preprocessing_of(meta: dict) -> dict:
    """How a saved version's inputs were prepared (the widget writes it into ``config.data``)."""
    data = str((meta.get("config") or {}).get("data", ""))
    if PREP_TAG in data:
        try:
            return {"rescale": False, "slice_axis": 0, **json.loads(data.split(PREP_TAG, 1)[1])}
        except json.JSONDecodeError:
            pass
    return {"rescale": False, "slice_axis": 0}  # versions trained elsewhere (bench, CLI): raw images


def brain_mask(image: np.ndarray, labels) -> np.ndarray:
    if labels is not None:
        return np.asarray(labels) > 0
    nz = np.asarray(image) != 0
    return nz if nz.any() and not nz.all() else np.ones(np.shape(image), bool)


def seen_by_segmenter(model, mode: str, image: np.ndarray, device) -> np.ndarray:
    """G(x) in adversarial mode, the z-scored image when standardized, the image itself for "none"."""
    if mode == "adversarial":
        return normalize_volume(model, image, device)
    return standardize(image) if mode == "standardized" else np.asarray(image, np.float32)


def apply_model(model, mode: str, meta: dict, raw: np.ndarray, what: str, device) -> np.ndarray:
    """Normalise (``what="normalize"``) or segment one whole image as the version was trained:
    same rescaling, slice by slice when a 2-D model meets a 3-D image."""
    prep = preprocessing_of(meta)
    x = rescale(raw) if prep["rescale"] else np.asarray(raw, np.float32)
    sd = int((meta.get("config") or {}).get("spatial_dims", x.ndim))

    def one(im):
        return seen_by_segmenter(model, mode, im, device) if what == "normalize" else segment(model, im, device, mode)

    if x.ndim == sd:
        return one(x)
    if sd == 2 and x.ndim == 3:
        ax = int(prep["slice_axis"])
        return np.stack([one(np.take(x, k, axis=ax)) for k in range(x.shape[ax])], axis=ax)
    raise InputError(f"The model is {sd}-D and the image {x.ndim}-D (shape {x.shape}); a 3-D model needs volumes.")


def histogram_panels(groups: dict, bins: int = 64, stages=tuple(STAGES)) -> list[dict]:
    """Per stage: each group's (domain's) intensity histogram over its brain voxels (density, shared
    bins), and the JSD between the groups (:func:`histogram_jsd`, mean over pairs; None for one group).
    ``groups``: {name: [{"raw", "rescaled", "normalized", "mask"}, ...]}."""
    panels = []
    names = list(groups)
    for stage in stages:
        vals = {g: np.concatenate([np.asarray(it[stage], np.float64)[it["mask"]].ravel() for it in items])
                for g, items in groups.items()}
        lo = min(float(v.min()) for v in vals.values() if v.size)
        hi = max(float(v.max()) for v in vals.values() if v.size)
        hi = hi if hi > lo else lo + 1.0
        hist = {g: (np.histogram(v, bins=bins, range=(lo, hi))[0] / max(1, v.size)).tolist() for g, v in vals.items()}
        pairs = [histogram_jsd([it[stage] for it in groups[a]], [it[stage] for it in groups[b]],
                               mask=([it["mask"] for it in groups[a]], [it["mask"] for it in groups[b]]))
                 for i, a in enumerate(names) for b in names[i + 1:]]
        panels.append({"stage": stage, "title": STAGES[stage], "range": (lo, hi), "hist": hist,
                       "jsd": float(np.mean(pairs)) if pairs else None})
    return panels


def folder_files(folder) -> list[tuple[Path, Path | None]]:
    """(image, labels or None) of a domain folder: ``<stem>_labels.<ext>`` labels ``<stem>.<ext>``."""
    p = Path(str(folder)).expanduser()
    if not p.is_dir():
        raise InputError(f"{p} is not a folder; pick a folder of NIfTI/TIFF files, one domain per folder.")

    def stem(f: Path) -> str | None:
        low = f.name.lower()
        suf = next((s for s in IMAGE_SUFFIXES if low.endswith(s)), None)
        return None if suf is None else f.name[: -len(suf)]

    files = sorted(f for f in p.iterdir() if f.is_file() and stem(f))
    labels = {stem(f)[: -len(LABELS_TAG)]: f for f in files if stem(f).endswith(LABELS_TAG)}
    images = [f for f in files if not stem(f).endswith(LABELS_TAG)]
    orphans = sorted(set(labels) - {stem(f) for f in images})
    if orphans:
        raise InputError(f"{p}: {labels[orphans[0]].name} has no image {orphans[0]}.<ext>; labels files are named "
                         f"after their image, '<image>{LABELS_TAG}.<ext>'.")
    return [(f, labels.get(stem(f))) for f in images]


def read_file(path: Path) -> tuple[np.ndarray, dict]:
    from ..core.io import read_image

    levels, meta = read_image(path)
    arr = np.asarray(levels[0])
    if meta.get("channel_axis") is not None or meta.get("rgb"):
        raise InputError(f"{path} holds several channels or colour; each file must be one grey 2-D or 3-D image.")
    return arr, meta


def _grid(layer) -> tuple:
    return (np.asarray(layer.scale, float), np.asarray(layer.translate, float),
            np.asarray(layer.affine.affine_matrix, float))


def _place(layer) -> dict:
    out = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
    if not np.allclose(layer.affine.affine_matrix, np.eye(layer.ndim + 1)):
        out["affine"] = np.asarray(layer.affine.affine_matrix)
    return out


def _dice(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float | None:
    scores = []
    for c in range(1, n_classes):
        a, b = pred == c, truth == c
        if a.any() or b.any():
            scores.append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    return float(np.mean(scores)) if scores else None
