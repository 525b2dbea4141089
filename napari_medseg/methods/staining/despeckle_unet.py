"""A despeckler with a U-shaped body (issue 22; a deviation from Combalia et al. 2019).

The paper's despeckler (:class:`.despeckle.DespeckleNet`) sees 9 px around a pixel, and all
of its work happens at full resolution. Here the body is a small three-level U-net: two
convolutions at full resolution, two at half and two at a quarter (average pooling down,
bilinear up-sampling back, skip connections by concatenation), 16 / 32 / 64 filters by
default. It sees about 30 px around a pixel for half of the 32-filter network's
multiply-adds per pixel, since the wide layers run on a quarter or a sixteenth of the
pixels. The head is the paper's: one output convolution read as 1 + tanh = 1/F, the
multiplicative residual connection, and the gated 3x3 median of the real-image recipe.

Tiles are exact: the network's total stride is 4, and inputs whose sides are not
multiples of 4 are zero-padded at the far border and cropped back, as tiled inference
pads them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...core import nets
from .despeckle import SpeckleHead

ARCH_NAME = "combalia2019.UDespeckleNet"
FEATURES = (16, 32, 64)
STRIDE = 4


def _conv(cin: int, cout: int, norm: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), *([nn.BatchNorm2d(cout)] if norm else []), nn.PReLU(cout)]


class UDespeckleNet(SpeckleHead):
    def __init__(self, features=FEATURES, median: bool | str = "gated"):
        super().__init__()
        f0, f1, f2 = (int(f) for f in features)
        if min(f0, f1, f2) < 1:
            raise ValueError(f"features needs three positive widths; got {features}.")
        self.enc0 = nn.Sequential(*_conv(1, f0, norm=False), *_conv(f0, f0))
        self.enc1 = nn.Sequential(*_conv(f0, f1), *_conv(f1, f1))
        self.enc2 = nn.Sequential(*_conv(f1, f2), *_conv(f2, f2))
        self.dec1 = nn.Sequential(*_conv(f2 + f1, f1), *_conv(f1, f1))
        self.dec0 = nn.Sequential(*_conv(f1 + f0, f0), *_conv(f0, f0))
        self._init_head(f0, median)
        self.features = (f0, f1, f2)
        self.stride = STRIDE

    @property
    def receptive_radius(self) -> int:
        """In full-resolution pixels along the deepest path: 2 convolutions at scale 1, a
        pooling (1), 2 at scale 2, a pooling (2), 2 at scale 4, an up-sampling (4), 2 at
        scale 2, an up-sampling (2), 2 at scale 1, the output convolution and the median;
        rounded up to the stride."""
        r = 2 + 1 + 4 + 2 + 8 + 4 + 4 + 2 + 2 + 1 + (1 if self.median is not None else 0)
        return -(-r // STRIDE) * STRIDE

    def body(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2:]
        y = F.pad(y, (0, -w % STRIDE, 0, -h % STRIDE))
        e0 = self.enc0(y)
        e1 = self.enc1(F.avg_pool2d(e0, 2))
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        up2 = F.interpolate(e2, scale_factor=2, mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([up2, e1], 1))
        up1 = F.interpolate(d1, scale_factor=2, mode="bilinear", align_corners=False)
        return self.dec0(torch.cat([up1, e0], 1))[..., :h, :w]


@nets.register(ARCH_NAME)
def _build(**kwargs) -> nn.Module:
    return UDespeckleNet(**kwargs)
