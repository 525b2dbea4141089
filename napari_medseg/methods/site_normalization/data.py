"""Data of the normalisation method as a user brings it (Delisle et al. 2019): domains of
images read from folders, checked, rescaled and cut into training pairs with a held-out image
per domain; a saved model applied the way it was trained; histograms and JSD per stage.

The widget's controller turns layers into the ``items`` these functions take: dicts with
``title``, ``raw`` (the image array), ``labels`` (array or None) and ``layer``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from ...core.intensity import percentile_scale
from .delisle import load_normalization, normalize_volume, segment, standardize
from .sites import histogram_jsd

PERCENTILES = (1.0, 99.0)
PREP_TAG = "; preprocessing "
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".tif", ".tiff")
LABELS_TAG = "_labels"
MIN_BRAIN = 0.15  # 2-D training keeps slices with at least this fraction of labelled pixels
VAL_SLICES = 8  # held-out slices per image validated on (2-D)
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
    from ...core.io import read_image

    levels, meta = read_image(path)
    arr = np.asarray(levels[0])
    if meta.get("channel_axis") is not None or meta.get("rgb"):
        raise InputError(f"{path} holds several channels or colour; each file must be one grey 2-D or 3-D image.")
    return arr, meta


def mean_class_dice(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float | None:
    """Mean Dice over the foreground classes present in either map; None if none is."""
    from ...core.metrics import dice

    scores = [dice(pred, truth, c) for c in range(1, n_classes) if (pred == c).any() or (truth == c).any()]
    return float(np.mean(scores)) if scores else None


def read_folder_domain(name: str, files) -> list[dict]:
    """A folder domain's images and labels (``files``: (image path, labels path or None)), each
    checked: one grey 2-D or 3-D image per file, labels on the image's grid."""
    items = []
    for img_path, lab_path in files:
        img, meta = read_file(img_path)
        if img.ndim not in (2, 3):
            raise InputError(f"Domain {name!r}: {img_path.name} is {img.ndim}-D; each file must be one grey "
                             "2-D or 3-D image.")
        lab = None
        if lab_path is not None:
            lab, lmeta = read_file(lab_path)
            aff, laff = meta.get("affine"), lmeta.get("affine")
            if lab.shape != img.shape or (aff is not None and laff is not None
                                          and not np.allclose(aff, laff, atol=1e-3)):
                raise InputError(f"Domain {name!r}: the labels {lab_path.name} (shape {lab.shape}) are not on "
                                 f"the grid of {img_path.name} (shape {img.shape}, or another affine); labels "
                                 "must be on the image's grid.")
        items.append({"title": f"{name}: {img_path.name}", "raw": img, "labels": lab, "layer": None, "meta": meta})
    return items


def check_domain_items(domains: list[tuple[str, list[dict]]]) -> list[tuple[str, list[dict]]]:
    """The domains' images, checked: finite values, and all 2-D or all 3-D."""
    for name, items in domains:
        for it in items:
            if not np.isfinite(it["raw"]).all():
                raise InputError(f"Domain {name!r}: {it['title']!r} has NaN or infinite values; fix or mask "
                                 "them first.")
    dims = {it["raw"].ndim for _, items in domains for it in items}
    if len(dims) > 1:
        raise InputError("The domains mix 2-D and 3-D images; use one kind throughout.")
    return domains


def training_pairs(items: list[dict], spatial_dims: int, val: bool, rescaled: bool, slice_axis: int) -> list[tuple]:
    """(input, labels) pairs: the images, or (2-D) their slices along ``slice_axis`` with enough
    labelled pixels (``VAL_SLICES`` of them, evenly spaced, for validation)."""
    out = []
    for it in items:
        x = rescale(it["raw"]) if rescaled else np.asarray(it["raw"], np.float32)
        y = np.asarray(it["labels"])
        if spatial_dims == 3 or x.ndim == 2:
            out.append((x, y))
            continue
        ax = int(slice_axis)
        frac = np.moveaxis(y > 0, ax, 0).reshape(y.shape[ax], -1).mean(1)
        keep = np.flatnonzero(frac >= MIN_BRAIN)
        keep = keep if keep.size else np.flatnonzero(frac > 0)
        keep = keep if keep.size else np.arange(y.shape[ax])
        if val and keep.size > VAL_SLICES:
            keep = keep[np.linspace(0, keep.size - 1, VAL_SLICES).round().astype(int)]
        out += [(np.take(x, k, axis=ax), np.take(y, k, axis=ax)) for k in keep]
    return out


def n_classes_of(domains: list[tuple[str, list[dict]]]) -> int:
    """Classes the labels hold (at least 2); every image must have labels, none negative."""
    top = 0
    for name, items in domains:
        for it in items:
            if it["labels"] is None:
                raise InputError(f"Domain {name!r}: {it['title']!r} has no labels; pick its labels layer or name "
                                 "it '<image> labels' (folders: '<image>_labels.<ext>'). Training needs every "
                                 "image's labels; Normalize and Segment do not.")
            lab = np.asarray(it["labels"])
            if lab.min() < 0:
                raise InputError(f"Domain {name!r}: the labels of {it['title']!r} hold negative values.")
            top = max(top, int(lab.max()))
    return max(2, top + 1)


def held_out_split(domains, spatial_dims: int, rescaled: bool, slice_axis: int):
    """``(train, val, notes)``: per domain, the last image is held out to validate on (3-D with
    only two volumes: both are trained on, and ``notes`` says so)."""
    train, val, notes = {}, {}, []
    for name, items in domains:
        held = items[-1:]
        fit = items[:-1] if (spatial_dims == 2 or len(items) > 2) else items
        if fit is items:
            notes.append(f"{name}: 3-D training needs two volumes per domain, so both are trained on and its "
                         "validation is not held out")
        train[name] = training_pairs(fit, spatial_dims, False, rescaled, slice_axis)
        val[name] = training_pairs(held, spatial_dims, True, rescaled, slice_axis)
    return train, val, notes


def apply_to_groups(entry, groups, what: str, device) -> dict:
    """A saved version on every image of ``groups`` ([(name, items)]): normalised (``what``
    "normalize", with the histograms of every stage) or segmented."""
    model, mode, meta = load_normalization(entry, device)
    prep = preprocessing_of(meta)
    out = {"groups": [], "mode": mode, "meta": meta}
    hist_groups = {}
    for name, items in groups:
        done = []
        for it in items:
            res = apply_model(model, mode, meta, it["raw"], what, device)
            done.append({**it, "result": res})
            if what == "normalize":
                x = rescale(it["raw"]) if prep["rescale"] else np.asarray(it["raw"], np.float32)
                hist_groups.setdefault(name, []).append({"raw": it["raw"], "rescaled": x, "normalized": res,
                                                         "mask": brain_mask(it["raw"], it["labels"])})
        out["groups"].append((name, done))
    if what == "normalize":
        stages = tuple(STAGES) if prep["rescale"] else ("raw", "normalized")
        out["histograms"] = histogram_panels(hist_groups, stages=stages)
    return out
