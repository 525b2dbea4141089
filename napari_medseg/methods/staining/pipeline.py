"""The whole-slide pipeline: FCM + RCM → despeckle RCM → Gareau → CycleGAN → RGB.

All of it is one torch module (:class:`StainingNet`), so the foundation's tiled
inference runs it over a slide of any size: tiles are read lazily from the two
channels, overlap by the module's receptive radius and are blended, and the RGB result
streams into a uint8 zarr pyramid. Per-slide normalisation (the default) takes each
channel's background and bright levels from a subsample of the whole slide, so every
tile is scaled alike and tiled output equals whole-image output; per-tile
normalisation is offered for slides whose illumination drifts, at the price of
visible tile borders where the drift is strong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...core.errors import InputError
from ...core.tileplan import TileConfig, _round_up
from .gareau import EOSIN, HEMATOXYLIN, check_pair, intensity_range

BLEND = 16
SUBSAMPLE_PIXELS = 4_000_000  # pixels read per channel to find the per-slide range


class StainingNet(nn.Module):
    """(B, 2, H, W) normalised FCM/RCM in [0, 1] → (B, 3, H, W) RGB in [0, 1]."""

    def __init__(self, despeckler: nn.Module | None = None, generator: nn.Module | None = None,
                 h=HEMATOXYLIN, e=EOSIN):
        super().__init__()
        self.despeckler, self.generator = despeckler, generator
        self.register_buffer("h", torch.tensor(h, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("e", torch.tensor(e, dtype=torch.float32).view(1, 3, 1, 1))

    def gareau(self, x: torch.Tensor) -> torch.Tensor:
        f, r = x[:, :1], x[:, 1:2]
        if self.despeckler is not None:
            r = torch.clamp(self.despeckler(r), 0.0, 1.0)
        return torch.clamp(1.0 - f * (1.0 - self.h) - r * (1.0 - self.e), 0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = self.gareau(x)
        if self.generator is not None:
            rgb = torch.clamp((self.generator(rgb * 2.0 - 1.0) + 1.0) * 0.5, 0.0, 1.0)
        return rgb


def geometry(net: StainingNet) -> tuple[int, int]:
    """(total stride, receptive radius in pixels) of the pipeline."""
    from .cyclegan import STRIDE

    radius = net.despeckler.receptive_radius if net.despeckler is not None else 0
    stride = despeckler_stride(net.despeckler)
    if net.generator is not None:
        radius += net.generator.receptive_radius
        stride = math.lcm(stride, STRIDE)
    return stride, radius


def despeckler_stride(despeckler: nn.Module | None) -> int:
    """The despeckler's total stride (1 for the paper's network, 4 for the U-shaped one):
    its tiles start on multiples of it."""
    return int(getattr(despeckler, "stride", 1)) if despeckler is not None else 1


def despeckle_tile_config(despeckler: nn.Module, tile: int = 1024, batch_size: int = 1, amp: bool = True,
                          cpu_bf16: bool = False) -> TileConfig:
    """Tiles for a despeckler alone (one channel in, one out): on its stride, its receptive
    radius as margin; a tile too small to hold that margin on both sides and still advance
    grows to four margins."""
    stride = despeckler_stride(despeckler)
    margin = _round_up(max(1, int(despeckler.receptive_radius)), stride)
    return TileConfig(tile=max(int(tile), 4 * margin), stride=stride, margin=margin, blend=BLEND,
                      batch_size=batch_size, output="probabilities", amp=amp, cpu_bf16=cpu_bf16)


def tile_config(net: StainingNet, tile: int = 1024, batch_size: int = 1, amp: bool = True,
                cpu_bf16: bool = False) -> TileConfig:
    stride, radius = geometry(net)
    margin = _round_up(max(radius, 1), stride)
    return TileConfig(tile=tile, stride=stride, margin=margin, blend=BLEND, batch_size=batch_size, output="rgb8",
                      amp=amp, cpu_bf16=cpu_bf16)


def check_channel_dtype(name: str, channel) -> None:
    kind = np.dtype(getattr(channel, "dtype", np.float32)).kind
    if kind not in "uif":
        raise InputError(f"The {name} image has dtype {channel.dtype}; give integer or floating-point intensities.")


def slide_range(channel, max_pixels: int = SUBSAMPLE_PIXELS) -> tuple[float, float]:
    """:func:`gareau.intensity_range` of a whole (lazy) channel, from an even subsample."""
    h, w = channel.shape
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    sub = channel[::step, ::step]
    sub = sub.compute() if hasattr(sub, "compute") else np.asarray(sub)
    return intensity_range(sub)


@dataclass
class Normaliser:
    """Maps a channels-first (FCM, RCM) tile of any dtype to [0, 1] network input."""

    fcm_range: tuple[float, float] | None = None  # None: per tile
    rcm_range: tuple[float, float] | None = None

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = np.empty(block.shape, np.float32)
        for c, rng in enumerate((self.fcm_range, self.rcm_range)):
            x = block[c].astype(np.float32)
            if rng is None:
                rng = _tile_range(x)
            lo, hi = rng
            out[c] = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        return out


def _tile_range(x: np.ndarray) -> tuple[float, float]:
    if np.ptp(x) == 0:  # an empty tile of glass: all background
        return float(x.min()), float(x.min()) + 1.0
    return intensity_range(x)


def as_pair_source(fcm, rcm):
    """One lazy (2, H, W) array from the two channels (numpy, dask or zarr)."""
    import dask.array as da

    def lazy(a):
        return a if isinstance(a, da.Array) else da.from_array(a, chunks=(2048, 2048))

    return da.stack([lazy(fcm), lazy(rcm)])


def prepare(fcm, rcm, normalisation: str = "slide") -> Normaliser:
    """Check a pair (shape, dtype, content) and return its normaliser; one clear error otherwise."""
    check_pair(fcm, rcm)
    for name, ch in (("FCM", fcm), ("RCM", rcm)):
        check_channel_dtype(name, ch)
    if normalisation not in ("slide", "tile"):
        raise InputError(f"Normalisation is 'slide' or 'tile', not {normalisation!r}.")
    ranges = {"FCM": None, "RCM": None}
    for name, ch in (("FCM", fcm), ("RCM", rcm)):
        try:
            rng = slide_range(ch)
        except InputError as exc:
            raise InputError(f"The {name} image: {exc}") from None
        ranges[name] = rng if normalisation == "slide" else None
    return Normaliser(ranges["FCM"], ranges["RCM"])


class _ScaledRCMDespeckler(nn.Module):
    """The pipeline's first half for the despeckling pass: (B, 1, H, W) RCM in [0, 1] →
    the despeckled RCM, clamped to [0, 1] as :meth:`StainingNet.gareau` does."""

    def __init__(self, despeckler: nn.Module):
        super().__init__()
        self.despeckler = despeckler
        self.receptive_radius = int(despeckler.receptive_radius)
        self.stride = despeckler_stride(despeckler)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.despeckler(x).float(), 0.0, 1.0)


def _progress_offset(gen, offset: int, total: int, what: str):
    """Re-number one pass's progress into the whole job's (``offset`` tiles done before)."""
    from ...core.jobs import Progress

    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as done:
                return done.value
            yield Progress(offset + p.step, total, f"{what}: {p.message}", p.metrics)
    finally:
        gen.close()  # stopped: the pass stops too


def _two_passes(net: StainingNet, fcm, rcm, levels, cfg: TileConfig, pre: "Normaliser", device, scratch):
    """Generator: the despeckler over the RCM with its own small margin into ``scratch``
    (float32, on disk), then Gareau + CycleGAN over FCM + the despeckled RCM with the
    CycleGAN's margin into ``levels``. The same result as one pass (the despeckled RCM
    is what the one pass computes inside every tile), but each RCM pixel is despeckled
    about once instead of once per overlapping tile: at 1024-px tiles the one pass
    spends ~40 % of its despeckling on the CycleGAN's 72-px margins."""
    import dask.array as da

    from ...core.tilestore import create_output
    from ...core.tiling import tiled_inference

    lo, hi = pre.rcm_range
    first = _ScaledRCMDespeckler(net.despeckler)
    cfg_a = despeckle_tile_config(first, cfg.tile, cfg.batch_size, amp=cfg.amp, cpu_bf16=cfg.cpu_bf16)
    shape = tuple(rcm.shape)
    n_a, n_b = cfg_a.plan(shape).n_tiles, cfg.plan(shape).n_tiles
    despeckled = create_output(scratch, shape, 1, cfg_a)

    def scale(block):
        return np.clip((block.astype(np.float32) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)

    yield from _progress_offset(tiled_inference(first, rcm, despeckled, cfg_a, device=device, preprocess=scale,
                                                out_channels=1), 0, n_a + n_b, "despeckling")
    second = StainingNet(despeckler=None, generator=net.generator).eval()  # tiled_inference moves it
    second.h.copy_(net.h), second.e.copy_(net.e)
    pair = as_pair_source(fcm, da.from_zarr(despeckled)[0])
    return (yield from _progress_offset(
        tiled_inference(second, pair, levels, cfg, device=device, preprocess=Normaliser(pre.fcm_range, (0.0, 1.0)),
                        out_channels=3, channel_axis=0), n_a, n_a + n_b, "staining"))


def stain_slide(net: StainingNet, fcm, rcm, out_path, *, normalisation: str = "slide", tile: int = 1024,
                batch_size: int = 1, device="cpu", amp: bool = True, client=None, normaliser=None,
                pyramid_from: int | None = None, overwrite: bool = False, cpu_bf16: bool = False, fuse: bool = True,
                two_pass: bool | None = None):
    """Generator: stain a whole FCM/RCM pair into a uint8 zarr pyramid at ``out_path``.

    ``normaliser``: a :class:`Normaliser` computed before (else from this pair);
    ``pyramid_from``: give results this long (or longer) a pyramid down to a quarter of
    it (default: only slides of 4096 px or more); ``cpu_bf16``: bfloat16 on CPUs that
    have it (see ``bench staining --real`` for its speed and its effect on quality);
    ``fuse``: fold batch norms into convolutions first (same output, faster);
    ``two_pass``: despeckle the whole RCM first (into a scratch zarr beside the output,
    removed at the end), then stain (see :func:`_two_passes`); by default whenever there
    is a despeckler and a CycleGAN, the normalisation is per slide and no ``client``
    spreads the tiles (workers would need the scratch store).
    Yields :class:`Progress`; returns the pyramid's level arrays, (3, H, W) each.
    """
    import tempfile
    from pathlib import Path

    from ...core.nets import fuse_conv_bn
    from ...core.tiling import create_pyramid_output, into_result, tiled_inference

    pre = normaliser or prepare(fcm, rcm, normalisation)
    net = fuse_conv_bn(net.eval()) if fuse else net.eval()
    cfg = tile_config(net, tile=tile, batch_size=batch_size, amp=amp, cpu_bf16=cpu_bf16)
    possible = net.despeckler is not None and net.generator is not None and pre.rcm_range is not None and client is None
    if two_pass and not possible:
        raise InputError("Two passes need a despeckler, a CycleGAN and per-slide normalisation, on this machine.")
    two_pass = possible if two_pass is None else two_pass

    def fill(levels):
        if not two_pass:
            return (yield from tiled_inference(net, as_pair_source(fcm, rcm), levels, cfg, device=device,
                                               preprocess=pre, out_channels=3, channel_axis=0, client=client))
        with tempfile.TemporaryDirectory(dir=Path(out_path).parent, prefix=".despeckled-") as tmp:
            return (yield from _two_passes(net, fcm, rcm, levels, cfg, pre, device, Path(tmp) / "rcm.zarr"))

    return (yield from into_result(
        out_path,
        lambda path: create_pyramid_output(path, tuple(fcm.shape), 3, cfg, smallest=pyramid_from and pyramid_from // 4,
                                           largest=pyramid_from),
        fill, overwrite=overwrite, info={"method": "combalia2019"}))


def stain_array(net: StainingNet, fcm, rcm, *, normalisation: str = "slide", normaliser: Normaliser | None = None,
                device="cpu") -> np.ndarray:
    """(H, W, 3) float32 RGB of a small pair in one pass (previews, tests, the seam check)."""
    pre = normaliser or prepare(fcm, rcm, normalisation)
    stride, _ = geometry(net)
    x = pre(np.stack([np.asarray(fcm), np.asarray(rcm)]))
    h, w = x.shape[1:]
    ph, pw = (-h) % stride, (-w) % stride
    x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
    from ...core.nets import fuse_conv_bn

    with torch.inference_mode():
        y = fuse_conv_bn(net.eval()).to(device)(torch.from_numpy(x)[None].to(device))[0, :, :h, :w]
    return y.permute(1, 2, 0).float().cpu().numpy()
