"""Giacomello et al. (2020), after SegAN (Xue et al. 2017): an encoder-decoder segmentor and a
critic that returns its multi-scale features (the input included, as in SegAN) for the
multi-scale L1 loss. The critic reads either the original SegAN input, the image multiplied
by each mask channel, or the paper's concatenation of image and mask."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ...core import nets
from ...core.adversarial.networks import _ACT, _LEAKY, _Registered, _check_dims
from ...core.errors import InputError


CRITIC_MODES = ("multiply", "concat")




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
