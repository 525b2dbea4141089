"""Despeckling on its own (issue 22): any single-channel reflectance image, any size.

The network works on intensities in [0, 1]. :class:`ScaledDespeckler` maps an image's
own intensities there with its per-image range (:func:`~.gareau.intensity_range` of an
even subsample: the background level goes to 0, the bright tissue level to 1), runs the
network and maps the result back, so the output is in the input's units (float32) and
no value is clipped. The scaling is the same for every tile, so tiled output equals a
whole-image pass up to float rounding (the tiles carry the network's receptive radius
as margin). The widget, ``napari-medseg predict despeckle`` and the console all call
:func:`despeckle_array` (small images, previews) or :func:`despeckle_slide` (any size,
lazy, into a zarr pyramid).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...core.errors import InputError
from .pipeline import check_channel_dtype, despeckle_tile_config, despeckler_stride, slide_range


class ScaledDespeckler(nn.Module):
    """(B, 1, H, W) intensities → the despeckled image in the same units."""

    def __init__(self, net: nn.Module, value_range: tuple[float, float]):
        from ...core.nets import fuse_conv_bn

        super().__init__()
        lo, hi = (float(v) for v in value_range)
        if not np.isfinite([lo, hi]).all() or hi <= lo:
            raise InputError(f"The intensity range ({lo}, {hi}) is empty; the image has no contrast to despeckle.")
        self.net, self.lo, self.span = fuse_conv_bn(net.eval()), lo, hi - lo  # batch norms folded: faster
        self.receptive_radius = int(net.receptive_radius)
        self.stride = despeckler_stride(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net((x.float() - self.lo) / self.span)
        return y.float() * self.span + self.lo


def check_image(image, name: str = "image") -> None:
    """One clear message for anything that is not one 2D channel of numbers."""
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) == 3 and shape[-1] in (3, 4):
        raise InputError(f"The {name} is RGB {shape}; despeckling takes one reflectance (RCM) channel. "
                         "Pick a single-channel layer, or split the channels first.")
    if len(shape) != 2:
        raise InputError(f"The {name} has shape {shape}; despeckling takes a 2D single-channel image.")
    if min(shape) < 8:
        raise InputError(f"The {name} is {shape[0]}x{shape[1]} px; despeckling needs 8 px or more on each side.")
    check_channel_dtype(name, image)


def image_range(image, name: str = "image") -> tuple[float, float]:
    """The per-image intensity range the network sees as [0, 1] (checks the content too)."""
    check_image(image, name)
    try:
        return slide_range(image)
    except InputError as exc:
        raise InputError(f"The {name}: {exc}") from None


def despeckle_array(net: nn.Module, image, *, value_range=None, device="cpu") -> np.ndarray:
    """The despeckled image (float32, the input's units) in one pass: small images and previews."""
    rng = value_range or image_range(image)
    model = ScaledDespeckler(net.eval(), rng).to(device).eval()
    x = np.asarray(image, np.float32)
    h, w = x.shape
    x = np.pad(x, ((0, -h % model.stride), (0, -w % model.stride)))  # zeros past the far border, as tiles read them
    with torch.inference_mode():
        return model(torch.from_numpy(x)[None, None].to(device))[0, 0, :h, :w].cpu().numpy()


def despeckle_slide(net: nn.Module, image, out_path, *, value_range=None, tile: int = 1024, batch_size: int = 1,
                    device="cpu", pyramid_from: int | None = None, overwrite: bool = False, cpu_bf16: bool = False,
                    inputs=()):
    """Generator: despeckle a (lazy) image of any size tile by tile into a float32 zarr
    pyramid at ``out_path`` (never replacing existing data unless ``overwrite``). Yields
    :class:`Progress`; returns the level arrays, (1, H, W) each."""
    from ...core.tiling import create_pyramid_output, into_result, tiled_inference

    rng = value_range or image_range(image)
    model = ScaledDespeckler(net.eval(), rng)
    cfg = despeckle_tile_config(model, tile, batch_size, cpu_bf16=cpu_bf16)
    return (yield from into_result(
        out_path,
        lambda path: create_pyramid_output(path, tuple(image.shape), 1, cfg, smallest=pyramid_from and pyramid_from // 4,
                                           largest=pyramid_from),
        lambda levels: tiled_inference(model, image, levels, cfg, device=device, out_channels=1),
        inputs=inputs, overwrite=overwrite, info={"method": "combalia2019-despeckle", "value_range": list(rng)}))
