"""Parts every adversarial method shares, registered by name for checkpoints.

The base of every registered net (its constructor arguments are its checkpoint ``arch``
entry), He initialisation, logits to soft masks, and the conditional mask discriminator
of Chen et al. (2019): a CNN classifier of residual blocks with max-pooling that sees the
image concatenated with a mask and gives one real/fake logit per image (global, as in the
paper, not a patch map). It is also the discriminator of the optional adversarial term of
the tissue and glomeruli trainers (:mod:`.mode`).

Each paper's own networks are in its package: ``methods.adversarial_segmentation.networks``
(Chen 2019), ``methods.modality_transfer.networks`` (Giacomello 2020) and
``methods.site_normalization.networks`` (Delisle 2019).
"""


from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ResidualUnit
from monai.networks.layers import Pool
from torch import nn

from .. import nets
from ..errors import InputError

_ACT = ("relu", {"inplace": True})
_LEAKY = ("leakyrelu", {"negative_slope": 0.2, "inplace": True})


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


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
