"""Delisle et al. (2019): a U-Net normalisation generator (patch in, normalised patch of the
same channels out), a segmenter (MONAI's U-Net, see :func:`segmenter_arch`) and a K+1-class
domain discriminator (K input domains plus "generated")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.layers import Conv, Pool
from monai.networks.nets import UNet
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from ...core import nets
from ...core.adversarial.networks import _LEAKY, _Registered, _check_dims, kaiming_init
from ...core.errors import InputError


#: the generator's up-sampling: MONAI's transposed convolutions (the models shipped before
#: issue 20), or nearest-neighbour resizing followed by a convolution (Odena et al. 2016): a
#: stride-2 transposed 3x3 convolution overlaps unevenly and prints a 2-px checkerboard.
#: Both build MONAI's ``UNet``, whose first layer already down-samples, so every output voxel
#: is computed from half-resolution features. "linear" builds :class:`FullResolutionUNet`
#: instead, the 3-D U-Net of Cicek et al. that the paper names.
UPSAMPLING = ("transposed", "resize", "linear")


class ResizeUNet(UNet):
    """MONAI's U-Net with each up layer's transposed convolution replaced by a nearest resize
    and a stride-1 convolution of the same kernel, norm and activation."""

    def _get_up_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        conv = Convolution(self.dimensions, in_channels, out_channels, strides=1, kernel_size=self.up_kernel_size,
                           act=self.act, norm=self.norm, dropout=self.dropout, bias=self.bias,
                           conv_only=is_top and self.num_res_units == 0, adn_ordering=self.adn_ordering)
        up = nn.Sequential(nn.Upsample(scale_factor=strides, mode="nearest"), conv)
        if self.num_res_units > 0:
            return nn.Sequential(up, ResidualUnit(self.dimensions, out_channels, out_channels, strides=1,
                                                  kernel_size=self.kernel_size, subunits=1, act=self.act,
                                                  norm=self.norm, dropout=self.dropout, bias=self.bias,
                                                  last_conv_only=is_top, adn_ordering=self.adn_ordering))
        return up


class FullResolutionUNet(nn.Module):
    """Cicek et al.'s U-Net with one level per width in ``features``, from MONAI's BasicUNet
    blocks: two convolutions at every level, the input's resolution included, max-pooling
    down, linear interpolation and a convolution up, each level's features concatenated
    back, and a 1x1 convolution out; no residual units (the generator's ``num_res_units``
    applies to the MONAI ``UNet`` variants only). BasicUNet itself always has five levels:
    its receptive field outgrew 32-px training patches, and on whole slices it painted the
    borders."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, features: Sequence[int],
                 norm: str = "batch"):
        super().__init__()
        f, sd, act = [int(c) for c in features], spatial_dims, ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
        self.first = TwoConv(sd, in_channels, f[0], act, norm, True, 0.0)
        self.down = nn.ModuleList(Down(sd, a, b, act, norm, True, 0.0) for a, b in zip(f[:-1], f[1:]))
        self.up = nn.ModuleList(UpCat(sd, b, a, a, act, norm, True, 0.0, upsample="nontrainable")
                                for a, b in reversed(list(zip(f[:-1], f[1:]))))
        self.out = Conv["conv", sd](f[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.first(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.out(x)


def _unet(sd: int, c_in: int, c_out: int, channels: Sequence[int], norm: str, num_res_units: int,
          upsample: str = "transposed") -> nn.Module:
    if upsample not in UPSAMPLING:
        raise InputError(f"upsample is one of {UPSAMPLING}, not {upsample!r}.")
    if upsample == "linear":
        return FullResolutionUNet(sd, c_in, c_out, channels, norm)
    cls = UNet if upsample == "transposed" else ResizeUNet
    return cls(sd, c_in, c_out, channels=tuple(channels), strides=(2,) * (len(channels) - 1),
               num_res_units=num_res_units, norm=norm)


@nets.register("delisle2019.NormalizationGenerator")
class NormalizationGenerator(_Registered):
    """G: a U-Net from an input patch to a normalised patch with the same channels,
    (B, C, *S) -> (B, C, *S), unbounded so that the identity warm-up can be learnt."""

    ARCH_NAME = "delisle2019.NormalizationGenerator"

    def __init__(self, spatial_dims: int = 3, channels: int = 1, features: Sequence[int] = (16, 32, 64),
                 norm: str = "batch", num_res_units: int = 1, upsample: str = "transposed"):
        super().__init__()
        kept = dict(spatial_dims=spatial_dims, channels=channels, features=tuple(features), norm=norm,
                    num_res_units=num_res_units)
        if upsample != "transposed":  # older checkpoints have no key: they rebuild as before
            kept["upsample"] = upsample
        self._keep(**kept)
        self.total_stride = 2 ** (len(features) - 1)
        self.unet = kaiming_init(_unet(_check_dims(spatial_dims), channels, channels, features, norm, num_res_units,
                                       upsample))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)


def segmenter_arch(spatial_dims: int = 3, in_channels: int = 1, n_classes: int = 4,
                   features: Sequence[int] = (16, 32, 64, 128), norm: str = "batch") -> dict:
    """S: the segmenter of the normalised patch, MONAI's U-Net (``"monai.UNet"``)."""
    return {"name": "monai.UNet",
            "kwargs": {"spatial_dims": spatial_dims, "in_channels": in_channels, "out_channels": n_classes,
                       "channels": list(features), "strides": [2] * (len(features) - 1), "num_res_units": 1,
                       "norm": norm}}


@nets.register("delisle2019.DomainDiscriminator")
class DomainDiscriminator(_Registered):
    """D: (B, C, *S) -> (B, n_domains + 1) logits; classes 0..K-1 are the input domains,
    class K (:attr:`generated_class`) is "generated". Strided residual units, global
    average pooling, a linear classifier."""

    ARCH_NAME = "delisle2019.DomainDiscriminator"

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, n_domains: int = 2,
                 features: Sequence[int] = (16, 32, 64, 64), norm: str = "batch"):
        super().__init__()
        self._keep(spatial_dims=spatial_dims, in_channels=in_channels, n_domains=n_domains,
                   features=tuple(features), norm=norm)
        sd = _check_dims(spatial_dims)
        if int(n_domains) < 1:
            raise InputError(f"The domain discriminator needs at least one input domain, got {n_domains}.")
        self.n_domains = int(n_domains)
        f = [int(c) for c in features]
        layers = [Convolution(sd, in_channels, f[0], kernel_size=3, act=_LEAKY, norm=norm)]
        layers += [ResidualUnit(sd, a, b, strides=2, act=_LEAKY, norm=norm) for a, b in zip(f[:-1], f[1:])]
        self.body = nn.Sequential(*layers, Pool["adaptiveavg", sd](1), nn.Flatten())
        self.classifier = nn.Linear(f[-1], self.n_domains + 1)
        kaiming_init(self)

    @property
    def generated_class(self) -> int:  # the label of "generated"
        return self.n_domains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


@nets.register("delisle2019.NormalizeAndSegment")
class NormalizeAndSegment(_Registered):
    """The trained pair for inference: ``forward(x)`` = S(G(x)) logits, ``normalize(x)`` = G(x).

    ``generator``: :class:`NormalizationGenerator` kwargs; ``segmenter``: an ``arch`` dict
    (default :func:`segmenter_arch`)."""

    ARCH_NAME = "delisle2019.NormalizeAndSegment"

    def __init__(self, generator: dict | None = None, segmenter: dict | None = None):
        super().__init__()
        generator = dict(generator or {})
        self.generator = NormalizationGenerator(**generator)
        sd, c = self.generator._kwargs["spatial_dims"], self.generator._kwargs["channels"]
        segmenter = dict(segmenter or segmenter_arch(sd, c))
        self.segmenter = nets.build(segmenter)
        self._keep(generator=self.generator.arch()["kwargs"], segmenter=segmenter)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmenter(self.generator(x))
