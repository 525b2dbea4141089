"""The despeckling network (Combalia et al. 2019, section 2.1), written by hand: MONAI has no
multiplicative-residual denoiser.

Seven 3x3 convolutions of 64 filters with PReLU (batch norm on the intermediate ones), a
last convolution with one filter and tanh, and a multiplicative residual: the network
estimates the inverse speckle ``1/F`` and multiplies the input by it. ``tanh`` alone
cannot reach values above 1, which ``1/F`` needs where the speckle darkened a pixel, so
the estimate is ``1 + tanh(.)`` in (0, 2). A 3x3 median filter follows, as in the paper
(it removes the isolated pixels the network leaves).

Deviations for real images (issue 22, see docs/methods/staining.md): ``median="gated"``
blends the median with the unfiltered estimate per pixel, ``m * median(x) + (1 - m) * x``,
with ``m`` a sigmoid of one more output convolution (initialised to ``m`` ≈ 0.98, the
paper's network). The fixed median erases thin bright structures at low speckle, but at
high speckle it is what repairs pixels the multiplicative head cannot reach (a draw of
0.3 needs a factor 3.3, the head gives at most 2); the gate lets the network choose.
``dilations`` gives each body convolution a dilation (a wider receptive field at no
extra cost). The default arguments are the paper's network (v1).
"""

from __future__ import annotations

import torch
from torch import nn

from ...core import nets

ARCH_NAME = "combalia2019.DespeckleNet"
LAYERS, FILTERS = 7, 64
#: the distilled despeckler's width (``train despeckle --distill``, despeckle v3): a quarter of the
#: paper network's convolution work per pixel
DISTILL_FILTERS = 32
GATE_INIT = 4.0  # sigmoid(4) = 0.982: a new gate starts as the paper's median


# a median-of-9 selection network (19 compare-exchanges; Paeth 1990, as in Devillard's
# "fast median search"): after these, element 4 is the median of the nine
_MEDIAN9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
            (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


class Median3x3(nn.Module):
    """3x3 median filter (replicate padding), per channel. Computed with element-wise
    min/max over the nine shifted views (exactly the median; on a 2-core CPU about 9x
    faster than sorting unfolded patches, and without their 9x memory)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        v = [padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3)]
        for a, b in _MEDIAN9:
            v[a], v[b] = torch.minimum(v[a], v[b]), torch.maximum(v[a], v[b])
        return v[4]


class SpeckleHead(nn.Module):
    """The paper's head on any body's features: one output convolution read as 1 + tanh =
    1/F, the multiplicative residual connection, and the 3x3 median (fixed, none, or gated).
    A subclass defines ``body(y)`` (features with ``filters`` channels) and calls
    :meth:`_init_head`."""

    def _init_head(self, filters: int, median: bool | str) -> None:
        self.last = nn.Conv2d(filters, 1, 3, padding=1)
        nn.init.zeros_(self.last.weight)  # 1 + tanh(0) = 1: training starts from the identity
        nn.init.zeros_(self.last.bias)
        if median not in (True, False, "gated"):
            raise ValueError(f"median is True, False or 'gated', not {median!r}.")
        self.median = Median3x3() if median else None
        self.gate = None
        if median == "gated":
            self.gate = nn.Conv2d(filters, 1, 3, padding=1)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, GATE_INIT)

    def inverse_speckle(self, y: torch.Tensor) -> torch.Tensor:
        """The estimate of 1/F, in (0, 2)."""
        return 1.0 + torch.tanh(self.last(self.body(y)))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            features = self.body(y)
            x = y * (1.0 + torch.tanh(self.last(features)))  # the multiplicative residual connection
            m = torch.sigmoid(self.gate(features))
            return m * self.median(x) + (1.0 - m) * x
        x = y * self.inverse_speckle(y)  # the multiplicative residual connection
        return self.median(x) if self.median is not None else x


class DespeckleNet(SpeckleHead):
    def __init__(self, layers: int = LAYERS, filters: int = FILTERS, median: bool | str = True, dilations=None):
        super().__init__()
        dil = [1] * layers if dilations is None else [int(d) for d in dilations]
        if len(dil) != layers or min(dil) < 1:
            raise ValueError(f"dilations needs {layers} values of 1 or more; got {dilations}.")
        body = [nn.Conv2d(1, filters, 3, padding=dil[0], dilation=dil[0]), nn.PReLU(filters)]
        for d in dil[1:]:
            body += [nn.Conv2d(filters, filters, 3, padding=d, dilation=d), nn.BatchNorm2d(filters),
                     nn.PReLU(filters)]
        self.body = nn.Sequential(*body)
        self._init_head(filters, median)
        self.layers, self.dilations = layers, tuple(dil)

    @property
    def receptive_radius(self) -> int:
        """Each body convolution reaches its dilation, the last one 1 px, the median 1 px."""
        return sum(self.dilations) + 1 + (1 if self.median is not None else 0)


def narrowed_from(net: DespeckleNet, filters: int) -> DespeckleNet:
    """A copy of ``net`` with ``filters`` channels per layer, to distil into (a cheaper
    despeckler that starts near the wide one rather than from noise).

    Each layer keeps the channels the next layer leans on most: the norm of the next
    convolution's weights that read the channel (for the last body layer, the output and
    gate convolutions'), times the channel's batch-norm scale where it has one. Every
    weight, bias, batch-norm statistic and PReLU slope of a kept channel is copied.
    """
    filters = int(filters)
    width = net.last.in_channels
    if not 1 <= filters <= width:
        raise ValueError(f"filters must be between 1 and {width}; got {filters}.")
    new = DespeckleNet(layers=net.layers, filters=filters,
                       median="gated" if net.gate is not None else net.median is not None, dilations=net.dilations)
    old_convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    old_bns = [None] + [m for m in net.body if isinstance(m, nn.BatchNorm2d)]
    old_prelus = [m for m in net.body if isinstance(m, nn.PReLU)]
    readers = old_convs[1:] + [None]
    keep = []
    with torch.no_grad():
        for reader, bn in zip(readers, old_bns):
            if reader is None:
                fan_out = net.last.weight[0].flatten(1).norm(dim=1)
                if net.gate is not None:
                    fan_out = fan_out + net.gate.weight[0].flatten(1).norm(dim=1)
            else:
                fan_out = reader.weight.transpose(0, 1).flatten(1).norm(dim=1)
            score = fan_out * (bn.weight.abs() if bn is not None else 1.0)
            keep.append(torch.sort(torch.topk(score, filters).indices).values)
        new_convs = [m for m in new.body if isinstance(m, nn.Conv2d)]
        new_bns = [None] + [m for m in new.body if isinstance(m, nn.BatchNorm2d)]
        new_prelus = [m for m in new.body if isinstance(m, nn.PReLU)]
        previous = torch.arange(1)
        for i, idx in enumerate(keep):
            new_convs[i].weight.copy_(old_convs[i].weight[idx][:, previous])
            new_convs[i].bias.copy_(old_convs[i].bias[idx])
            new_prelus[i].weight.copy_(old_prelus[i].weight[idx])
            if old_bns[i] is not None:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(new_bns[i], name).copy_(getattr(old_bns[i], name)[idx])
            previous = idx
        for old, fresh in ((net.last, new.last), (net.gate, new.gate)):
            if old is not None:
                fresh.weight.copy_(old.weight[:, previous])
                fresh.bias.copy_(old.bias)
    return new


#: receptive-field radius in pixels of the paper's network: 8 convolutions of 3x3 and the 3x3 median
RECEPTIVE_RADIUS = LAYERS + 1 + 1


@nets.register(ARCH_NAME)
def _build(**kwargs) -> nn.Module:
    return DespeckleNet(**kwargs)
