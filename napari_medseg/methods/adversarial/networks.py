"""The networks of the three adversarial methods, registered by name for checkpoints.

* Chen et al. (2019): a small dilated residual U-shaped segmentor (the paper's has
  0.16 M parameters) and a conditional mask discriminator, a CNN classifier of residual
  blocks with max-pooling that sees the image concatenated with a mask and gives one
  real/fake logit per image (global, as in the paper, not a patch map).
* Giacomello et al. (2020), after SegAN (Xue et al. 2017): an encoder-decoder segmentor
  and a critic that returns its multi-scale features (the input included, as in SegAN)
  for the multi-scale L1 loss. The critic reads either the original SegAN input, the
  image multiplied by each mask channel, or the paper's concatenation of image and mask.
* Delisle et al. (2019): a U-Net normalisation generator (patch in, normalised patch of
  the same channels out), a segmenter (MONAI's U-Net, see :func:`segmenter_arch`) and a
  K+1-class domain discriminator (K input domains plus "generated").

All nets take ``spatial_dims`` (2 or 3) and return logits; every class is registered
with :func:`napari_medseg.core.nets.register` and has ``arch()`` for checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.layers import Pool
from torch import nn

from ...core import nets
from ...core.errors import InputError

_ACT = ("relu", {"inplace": True})
_LEAKY = ("leakyrelu", {"negative_slope": 0.2, "inplace": True})
CRITIC_MODES = ("multiply", "concat")


class _Registered(nn.Module):
    """A net whose constructor arguments are its checkpoint ``arch`` entry."""

    ARCH_NAME = ""

    def _keep(self, **kwargs) -> None:
        self._kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}

    def arch(self) -> dict:
        """The checkpoint's ``arch`` entry: rebuild with :func:`napari_medseg.core.nets.build`."""
        return {"name": self.ARCH_NAME, "kwargs": dict(self._kwargs)}


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    return int(spatial_dims)


def kaiming_init(module: nn.Module) -> nn.Module:
    """He initialisation of every convolution and linear layer (Delisle et al., 3.3)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Soft masks from logits: sigmoid for one channel, softmax over channels otherwise."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


# -- Chen et al. 2019 ---------------------------------------------------------------------


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


@nets.register("chen2019.ConditionalMaskDiscriminator")
class ConditionalMaskDiscriminator(_Registered):
    """D(y | x): image (B, image_channels, *S) and mask (B, mask_channels, *S), softmax
    probabilities or one-hot ground truth, concatenated; residual blocks with max-pooling,
    global average pooling and one real/fake logit per image, shape (B, 1)."""

    ARCH_NAME = "chen2019.ConditionalMaskDiscriminator"

    def __init__(self, spatial_dims: int = 2, image_channels: int = 1, mask_channels: int = 4,
                 features: Sequence[int] = (16, 32, 64, 64), norm: str = "batch"):
        super().__init__()
        self._keep(spatial_dims=spatial_dims, image_channels=image_channels, mask_channels=mask_channels,
                   features=tuple(features), norm=norm)
        sd = _check_dims(spatial_dims)
        self.image_channels, self.mask_channels = int(image_channels), int(mask_channels)
        layers, c_in = [], self.image_channels + self.mask_channels
        for c in features:
            layers += [ResidualUnit(sd, c_in, int(c), act=_LEAKY, norm=norm), Pool["max", sd](2)]
            c_in = int(c)
        self.body = nn.Sequential(*layers, Pool["adaptiveavg", sd](1), nn.Flatten())
        self.classifier = nn.Linear(c_in, 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if image.shape[1] != self.image_channels or mask.shape[1] != self.mask_channels:
            raise InputError(f"The discriminator expects {self.image_channels} image and {self.mask_channels} mask "
                             f"channels; got {image.shape[1]} and {mask.shape[1]}.")
        return self.classifier(self.body(torch.cat([image, mask.to(image.dtype)], dim=1)))


# -- Giacomello et al. 2020 (SegAN) -------------------------------------------------------


def _segan_down(sd: int, c_in: int, c_out: int, norm: str | None) -> Convolution:
    """SegAN's encoder layer: 4x4 convolution, stride 2, (norm), leaky ReLU."""
    return Convolution(sd, c_in, c_out, strides=2, kernel_size=4, padding=1, act=_LEAKY, norm=norm,
                       adn_ordering="NA")


@nets.register("giacomello2020.SegANSegmentor")
class SegANSegmentor(_Registered):
    """SegAN's segmentor: 4x4 stride-2 conv encoder, decoder of resize-convolutions
    (x2 interpolation + 3x3 conv) fed the skip connections by concatenation.
    (B, in, *S) -> (B, out, *S) logits; one output channel means a binary mask (sigmoid).
    Spatial sizes must be multiples of ``2 ** len(features)``."""

    ARCH_NAME = "giacomello2020.SegANSegmentor"

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 features: Sequence[int] = (16, 32, 64, 128), norm: str = "batch"):
        super().__init__()
        self._keep(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                   features=tuple(features), norm=norm)
        sd = _check_dims(spatial_dims)
        f = [int(c) for c in features]
        self.total_stride = 2 ** len(f)
        self.encoder = nn.ModuleList(_segan_down(sd, c_in, c, None if i == 0 else norm)
                                     for i, (c_in, c) in enumerate(zip([in_channels] + f[:-1], f)))
        mode = "bilinear" if sd == 2 else "trilinear"
        self.decoder = nn.ModuleList()
        for i in range(len(f) - 1, -1, -1):
            c_in = f[i] if i == len(f) - 1 else 2 * f[i]  # deeper decoder output + skip
            c_out = f[i - 1] if i > 0 else f[0]
            self.decoder.append(nn.Sequential(nn.Upsample(scale_factor=2, mode=mode, align_corners=False),
                                              Convolution(sd, c_in, c_out, kernel_size=3, act=_ACT, norm=norm)))
        self.head = Convolution(sd, f[0], out_channels, kernel_size=3, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        x = skips.pop()
        for i, layer in enumerate(self.decoder):
            x = layer(x if i == 0 else torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def critic_input(image: torch.Tensor, mask: torch.Tensor, mode: str = "concat") -> torch.Tensor:
    """What the critic sees of (image, mask), both (B, C, *S).

    ``"multiply"`` (original SegAN): every image channel times every mask channel,
    (B, C_img * C_mask, *S), ordered image channel-major. ``"concat"`` (Giacomello et
    al.): (B, C_img + C_mask, *S), which also shows the critic the background, where
    false positives are.
    """
    if mode not in CRITIC_MODES:
        raise InputError(f"Unknown critic input {mode!r}; choose one of {list(CRITIC_MODES)}.")
    if image.shape[0] != mask.shape[0] or image.shape[2:] != mask.shape[2:]:
        raise InputError(f"Image {tuple(image.shape)} and mask {tuple(mask.shape)} must share batch and grid.")
    mask = mask.to(image.dtype)
    if mode == "concat":
        return torch.cat([image, mask], dim=1)
    return (image.unsqueeze(2) * mask.unsqueeze(1)).flatten(1, 2)


@nets.register("giacomello2020.SegANCritic")
class SegANCritic(_Registered):
    """SegAN's critic: ``forward(image, mask)`` -> list of feature maps, the critic input
    first, then the output of every 4x4 stride-2 layer (``len(features) + 1`` scales)."""

    ARCH_NAME = "giacomello2020.SegANCritic"

    def __init__(self, spatial_dims: int = 2, image_channels: int = 1, mask_channels: int = 1,
                 mode: str = "concat", features: Sequence[int] = (16, 32, 64), norm: str = "batch"):
        super().__init__()
        self._keep(spatial_dims=spatial_dims, image_channels=image_channels, mask_channels=mask_channels,
                   mode=mode, features=tuple(features), norm=norm)
        sd = _check_dims(spatial_dims)
        if mode not in CRITIC_MODES:
            raise InputError(f"Unknown critic input {mode!r}; choose one of {list(CRITIC_MODES)}.")
        self.mode = mode
        c_in = image_channels * mask_channels if mode == "multiply" else image_channels + mask_channels
        f = [int(c) for c in features]
        self.layers = nn.ModuleList(_segan_down(sd, a, b, None if i == 0 else norm)
                                    for i, (a, b) in enumerate(zip([c_in] + f[:-1], f)))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        x = critic_input(image, mask, self.mode)
        feats = [x]
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


# -- Delisle et al. 2019 ------------------------------------------------------------------


def _unet(sd: int, c_in: int, c_out: int, channels: Sequence[int], norm: str, num_res_units: int) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(sd, c_in, c_out, channels=tuple(channels), strides=(2,) * (len(channels) - 1),
                num_res_units=num_res_units, norm=norm)


@nets.register("delisle2019.NormalizationGenerator")
class NormalizationGenerator(_Registered):
    """G: a U-Net from an input patch to a normalised patch with the same channels,
    (B, C, *S) -> (B, C, *S), unbounded so that the identity warm-up can be learnt."""

    ARCH_NAME = "delisle2019.NormalizationGenerator"

    def __init__(self, spatial_dims: int = 3, channels: int = 1, features: Sequence[int] = (16, 32, 64),
                 norm: str = "batch", num_res_units: int = 1):
        super().__init__()
        self._keep(spatial_dims=spatial_dims, channels=channels, features=tuple(features), norm=norm,
                   num_res_units=num_res_units)
        self.total_stride = 2 ** (len(features) - 1)
        self.unet = kaiming_init(_unet(_check_dims(spatial_dims), channels, channels, features, norm, num_res_units))

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


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
