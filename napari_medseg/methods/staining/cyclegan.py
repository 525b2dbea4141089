"""The staining CycleGAN's parts (Combalia et al. 2019, section 2.2; Zhu et al. 2017).

Domain A is Gareau-stained confocal (the paper's easier starting point), domain B real
H&E. Each direction has a ResNet generator and a 70x70 PatchGAN discriminator, trained
with the least-squares GAN loss and a pool of past generated images, as in CycleGAN.

Documented deviation from the paper: the generators use **batch norm**, not CycleGAN's
instance norm. The whole-slide pipeline stains a slide tile by tile; instance norm
takes its statistics over each tile, so neighbouring tiles would be normalised
differently and the stained slide would show seams. Batch norm in eval mode is a fixed
per-channel affine map, so tiles with :func:`receptive_radius` of margin reproduce the
whole-image output exactly. (The discriminators are never tiled; MONAI's PatchGAN uses
batch norm too, which with one image per batch behaves like instance norm.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...core import nets

ARCH_NAME = "combalia2019.ResnetGenerator"
#: the generator's total down-sampling: inputs whose sides are multiples of 4 keep their size
STRIDE = 4


#: "resize": nearest x2 then a 3x3 convolution (Odena et al. 2016); "bilinear": the same with
#: bilinear x2, whose smooth interpolation leaves no 2-px texture for the convolution to keep
UPSAMPLING = ("transposed", "resize", "bilinear")


def receptive_radius(n_blocks: int, upsample: str = "transposed") -> int:
    """Radius, in input pixels, beyond which a pixel cannot change a generator output.

    Summed layer by layer, each layer's radius times the pixel spacing it works at:
    7x7 conv (3), down convs at spacing 1 and 2 (1 + 2), two 3x3 convs per residual
    block at spacing 4 (8 each), transposed convs back to spacing 2 and 1 (2 + 1), 7x7
    conv (3). Reflection padding mirrors inside this radius and so never widens it.
    Resize-convolution (nearest or bilinear x2, then a 3x3 conv) reaches as far as the
    transposed convolution, plus the resizing's reach at each of the two stages: half a
    coarse pixel for nearest (2 + 1), three quarters for bilinear (3 + 1.5, rounded up to
    5). Measured in the tests.
    """
    base = 3 + 1 + 2 + 8 * int(n_blocks) + 2 + 1 + 3
    return base + {"transposed": 0, "resize": 3, "bilinear": 5}[upsample]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: (B, in, H, W) in [-1, 1] -> (B, out, H, W) in [-1, 1].

    H and W must be multiples of :data:`STRIDE` for the output to have the input's size.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 16, n_blocks: int = 6,
                 upsample: str = "transposed"):
        super().__init__()
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample is one of {UPSAMPLING}, not {upsample!r}.")
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "ngf": ngf, "n_blocks": n_blocks}
        if upsample != "transposed":  # older checkpoints have no key: they rebuild as before
            self.config["upsample"] = upsample

        def norm_relu(c):
            return [nn.BatchNorm2d(c), nn.ReLU(True)]

        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=False), *norm_relu(ngf)]
        for mult in (1, 2):  # down: ngf -> 2 ngf -> 4 ngf
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=False),
                       *norm_relu(ngf * mult * 2)]
        layers += [ResidualBlock(4 * ngf) for _ in range(n_blocks)]
        for mult in (4, 2):  # up: 4 ngf -> 2 ngf -> ngf
            if upsample != "transposed":  # Odena et al. 2016: no uneven overlap, so no checkerboard
                resize = nn.Upsample(scale_factor=2, mode="nearest") if upsample == "resize" else nn.Upsample(
                    scale_factor=2, mode="bilinear", align_corners=False)
                layers += [resize, nn.ReflectionPad2d(1),
                           nn.Conv2d(ngf * mult, ngf * mult // 2, 3, bias=False), *norm_relu(ngf * mult // 2)]
            else:
                layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                              bias=False), *norm_relu(ngf * mult // 2)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        from monai.networks.utils import normal_init

        self.apply(normal_init)  # CycleGAN's N(0, 0.02) initialisation

    @property
    def arch(self) -> dict:
        """How :func:`napari_medseg.core.nets.build` rebuilds this network."""
        return {"name": ARCH_NAME, "kwargs": dict(self.config)}

    @property
    def receptive_radius(self) -> int:
        return receptive_radius(self.config["n_blocks"], self.config.get("upsample", "transposed"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def resize_from(generator: ResnetGenerator, upsample: str = "resize") -> ResnetGenerator:
    """A resize-convolution copy of ``generator`` to fine-tune from (no checkerboard).

    Every convolution and batch norm is copied in order; each transposed convolution
    becomes nearest (``upsample="resize"``) or bilinear (``"bilinear"``) up-sampling and a
    convolution whose kernel is the transposed one's, flipped and with its channel axes
    swapped (what a stride-2 transposed convolution applies to its zero-interleaved input).
    The batch norm that follows absorbs the change of gain, so the copy starts near the
    original rather than from noise. A resize-convolution generator is copied as it is,
    with the new up-sampling (the two modes have the same weights).
    """
    if upsample == "transposed":
        raise ValueError("resize_from makes a resize-convolution copy: upsample is 'resize' or 'bilinear'.")
    cfg = dict(generator.config)
    cfg["upsample"] = upsample
    new = ResnetGenerator(**cfg)
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)
    old_layers = [m for m in generator.modules() if isinstance(m, kinds)]
    new_layers = [m for m in new.modules() if isinstance(m, kinds)]
    if len(old_layers) != len(new_layers):  # pragma: no cover - same config, same layer count
        raise ValueError("The generators do not have the same layers.")
    with torch.no_grad():
        for old, fresh in zip(old_layers, new_layers):
            if isinstance(old, nn.ConvTranspose2d):
                fresh.weight.copy_(old.weight.transpose(0, 1).flip(2, 3))
                continue
            fresh.load_state_dict(old.state_dict())
    return new


@nets.register(ARCH_NAME)
def _build(**kwargs) -> nn.Module:
    return ResnetGenerator(**kwargs)


class PatchDiscriminator(nn.Module):
    """MONAI's PatchGAN, returning only its last output: the map of real/fake scores."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]


#: receptive field of one patch score, measured in the tests (the 70x70 PatchGAN)
PATCH_SIZE = 70


def patch_discriminator(in_channels: int = 3, ndf: int = 64) -> PatchDiscriminator:
    """The 70x70 PatchGAN of pix2pix/CycleGAN, built from MONAI's PatchDiscriminator.

    MONAI's ``num_layers_d=3`` gives C64 (stride 2, no norm) - C128 (2) - C256 (2) -
    C512 (1) - 1-channel conv (1), all 4x4 with padding 1 and LeakyReLU 0.2: exactly
    pix2pix's ``n_layers=3`` discriminator, whose scores each see 70x70 input pixels.
    """
    from monai.networks.nets import PatchDiscriminator as MonaiPatchDiscriminator

    net = MonaiPatchDiscriminator(spatial_dims=2, channels=ndf, in_channels=in_channels, out_channels=1,
                                  num_layers_d=3, kernel_size=4, activation=("LEAKYRELU", {"negative_slope": 0.2}),
                                  norm="BATCH", bias=False, padding=1)
    return PatchDiscriminator(net)


class ImagePool:
    """CycleGAN's history of generated images (Shrivastava et al. 2017).

    Discriminators are updated with a mix of the newest fakes and older ones, which
    damps oscillation. Until ``size`` images are stored, each new image is stored and
    returned; then, with probability 1/2, a random stored image is returned and the new
    one takes its place, else the new image is returned. ``size`` 0 disables the pool.
    """

    def __init__(self, size: int = 50, rng: np.random.Generator | None = None):
        if size < 0:
            raise ValueError(f"The pool size must be zero or positive, not {size}.")
        self.size = int(size)
        self.rng = np.random.default_rng(rng)
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def clear(self) -> None:
        self.images = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, C, H, W), detached: the batch to show the discriminator."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0).clone()
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.random() < 0.5:
                k = int(self.rng.integers(self.size))
                out.append(self.images[k])
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def lsgan_loss(prediction: torch.Tensor, is_real: bool) -> torch.Tensor:
    """The least-squares GAN loss: mean squared distance of the scores to 1 (real) or 0 (fake)."""
    target = torch.ones_like(prediction) if is_real else torch.zeros_like(prediction)
    return nn.functional.mse_loss(prediction.float(), target.float())
