"""The hetero-modal network of Dorent et al. (2019): HeMIS-style fusion + HighResNet.

Why this shape. The control scans have T1 only, the lesion scans T1 and FLAIR, and the
joint model must accept either. HeMIS (Havaei et al. 2016) gives each modality its own
small encoder and *averages* the feature maps of the modalities that are present, so
the backbone always sees the same number of channels whatever the input protocol.
An absent modality is never read: it is neither zero-filled nor counted in the mean
(zero-filling would shift the mean and make T1-only features differ from the features
the network learnt for T1-only controls).

After fusion a shared backbone maps the features to class logits at full resolution:
HighResNet's dilated residual blocks (Li et al. 2017; stride 1, as in the paper) or a
MONAI U-Net. MONAI's own ``HighResNet`` ends in norm + activation, so the blocks are
used directly and closed with a 1x1 convolution that yields proper logits.
Instance normalisation (affine, initialised to 1/0) follows the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ADN, Convolution
from monai.networks.nets.highresnet import HighResBlock

from ...core import nets
from ...core.errors import InputError

ARCH_NAME = "dorent2019.HeteroModalNet"
_NORM = ("instance", {"affine": True})
_ACT = ("relu", {"inplace": True})


class ModalityEncoder(torch.nn.Module):
    """One modality's feature extractor: conv + one residual block (own weights)."""

    def __init__(self, spatial_dims: int, features: int, norm=_NORM):
        super().__init__()
        self.conv = Convolution(spatial_dims, 1, features, kernel_size=3, norm=norm, act=_ACT, adn_ordering="NA")
        self.block = HighResBlock(spatial_dims, features, features, kernels=(3, 3), dilation=1,
                                  norm_type=norm, acti_type=_ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.conv(x))


class HeteroModalNet(torch.nn.Module):
    """``forward(x, present)``: x is (B, M, *spatial) in ``modalities`` order.

    ``present`` names the modalities available for the whole batch (names, or one
    bool per modality); ``None`` means all. Channels of absent modalities are ignored.
    Output: (B, n_classes, *spatial) logits, same spatial size as the input.
    """

    def __init__(
        self,
        modalities: Sequence[str] = ("T1", "FLAIR"),
        n_classes: int = 5,
        spatial_dims: int = 3,
        features: Sequence[int] = (16, 32, 64),
        backbone: str = "highresnet",
        norm: str = "instance",
        repeat: int = 3,
    ):
        super().__init__()
        if backbone not in ("highresnet", "unet"):
            raise InputError(f"Unknown backbone {backbone!r}; choose 'highresnet' or 'unet'.")
        if len(set(modalities)) != len(modalities) or not modalities:
            raise InputError(f"Modalities must be distinct and non-empty, got {list(modalities)}.")
        self.modalities = tuple(modalities)
        self.n_classes = int(n_classes)
        self.spatial_dims = int(spatial_dims)
        self.features = tuple(int(f) for f in features)
        self.backbone_name = backbone
        self.repeat = int(repeat)
        self._kwargs = {"modalities": list(self.modalities), "n_classes": self.n_classes,
                        "spatial_dims": self.spatial_dims, "features": list(self.features),
                        "backbone": backbone, "norm": norm, "repeat": self.repeat}
        norm_t = (norm, {"affine": True}) if norm in ("instance", "batch") else norm
        f0 = self.features[0]
        # separate weights per modality, same structure
        self.encoders = torch.nn.ModuleDict({m: ModalityEncoder(spatial_dims, f0, norm_t) for m in self.modalities})
        if backbone == "highresnet":
            self.backbone = self._highres(norm_t)
        else:
            from monai.networks.nets import UNet

            chans = tuple(self.features) if len(self.features) >= 2 else (f0, 2 * f0)
            self.backbone = UNet(spatial_dims, f0, self.n_classes, channels=chans,
                                 strides=(2,) * (len(chans) - 1), num_res_units=1, norm=norm_t)
        self._init_weights()

    def _highres(self, norm_t) -> torch.nn.Module:
        """Residual stages with dilation 1, 2, 4, ...: a wide receptive field at stride 1."""
        layers, c_in = [], self.features[0]
        for i, c_out in enumerate(self.features):
            for _ in range(self.repeat):
                layers.append(HighResBlock(self.spatial_dims, c_in, c_out, kernels=(3, 3), dilation=2**i,
                                           norm_type=norm_t, acti_type=_ACT,  # zero-pad widening skips
                                           channel_matching="pad" if c_out >= c_in else "project"))
                c_in = c_out
        # the blocks are pre-activation: close with norm + act, then a 1x1 logits head
        layers.append(ADN(ordering="NA", in_channels=c_in, act=_ACT, norm=norm_t, norm_dim=self.spatial_dims))
        layers.append(Convolution(self.spatial_dims, c_in, self.n_classes, kernel_size=1, conv_only=True, bias=True))
        return torch.nn.Sequential(*layers)

    def _init_weights(self) -> None:
        """He initialisation of the convolutions, as in the paper."""
        for m in self.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    # -- modality handling ----------------------------------------------------------

    def present_indices(self, present=None) -> list[int]:
        """Indices (in ``modalities`` order) of the present modalities."""
        if present is None:
            return list(range(len(self.modalities)))
        if isinstance(present, torch.Tensor):
            present = present.tolist()
        present = list(present)
        if present and all(isinstance(p, bool) for p in present):
            if len(present) != len(self.modalities):
                raise InputError(f"The presence mask has {len(present)} entries; the model has modalities "
                                 f"{list(self.modalities)}.")
            idx = [i for i, p in enumerate(present) if p]
        else:
            unknown = [p for p in present if p not in self.modalities]
            if unknown:
                raise InputError(f"Unknown modalities {unknown}; this model knows {list(self.modalities)}.")
            idx = sorted(self.modalities.index(p) for p in set(present))
        if not idx:
            raise InputError("At least one modality must be present.")
        return idx

    def arrange(self, x: torch.Tensor, have: Sequence[str]) -> torch.Tensor:
        """(B, len(have), ...) → (B, M, ...) in this model's channel order. Channels of
        modalities not in ``have`` are zeros; pass ``present=have`` so they are never read."""
        out = x.new_zeros((x.shape[0], len(self.modalities), *x.shape[2:]))
        for j, m in enumerate(have):
            out[:, self.modalities.index(m)] = x[:, j]
        return out

    def fuse(self, x: torch.Tensor, present=None) -> torch.Tensor:
        """Mean of the present modalities' encoder features (HeMIS first moment)."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != len(self.modalities):
            raise InputError(f"Expected input (B, {len(self.modalities)}, {'×'.join(['…'] * self.spatial_dims)}) "
                             f"with channels {list(self.modalities)}; got {tuple(x.shape)}.")
        idx = self.present_indices(present)
        feats = [self.encoders[self.modalities[i]](x[:, i : i + 1]) for i in idx]
        return torch.stack(feats, 0).mean(0)

    def forward(self, x: torch.Tensor, present=None) -> torch.Tensor:
        return self.backbone(self.fuse(x, present))

    # -- what tiled inference and checkpoints need -------------------------------------

    @property
    def total_stride(self) -> int:
        """Input sizes must be multiples of this (HighResNet: 1; U-Net: 2**levels)."""
        return 1 if self.backbone_name == "highresnet" else 2 ** (max(2, len(self.features)) - 1)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context each output uses on either side (a safe upper bound).

        Encoder: three 3x3 convs (radius 3). HighResNet stage i: ``repeat`` blocks of two
        3x3 convs with dilation 2**i. For the U-Net, every 3x3 conv at a level with
        cumulative stride s adds at most s; six per level bound down, residual and up paths.
        """
        r = 3
        if self.backbone_name == "highresnet":
            return r + sum(self.repeat * 2 * 2**i for i in range(len(self.features)))
        levels = max(2, len(self.features))
        return r + sum(6 * 2**i for i in range(levels))

    def arch(self) -> dict:
        """The checkpoint's ``arch`` entry: rebuild with :func:`napari_medseg.core.nets.build`."""
        return {"name": ARCH_NAME, "kwargs": dict(self._kwargs)}


@nets.register(ARCH_NAME)
def build_hetero_modal_net(**kwargs) -> HeteroModalNet:
    return HeteroModalNet(**kwargs)
