"""Run any registered segmentation checkpoint over an image, tiled, into zarr.

A segmentation checkpoint's meta carries ``io``: how to turn pixels into network input
(``input``), network output into probabilities (``postprocess``), the class names, and
the tiling constraints (``stride``: the net's total stride; ``margin``: its
receptive-field radius rounded up to the stride).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .sources import as_source
from .tiling import TileConfig, create_pyramid_output, into_result, tiled_inference


def _rgb_uint8(block: np.ndarray) -> np.ndarray:
    if block.shape[0] not in (3, 4):
        raise InputError(f"This model needs an RGB image; the image has {block.shape[0]} channel(s).")
    return block[:3].astype(np.float32) / 255.0


def _gray(block: np.ndarray) -> np.ndarray:
    x = block.astype(np.float32)
    if block.dtype == np.uint8:
        return x / 255.0
    return x


def _softmax(y: torch.Tensor) -> torch.Tensor:
    return torch.softmax(y.float(), dim=1)


def _sigmoid(y: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(y.float())


def _softmax_foreground(y: torch.Tensor) -> torch.Tensor:
    """Softmax, regrouped so that the arg-max decides background against all other classes
    together first, then which of them: each pixel's foreground probability (1 - p0) goes
    to its most probable foreground class, the others get 0. With two classes it is the
    softmax. (Plain arg-max over interior and boundary would call a pixel background at
    p = 0.4 / 0.3 / 0.3 and shrink every object.)"""
    p = torch.softmax(y.float(), dim=1)
    fg = 1 - p[:, :1]
    best = p[:, 1:].argmax(dim=1, keepdim=True)
    rest = torch.zeros_like(p[:, 1:]).scatter_(1, best, fg)
    return torch.cat([p[:, :1], rest], dim=1)


PREPROCESS = {"rgb_uint8": _rgb_uint8, "gray": _gray}
POSTPROCESS = {"softmax": _softmax, "sigmoid": _sigmoid, "softmax_foreground": _softmax_foreground}


def io_spec(meta: dict) -> dict:
    io = meta.get("io")
    if not io:
        raise InputError(f"Model {meta.get('method', '?')} has no input/output description; it cannot segment images.")
    if not isinstance(io, dict) or io.get("input") not in PREPROCESS or io.get("postprocess", "softmax") not in POSTPROCESS:
        raise InputError(f"Model {meta.get('method', '?')} describes an input/output this version cannot run "
                         f"(input {io.get('input') if isinstance(io, dict) else io!r}); it cannot segment images.")
    return io


def check_model_fits(meta: dict, spatial_dims: int, channels: int) -> None:
    """One clear line when the network's dimensionality or input channels do not match the image."""
    kwargs = (meta.get("arch") or {}).get("kwargs") or {}
    dims, in_ch = kwargs.get("spatial_dims"), kwargs.get("in_channels")
    name = meta.get("method", "this model")
    if isinstance(dims, int) and dims != spatial_dims:
        raise InputError(f"{name} is a {dims}-D model and the image is {spatial_dims}-D; pick a {dims}-D image "
                         f"(or one slice/plane of it) or a {spatial_dims}-D model.")
    if isinstance(in_ch, int) and meta.get("io", {}).get("input") == "gray" and channels not in (1, in_ch):
        raise InputError(f"{name} takes {in_ch} channel(s) and the image has {channels}.")


def run_segmentation(
    model: torch.nn.Module,
    meta: dict,
    image,
    out_path: str | Path,
    *,
    tile: int = 1024,
    batch_size: int = 1,
    output: str = "labels",
    device="cpu",
    client=None,
    rgb: bool = False,
    overwrite: bool = False,
    inputs=(),
    pixel_size=None,
    unit: str | None = None,
):
    """Check the inputs now, then return a generator yielding progress.

    The generator writes a zarr group at ``out_path`` (level ``"0"`` at full resolution,
    coarser levels for large 2D results, see :func:`~napari_medseg.core.tiling.create_pyramid_output`)
    and returns the list of level arrays. ``pixel_size`` (of the image's spatial axes, in
    ``unit``) goes into the result's OME-NGFF metadata, so the result lands on the image.

    ``image`` is (Y, X[, 3]) or (Z, Y, X): RGB slides keep colour on the last axis.
    Bad input raises here, before any job starts. The result is marked complete only
    when every tile is written; an existing ``out_path`` is refused unless ``overwrite``
    (then the old result is replaced only once the new one is complete), and so is any
    ``out_path`` that is (inside) one of ``inputs``.
    """
    io = io_spec(meta)
    channel_axis = -1 if rgb else None
    source = as_source(image, channel_axis)
    if io["input"] == "rgb_uint8" and source.channels < 3:
        raise InputError("This model needs an RGB image (colour on the last axis); pick an RGB layer.")
    cfg = TileConfig(
        tile=tile,
        stride=int(io.get("stride", 8)),
        margin=int(io.get("margin", 48)),
        batch_size=batch_size,
        output=output,
    )
    n_classes = len(io.get("classes", [])) or None
    spatial = source.spatial_shape
    if len(spatial) not in (2, 3) or any(s == 0 for s in spatial):
        raise InputError(f"Segmentation takes a non-empty 2D or 3D image; this one has shape {tuple(source.shape)}.")
    if tile < 1 or batch_size < 1:
        raise InputError(f"The tile size and batch size must be at least 1 (got tile {tile}, batch size {batch_size}).")
    check_model_fits(meta, len(spatial), source.channels)
    cfg.plan(spatial)  # raises on impossible tiling settings

    def fill(out):
        return tiled_inference(model, source, out, cfg, device=device, preprocess=PREPROCESS[io["input"]],
                               postprocess=POSTPROCESS[io.get("postprocess", "softmax")], out_channels=n_classes,
                               client=client)

    info = {"model": meta.get("method", ""), "model_version": meta.get("version"), "model_sha256": meta.get("sha256", "")}
    return into_result(out_path, lambda path: create_pyramid_output(path, spatial, n_classes or 2, cfg,
                                                                    pixel_size=pixel_size, unit=unit), fill,
                       inputs=inputs, overwrite=overwrite, info=info)
