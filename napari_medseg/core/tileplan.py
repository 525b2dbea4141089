"""Where the tiles go: stride-aligned starts and partition-of-unity blend weights.

See :mod:`napari_medseg.core.tiling` for why these make tiled output equal whole-image
output.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class AxisPlan:
    length: int  # image length along the axis
    padded: int  # padded to a stride multiple
    tile: int
    starts: tuple[int, ...]
    weights: tuple[np.ndarray, ...]  # one 1-D weight vector per tile start


def _round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def plan_axis(length: int, tile: int, overlap: int, stride: int, margin: int, blend: int) -> AxisPlan:
    padded = _round_up(max(length, 1), stride)
    tile = min(_round_up(tile, stride), padded)
    overlap = min(_round_up(overlap, stride), tile - stride) if tile < padded else 0
    if tile < padded:
        # shrink the tile so that n tiles cover the axis evenly: no wasted last tile
        n = math.ceil((padded - overlap) / (tile - overlap))
        tile = min(tile, _round_up(math.ceil((padded - overlap) / n) + overlap, stride))
    step = tile - overlap
    starts = list(range(0, padded - tile, step)) + [padded - tile]
    starts = sorted(set(starts))
    n = len(starts)
    # one cut between each pair of neighbours, in the middle of their overlap
    cuts, widths = [], []
    for i in range(1, n):
        ov = starts[i - 1] + tile - starts[i]
        if ov < 2 * margin:
            raise InputError(
                f"Tile overlap {ov} px is smaller than twice the receptive-field margin ({margin} px); "
                "increase the overlap or the tile size."
            )
        cuts.append(starts[i] + ov // 2)
        widths.append(max(0, min(blend, ov - 2 * margin)))
    # ramps of neighbouring cuts must not overlap, or the weights would not sum to 1
    for k in range(len(cuts)):
        left = cuts[k] - cuts[k - 1] if k > 0 else widths[k]
        right = cuts[k + 1] - cuts[k] if k + 1 < len(cuts) else widths[k]
        widths[k] = min(widths[k], left, right)
    x = np.arange(tile, dtype=np.float64)
    weights = []
    for i, s in enumerate(starts):
        w = np.ones(tile, dtype=np.float64)
        g = x + s
        if i > 0:
            w *= _rise(g, cuts[i - 1], widths[i - 1])
        if i < n - 1:
            w *= 1.0 - _rise(g, cuts[i], widths[i])
        weights.append(w.astype(np.float32))
    return AxisPlan(length, padded, tile, tuple(starts), tuple(weights))


def _rise(g: np.ndarray, cut: int, width: int) -> np.ndarray:
    """0 before the ramp, 1 after; a linear ramp of ``width`` px centred on ``cut``."""
    if width <= 0:
        return (g >= cut).astype(np.float64)
    lo = cut - width / 2.0
    return np.clip((g - lo + 0.5) / width, 0.0, 1.0)


@dataclass(frozen=True)
class TilePlan:
    axes: tuple[AxisPlan, ...]

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return tuple(a.tile for a in self.axes)

    @property
    def n_tiles(self) -> int:
        return int(np.prod([len(a.starts) for a in self.axes]))

    def tiles(self):
        """(index tuple, start tuple) in raster order, first axis slowest."""
        idx = [range(len(a.starts)) for a in self.axes]
        for ii in itertools.product(*idx):
            yield ii, tuple(a.starts[i] for a, i in zip(self.axes, ii))

    def weight(self, ii) -> np.ndarray:
        w = self.axes[0].weights[ii[0]]
        for a, i in zip(self.axes[1:], ii[1:]):
            w = np.multiply.outer(w, a.weights[i])
        return w


def plan_tiles(shape, tile, overlap, stride: int, margin: int = 0, blend: int = 16) -> TilePlan:
    nd = len(shape)
    tile = (tile,) * nd if np.isscalar(tile) else tuple(tile)
    overlap = (overlap,) * nd if np.isscalar(overlap) else tuple(overlap)
    return TilePlan(tuple(plan_axis(int(L), int(t), int(o), stride, margin, blend) for L, t, o in zip(shape, tile, overlap)))


def default_overlap(margin: int, blend: int, stride: int) -> int:
    return _round_up(2 * margin + blend, stride)



@dataclass
class TileConfig:
    tile: int | tuple[int, ...] = 1024
    overlap: int | tuple[int, ...] | None = None  # default: 2*margin + blend
    stride: int = 8  # the network's total stride
    margin: int = 48  # receptive-field radius, rounded up to the stride
    blend: int = 16
    batch_size: int = 1
    output: str = "probabilities"  # or "labels" (argmax, uint8), or "rgb8" (values in [0, 1] as uint8)
    amp: bool = True
    cpu_bf16: bool = False  # with amp: bfloat16 autocast on CPUs that have it (a model's choice: check its quality)
    prefetch: int = 2
    keep: tuple[int, ...] | None = None  # probabilities: store only these channels (e.g. (1,): foreground)

    def plan(self, spatial_shape) -> TilePlan:
        overlap = self.overlap if self.overlap is not None else default_overlap(self.margin, self.blend, self.stride)
        return plan_tiles(spatial_shape, self.tile, overlap, self.stride, self.margin, self.blend)
