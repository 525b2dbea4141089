"""Chen et al. (2019): a small dilated residual U-shaped segmentor (the paper's has 0.16 M
parameters). Its conditional mask discriminator is shared (:mod:`napari_medseg.core.adversarial.networks`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from ...core import nets
from ...core.adversarial.networks import _ACT, _Registered, _check_dims
from ...core.errors import InputError


@nets.register("chen2019.DilatedResUNet")
class DilatedResUNet(_Registered):
    """Dilated residual U-shaped segmentor: (B, in, *S) -> (B, out, *S) logits.

    A downsampling tower of residual units (stride 2 between levels), a bottleneck of
    residual units with growing dilation (a wide receptive field without further
    downsampling), and an upsampling tower whose residual units read the transposed-conv
    output concatenated with the skip connection. Spatial sizes must be multiples of
    ``2 ** (len(features) - 1)``.
    """

    ARCH_NAME = "chen2019.DilatedResUNet"

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 4,
                 features: Sequence[int] = (16, 32, 48), dilations: Sequence[int] = (2, 4), norm: str = "batch"):
        super().__init__()
        self._keep(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                   features=tuple(features), dilations=tuple(dilations), norm=norm)
        sd = _check_dims(spatial_dims)
        f = [int(c) for c in features]
        if len(f) < 2:
            raise InputError("DilatedResUNet needs at least two levels of features.")
        self.total_stride = 2 ** (len(f) - 1)
        self.down = nn.ModuleList()
        c_in = in_channels
        for i, c in enumerate(f):
            self.down.append(ResidualUnit(sd, c_in, c, strides=1 if i == 0 else 2, act=_ACT, norm=norm))
            c_in = c
        self.bottleneck = nn.Sequential(*[ResidualUnit(sd, f[-1], f[-1], subunits=1, dilation=d, act=_ACT, norm=norm)
                                          for d in dilations])
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in range(len(f) - 1, 0, -1):
            self.upsample.append(Convolution(sd, f[i], f[i - 1], strides=2, kernel_size=3, is_transposed=True,
                                             act=_ACT, norm=norm))
            self.up.append(ResidualUnit(sd, 2 * f[i - 1], f[i - 1], act=_ACT, norm=norm))
        self.head = Convolution(sd, f[0], out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(skips.pop())
        for upsample, block in zip(self.upsample, self.up):
            x = block(torch.cat([upsample(x), skips.pop()], dim=1))
        return self.head(x)
