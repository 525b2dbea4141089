"""Layers of the Modality transfer dock read as the method's volumes: image layers as stacks of
2-D slices, each paired with its tumour labels layer on the same grid."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels

from ...core.errors import InputError
from ...methods.modality_transfer.data import volume_from_stack


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


def layer_volumes(images, labels, modality, what) -> list[dict]:
    _check_modality(images, modality, what)
    pairs = pair_labels(list(images), list(labels), what)
    out = []
    for i, (img, lab) in enumerate(zip(images, pairs)):
        stack = layer_stack(img, f"The {what} image")
        out.append(volume_from_stack(img.name, stack, np.asarray(lab.data).reshape(stack.shape), _spacing(img), i))
    return out
