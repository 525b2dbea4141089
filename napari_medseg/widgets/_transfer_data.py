"""Helpers of the Modality transfer controller (no Qt widgets): image and labels layers read as
percentile-scaled slice stacks, phantom subjects as extra data, and the subject-wise split
into training, validation and test slices."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels

from .._sample_tumour import PHANTOM_SEED, phantom_subject
from ..core.errors import InputError
from ..core.intensity import percentile_scale

CHUNK = 4  # consecutive slices held out together (neighbouring slices are nearly the same image)
MIN_BRAIN = 0.1


def _info(layer) -> dict:
    return ((getattr(layer, "metadata", None) or {}).get("tumour") or {})


def layer_stack(layer, what: str) -> np.ndarray:
    """The layer as (N, H, W) slices (a 2-D layer is one slice), checked, as float32."""
    if not isinstance(layer, Image):
        raise InputError(f"{what}: {getattr(layer, 'name', layer)!r} is not an image layer.")
    if layer.multiscale or layer.rgb:
        raise InputError(f"{what}: {layer.name!r} is multiscale or RGB; pick a grey 2-D or 3-D image.")
    data = np.asarray(layer.data, np.float32)
    if data.ndim not in (2, 3):
        raise InputError(f"{what}: {layer.name!r} is {data.ndim}-D (shape {data.shape}); pick a 2-D image or a "
                         "3-D stack of slices (open each volume of a 4-D file as its own layer).")
    if not np.isfinite(data).all():
        raise InputError(f"{what}: {layer.name!r} has NaN or infinite values; fix or mask them first.")
    if float(data.max()) <= float(data.min()):
        raise InputError(f"{what}: {layer.name!r} is constant: there is nothing to segment in it.")
    return data[None] if data.ndim == 2 else data


def _floats(values) -> tuple:
    return tuple(round(float(v), 4) for v in values)


def _same_grid(a, b) -> bool:
    return (np.shape(a.data) == np.shape(b.data) and np.allclose(a.scale, b.scale)
            and np.allclose(a.translate, b.translate))


def pair_labels(images: list, labels: list, what: str) -> list:
    """The tumour Labels layer of each image layer: by the subject their metadata name
    (the sample's), else in the order given; each on its image's grid."""
    if not images:
        raise InputError(f"There is no {what} data: pick the {what} image layers and their tumour labels.")
    if not labels:
        raise InputError(f"Pick the tumour Labels layers of the {what} images ({len(images)} image layer(s), "
                         "no labels).")
    bad = [getattr(x, "name", x) for x in labels if not isinstance(x, Labels)]
    if bad:
        raise InputError(f"{what} labels: {bad} are not Labels layers.")
    if all(_info(x).get("subject") for x in images + labels):
        by = {_info(x)["subject"]: x for x in labels}
        missing = [f"{x.name!r} ({_info(x)['subject']})" for x in images if _info(x)["subject"] not in by]
        if missing:
            raise InputError(f"No tumour labels picked for the {what} image(s) {', '.join(missing)}; pick them too.")
        pairs = [by[_info(x)["subject"]] for x in images]
    elif len(images) == len(labels):
        pairs = list(labels)
    else:
        raise InputError(f"Pick one tumour Labels layer per {what} image layer ({len(images)} image(s), "
                         f"{len(labels)} labels); they are paired in layer-list order.")
    for img, lab in zip(images, pairs):
        if not _same_grid(img, lab):
            raise InputError(f"The labels {lab.name!r} (shape {np.shape(lab.data)}, scale {_floats(lab.scale)}) are on "
                             f"a different grid from {img.name!r} (shape {np.shape(img.data)}, scale "
                             f"{_floats(img.scale)}); resample the labels onto the image.")
    return pairs


def _check_modality(layers, modality: str, what: str) -> None:
    wrong = [f"{x.name!r} ({_info(x)['modality']})" for x in layers
             if _info(x).get("modality") and _info(x)["modality"] != modality]
    if wrong:
        raise InputError(f"The {what} modality is {modality}, but {', '.join(wrong)} say(s) otherwise in the "
                         f"layer metadata; pick {modality} layers or change the {what} modality.")


def _spacing(layer) -> tuple:
    """(row, column, slice) spacing of a layer read as a stack of slices."""
    s = [float(v) for v in layer.scale]
    return (s[-2], s[-1], s[0] if len(s) == 3 else 1.0)


def _volume(name, image, mask, spacing, subject) -> dict:
    image, mask = percentile_scale(image), (np.asarray(mask) > 0).astype(np.uint8)
    brain = (image > 0).mean(axis=(1, 2)) >= MIN_BRAIN
    keep = np.flatnonzero(brain | mask.any(axis=(1, 2)))
    return {"name": name, "image": image, "mask": mask, "keep": keep, "spacing": spacing, "subject": subject}


def layer_volumes(images, labels, modality, what) -> list[dict]:
    _check_modality(images, modality, what)
    pairs = pair_labels(list(images), list(labels), what)
    out = []
    for i, (img, lab) in enumerate(zip(images, pairs)):
        stack = layer_stack(img, f"The {what} image")
        out.append(_volume(img.name, stack, np.asarray(lab.data).reshape(stack.shape), _spacing(img), i))
    return out


def phantom_volumes(n: int, modality: str, seed: int, shape, start: int) -> list[dict]:
    out = []
    for i in range(int(n)):
        p = phantom_subject(PHANTOM_SEED + 1000 * int(seed) + i, "LG" if i % 5 == 4 else "HG", tuple(shape))
        out.append(_volume(f"phantom {i + 1}", p["images"][modality], p["mask"], (2.25, 2.25, 2.25), start + i))
    return out


def _chunks(keep: np.ndarray) -> list[np.ndarray]:
    return [keep[i:i + CHUNK] for i in range(0, len(keep), CHUNK)]


def _part(volumes, picks, modality) -> dict:
    """A :func:`tumour_slices`-style part from (volume index, slice indices) picks, its
    slices zero-padded to the largest grid among them."""
    picks = [(v, np.asarray(s, int)) for v, s in picks if len(s)]
    if not picks:
        return {"images": {modality: np.zeros((0, 1, 1), np.float32)}, "mask": np.zeros((0, 1, 1), np.uint8),
                "subject": np.zeros(0, int), "slice": np.zeros(0, int)}
    h = max(volumes[v]["image"].shape[1] for v, _ in picks)
    w = max(volumes[v]["image"].shape[2] for v, _ in picks)

    def pad(a):
        return np.pad(a, [(0, 0), (0, h - a.shape[1]), (0, w - a.shape[2])])

    return {"images": {modality: np.concatenate([pad(volumes[v]["image"][s]) for v, s in picks]).astype(np.float32)},
            "mask": np.concatenate([pad(volumes[v]["mask"][s]) for v, s in picks]).astype(np.uint8),
            "subject": np.concatenate([[volumes[v]["subject"]] * len(s) for v, s in picks]).astype(int),
            "slice": np.concatenate([s for _, s in picks]).astype(int)}


def split_volumes(volumes, held: list[int] | None, fraction: float, seed: int, test: bool = True):
    """(train, val, test) picks. ``held`` volumes go to validation and test, alternately
    (one held-out volume: alternate chunks of its slices); with ``held=None`` a
    ``fraction`` of each volume's slices, in chunks of :data:`CHUNK`, is held out and
    its chunks alternate between validation and test. ``test=False``: all to validation."""
    rng = np.random.default_rng(seed)
    train, val, tst = [], [], []
    if held is not None:
        held = list(held)
        for i, vol in enumerate(volumes):
            if i not in held:
                train.append((i, vol["keep"]))
            elif len(held) == 1 and test:
                ch = _chunks(vol["keep"])
                val += [(i, c) for c in ch[0::2]]
                tst += [(i, c) for c in ch[1::2]]
            else:
                (tst if test and held.index(i) % 2 else val).append((i, vol["keep"]))
        return train, val, tst
    if not 0.0 < fraction < 1.0:
        raise InputError(f"The held-out fraction must be between 0 and 1, got {fraction}.")
    k = 0
    for i, vol in enumerate(volumes):
        ch = _chunks(vol["keep"])
        n_out = min(len(ch) - 1, max(1, int(round(fraction * len(ch))))) if len(ch) > 1 else 0
        out = set(rng.permutation(len(ch))[:n_out].tolist())
        for j, c in enumerate(ch):
            if j not in out:
                train.append((i, c))
            else:
                (tst if test and k % 2 else val).append((i, c))
                k += 1
    return train, val, tst


def _has_tumour(part) -> bool:
    return bool(len(part["mask"]) and (part["mask"] > 0).any())
