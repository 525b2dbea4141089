"""The glomerulus segmenter: a MONAI U-Net, its loss, and how slides go in and out.

The U-Net has five levels (16-256 channels, total stride 16, batch norm, so tiled
output equals whole-slide output); its receptive-field radius is about 93 px, enough
to see a whole glomerulus and the ring of tubules around it. By default it predicts
background and glomerulus, and touching objects are split by the distance watershed
(:mod:`.instances`). With ``head="boundary"`` (the instance head) it has a third
class, the walls between touching objects. See docs/benchmarks.md for why the binary
head stays the default.
"""

from __future__ import annotations

import numpy as np
import torch

from ...core import nets
from ...core.errors import InputError, NotACheckpointError
from ...core.registry import ModelEntry
from .labels import UNKNOWN

MODEL_NAME = "glomeruli"
METHOD = "gupta2019-box-iterative"
ARCH = {
    "name": "monai.UNet",
    "kwargs": {"spatial_dims": 2, "in_channels": 3, "out_channels": 2, "channels": [16, 32, 64, 128, 256],
               "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"},
}
IO = {"input": "rgb_uint8", "postprocess": "softmax", "classes": ["background", "glomerulus"], "stride": 16,
      "margin": 96}
#: the instance head: a third class, the walls between touching objects (:mod:`.instances`)
ARCH_BOUNDARY = {**ARCH, "kwargs": {**ARCH["kwargs"], "out_channels": 3}}
IO_BOUNDARY = {**IO, "postprocess": "softmax_foreground", "classes": ["background", "glomerulus", "boundary"]}
BOUNDARY_WEIGHT = 3.0  # cross-entropy weight of boundary pixels: thin, and what keeps neighbours apart


def has_boundary(io: dict) -> bool:
    """Whether a model with this ``io`` predicts the boundary class (the instance head)."""
    return "boundary" in (io or {}).get("classes", [])


def head_spec(head: str = "binary") -> tuple[dict, dict]:
    """(arch, io) of a new model: ``"binary"`` (two classes; instances from the distance
    watershed of the foreground) or ``"boundary"`` (three classes, the instance head)."""
    if head not in ("boundary", "binary"):
        raise InputError(f"head must be 'binary' or 'boundary', not {head!r}.")
    return (ARCH_BOUNDARY, IO_BOUNDARY) if head == "boundary" else (ARCH, IO)


def build_model(seed: int = 0, head: str = "binary") -> torch.nn.Module:
    arch, _ = head_spec(head)
    torch.manual_seed(seed)
    return nets.build(arch)


def model_from_entry(entry: ModelEntry, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Load a registry entry, refusing checkpoints of other methods with one clear message."""
    if entry.meta.get("method") != METHOD:
        what = entry.meta.get("method", "another method")
        raise NotACheckpointError(f"{entry.path.name} is a {what} model, not a glomerulus segmenter; "
                                  f"pick a {MODEL_NAME} model.")
    return entry.load(device)


def check_slide(image, name: str = "slide", polarity: str = "auto") -> tuple[object, str | None]:
    """The 8-bit RGB view of a slide (numpy/dask/zarr, never read whole) and a note of what
    was done to get it: any channel count, bit depth and polarity (see :mod:`.inputs`)."""
    from .inputs import as_rgb8

    return as_rgb8(image, name, polarity)


def to_input(rgb_patch: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] (the network's RGB normalisation)."""
    return torch.from_numpy(np.moveaxis(np.asarray(rgb_patch), -1, 0).astype(np.float32) / 255.0)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-weighted cross-entropy + soft Dice of the foreground (interior and boundary); ``UNKNOWN`` ignored.

    ``target`` is (B, 2, H, W): the label map (0 / 1 / 2 boundary for a three-class model)
    and a per-pixel weight (corrected pixels weigh more). MONAI's Dice and cross-entropy
    losses have no ignore label, hence here.
    """
    labels, weight = target[:, 0], target[:, 1]
    known = labels != UNKNOWN
    weight = weight * known
    y = torch.where(known, labels, torch.zeros_like(labels)).long()
    logits = logits.float()
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    ce = (ce * weight).sum() / weight.sum().clamp_min(1.0)
    fg = (1 - torch.softmax(logits, 1)[:, 0]) * known
    t = (y >= 1).float() * known
    dice = 1 - (2 * (fg * t).sum() + 1) / (fg.sum() + t.sum() + 1)
    return ce + dice
