"""Tiled, batched, blended inference of any 2D/3D torch model over arrays of any size.

Why this is exact. Tiles start on multiples of the network's total stride, so every
tile samples the same down-sampling grid as a whole-image pass, and the image is padded
at its far border to a stride multiple exactly as :func:`predict_whole` pads it. Each
tile is only trusted ``margin`` pixels (the receptive-field radius) away from its cut
edges. Neighbouring tiles overlap by ``2 * margin + blend`` and are cross-faded with
linear ramps that form a partition of unity, inside the trusted zone of both. The
blended output therefore equals whole-image output up to float rounding, while the
ramps still hide seams for models whose receptive field exceeds ``margin``.

Results stream to an on-disk zarr array, one band of tile rows at a time, so memory
stays flat as images grow; napari can show the store while it is being filled.
Tiles run on a ``dask.distributed`` cluster when a client is given.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .device import autocast, preflight
from .errors import InputError
from .io.validate import assert_finite
from .jobs import Progress
from .nets import has_instance_norm
from .sources import TileSource, as_source


# --------------------------------------------------------------------------- plan
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


# ----------------------------------------------------------------------- reading
def read_tile(source: TileSource, start, tile_shape, spatial_shape) -> np.ndarray:
    """Channels-first tile, zero-padded past the image's far border."""
    sl = tuple(slice(s, min(s + t, L)) for s, t, L in zip(start, tile_shape, spatial_shape))
    block = source.read(sl)  # (C, *spatial)
    pad = [(0, 0)] + [(0, t - (sl_.stop - sl_.start)) for t, sl_ in zip(tile_shape, sl)]
    if any(p[1] for p in pad):
        block = np.pad(block, pad)
    return block


def _check_finite(block: np.ndarray, start) -> None:
    assert_finite(block, f"the image near position {tuple(int(s) for s in start)}")


# ------------------------------------------------------------------ accumulation
class BandAccumulator:
    """Blends tiles of one row of tiles at a time and flushes finished rows to ``out``.

    ``out`` is (C, *spatial) for probabilities or (*spatial) for labels. ``levels``
    are coarser copies of ``out`` (level k keeps every 2**k-th pixel of the spatial
    axes, so labels stay labels); they are filled band by band too, so a viewer can
    show the result as a pyramid while it grows.
    """

    def __init__(self, plan: TilePlan, out, channels: int, to_output: Callable[[np.ndarray], np.ndarray],
                 levels=()):
        self.plan, self.out, self.to_output, self.levels = plan, out, to_output, list(levels)
        self.spatial = tuple(a.length for a in plan.axes)
        rest = tuple(a.padded for a in plan.axes[1:])
        a0 = plan.axes[0]
        self.buf = np.zeros((channels, a0.tile) + rest, dtype=np.float32)
        self.base = 0  # image row of buf[:, 0]
        self.row = 0  # current tile-row index along axis 0

    def add(self, ii, start, pred: np.ndarray) -> None:
        if ii[0] != self.row:
            self._advance(ii[0])
        w = self.plan.weight(ii)
        off = start[0] - self.base
        sl = (slice(None), slice(off, off + pred.shape[1])) + tuple(slice(s, s + t) for s, t in zip(start[1:], pred.shape[2:]))
        self.buf[sl] += pred * w

    def _advance(self, new_row: int) -> None:
        new_base = self.plan.axes[0].starts[new_row]
        self._flush(new_base)
        keep = self.base + self.buf.shape[1] - new_base
        self.buf[:, :keep] = self.buf[:, self.buf.shape[1] - keep :]
        self.buf[:, keep:] = 0
        self.base, self.row = new_base, new_row

    def _flush(self, upto: int) -> None:
        lo, hi = self.base, min(upto, self.spatial[0])
        if hi <= lo:
            return
        block = self.buf[(slice(None), slice(0, hi - lo)) + tuple(slice(0, L) for L in self.spatial[1:])]
        res = self.to_output(block)
        rest = tuple(slice(None) for _ in self.spatial[1:])
        self.out[(Ellipsis, slice(lo, hi)) + rest] = res
        nd = len(self.spatial)
        for k, level in enumerate(self.levels, start=1):
            f = 2**k
            first = (-lo) % f  # first row of this band that lands on level k
            sub = res[(Ellipsis, slice(first, None, f)) + (slice(None, None, f),) * (nd - 1)]
            if sub.shape[-nd] == 0:
                continue
            r0 = (lo + first) // f
            level[(Ellipsis, slice(r0, r0 + sub.shape[-nd])) + rest] = sub

    def finish(self) -> None:
        self._flush(self.base + self.buf.shape[1])


def probabilities(block: np.ndarray) -> np.ndarray:
    return block


def labels_from_probabilities(block: np.ndarray) -> np.ndarray:
    if block.shape[0] == 1:
        return (block[0] > 0.5).astype(np.uint8)
    return block.argmax(axis=0).astype(np.uint8)


# --------------------------------------------------------------------- inference
@dataclass
class TileConfig:
    tile: int | tuple[int, ...] = 1024
    overlap: int | tuple[int, ...] | None = None  # default: 2*margin + blend
    stride: int = 8  # the network's total stride
    margin: int = 48  # receptive-field radius, rounded up to the stride
    blend: int = 16
    batch_size: int = 1
    output: str = "probabilities"  # or "labels"
    amp: bool = True
    prefetch: int = 2
    keep: tuple[int, ...] | None = None  # probabilities: store only these channels (e.g. (1,): foreground)

    def plan(self, spatial_shape) -> TilePlan:
        overlap = self.overlap if self.overlap is not None else default_overlap(self.margin, self.blend, self.stride)
        return plan_tiles(spatial_shape, self.tile, overlap, self.stride, self.margin, self.blend)


def _chunk_plan(spatial_shape, cfg: TileConfig) -> TilePlan:
    try:
        return cfg.plan(spatial_shape)
    except InputError:  # a coarse level smaller than a tile: one chunk
        return plan_tiles(spatial_shape, max(spatial_shape), 0, 1)


def create_output(path, spatial_shape, channels: int, cfg: TileConfig, plan: TilePlan | None = None):
    """An on-disk zarr array for the result, chunked along the plan's tile rows.

    ``channels``: how many channels are stored (``len(cfg.keep)`` when keeping some).
    """
    import zarr
    from zarr.codecs import BloscCodec

    plan = plan or _chunk_plan(spatial_shape, cfg)
    a0 = plan.axes[0]
    step = a0.starts[1] - a0.starts[0] if len(a0.starts) > 1 else a0.tile
    inner = tuple(min(1024, L) for L in spatial_shape[1:])
    if cfg.output == "labels":
        shape, chunks, dtype = tuple(spatial_shape), (min(step, spatial_shape[0]),) + inner, "uint8"
        compressors = "auto"
    else:
        shape, chunks, dtype = (channels,) + tuple(spatial_shape), (1, min(step, spatial_shape[0])) + inner, "float32"
        # probabilities barely compress; lz4 keeps the writer thread cheap
        compressors = [BloscCodec(cname="lz4", clevel=3, shuffle="shuffle")]
    return zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                             compressors=compressors, overwrite=True)

PYRAMID_FROM = 4096  # a 2D result whose longest side reaches this gets a pyramid ...
PYRAMID_DOWN_TO = 1024  # ... down to about this size


def pyramid_shapes(spatial_shape, smallest: int | None = None, largest: int | None = None) -> list[tuple[int, ...]]:
    """Level shapes (stride-2 subsampling) for a 2D result whose longest side is ``>= largest``."""
    smallest = smallest or PYRAMID_DOWN_TO
    largest = largest or PYRAMID_FROM
    shapes = [tuple(int(s) for s in spatial_shape)]
    if len(spatial_shape) != 2 or max(spatial_shape) < largest:
        return shapes
    while max(shapes[-1]) >= 2 * smallest:
        shapes.append(tuple(-(-s // 2) for s in shapes[-1]))
    return shapes


def create_pyramid_output(path, spatial_shape, channels: int, cfg: TileConfig, plan: TilePlan | None = None):
    """A zarr group ``path`` with arrays ``"0"``, ``"1"``, ... (level k: every 2**k-th pixel).

    Large 2D results get levels down to about 1024 px, so napari can show them as a
    multiscale layer without reading the full-resolution level; others get only ``"0"``.
    Returns the list of level arrays, full resolution first.
    """
    import zarr

    group = zarr.open_group(str(path), mode="w")
    shapes = pyramid_shapes(spatial_shape)
    levels = [create_output(f"{path}/{i}", shape, channels, cfg, plan if i == 0 else None)
              for i, shape in enumerate(shapes)]
    group.attrs["napari_medseg"] = {"levels": len(levels), "downsample": "stride 2 per level",
                                    "output": cfg.output}
    return levels


def open_pyramid_output(path) -> list:
    """The level arrays of a result written by :func:`create_pyramid_output`, read-only."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    n = int(group.attrs.get("napari_medseg", {}).get("levels", 1))
    return [zarr.open_array(f"{path}/{i}", mode="r") for i in range(n)]


def _batches(plan: TilePlan, batch_size: int):
    batch = []
    for item in plan.tiles():
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare_model(model: torch.nn.Module, spatial_dims: int, device) -> torch.nn.Module:
    """Eval mode on ``device``; 2D nets in channels-last layout (measured 1.3x faster on CPU)."""
    model = model.to(device).eval()
    if spatial_dims == 2:
        model = model.to(memory_format=torch.channels_last)
    return model


def _run_model(model, x: np.ndarray, device, amp: bool, postprocess) -> np.ndarray:
    with torch.inference_mode(), autocast(device, amp):
        t = torch.from_numpy(x).to(device, non_blocking=True)
        if t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        y = model(t)
        if postprocess is not None:
            y = postprocess(y)
    return y.float().cpu().numpy()


def tiled_inference(
    model: torch.nn.Module,
    image,
    out,
    cfg: TileConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    out_channels: int | None = None,
    channel_axis: int | None = None,
    client=None,
):
    """Generator: run ``model`` tile by tile over ``image`` into the zarr array ``out``.

    ``image`` is a numpy/dask/zarr array or a :class:`TileSource`, spatial axes only,
    or with a channel axis named by ``channel_axis``. ``out`` is one zarr array or the
    list of pyramid levels from :func:`create_pyramid_output`. ``preprocess`` maps a
    channels-first tile to float32 network input; ``postprocess`` maps network output
    to probabilities (e.g. softmax). Yields :class:`Progress`; returns ``out``.
    """
    cfg = cfg or TileConfig()
    device = torch.device(device)
    source = as_source(image, channel_axis)
    spatial = source.spatial_shape
    if any(s == 0 for s in spatial):
        raise InputError(f"The image is empty (shape {tuple(source.shape)}).")
    if len(spatial) not in (2, 3):
        raise InputError(f"Tiled inference takes 2D or 3D images; this one has {len(spatial)} spatial axes.")
    if has_instance_norm(model):
        warnings.warn(
            "This model uses instance normalisation: its statistics span the whole input, so tiled "
            "output cannot match whole-image output. Use batch norm (eval) or group norm for whole-slide models.",
            stacklevel=2,
        )
    plan = cfg.plan(spatial)
    model = prepare_model(model, len(spatial), device)
    if client is None:
        preflight(model, device, plan.tile_shape, cfg.batch_size, in_channels=source.channels)
    to_output = labels_from_probabilities if cfg.output == "labels" else probabilities
    channels = out_channels or _infer_out_channels(model, source.channels, len(spatial), device)
    keep = list(cfg.keep) if cfg.keep is not None and cfg.output != "labels" else None
    given = out
    levels = list(out) if isinstance(out, (list, tuple)) else [out]
    out = levels[0]
    stored = len(keep) if keep else channels
    expected = tuple(spatial) if cfg.output == "labels" else (stored, *spatial)
    if tuple(out.shape) != expected:
        raise InputError(f"The output store has shape {tuple(out.shape)}; this job writes {expected}.")
    acc = BandAccumulator(plan, out, stored, to_output, levels[1:])
    total = plan.n_tiles
    t0, done = time.perf_counter(), 0
    pre = preprocess or _default_preprocess
    batches = (
        _local_batches(model, source, plan, cfg, device, pre, postprocess)
        if client is None
        else _distributed_batches(client, model, source, plan, cfg, pre, postprocess)
    )
    writer = _Writer(acc)
    try:
        for items, preds in batches:
            writer.put(items, preds[:, keep] if keep else preds)
            done += len(items)
            mps = done * float(np.prod(plan.tile_shape)) / 1e6 / max(time.perf_counter() - t0, 1e-9)
            yield Progress(done, total, f"tile {done}/{total}", {"tile_megapixels_per_s": mps})
        writer.finish()
    finally:
        writer.close()
        close = getattr(batches, "close", None)
        if close:
            close()
    return given


class _Writer:
    """Blends and writes in a background thread, so the model never waits on the disk."""

    def __init__(self, acc: BandAccumulator, depth: int = 2):
        self.acc, self.q, self.error = acc, queue.Queue(maxsize=depth), None
        self.thread = threading.Thread(target=self._loop, name="medseg-tile-writer", daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                if item == "finish":
                    self.acc.finish()
                else:
                    for (ii, start), pred in zip(*item):
                        self.acc.add(ii, start, pred)
            except BaseException as exc:  # re-raised in the generator's thread
                self.error = exc

    def _raise(self):
        if self.error is not None:
            raise self.error

    def put(self, items, preds):
        self._raise()
        self.q.put((items, preds))

    def finish(self):
        self.q.put("finish")
        self.q.put(None)
        self.thread.join()
        self._raise()

    def close(self):
        if self.thread.is_alive():
            self.q.put(None)
            self.thread.join()


def _default_preprocess(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.uint8:
        return block.astype(np.float32) / 255.0
    return block.astype(np.float32, copy=False)


def _infer_out_channels(model, in_ch: int, nd: int, device) -> int:
    with torch.inference_mode():
        y = model(torch.zeros((1, in_ch) + (16,) * nd, device=device))
    return int(y.shape[1])


def _local_batches(model, source, plan, cfg, device, pre, post):
    """Read batches in a prefetch thread while the model runs on the previous batch."""
    q: queue.Queue = queue.Queue(maxsize=max(1, cfg.prefetch))
    stop = threading.Event()
    spatial = source.spatial_shape

    def reader():
        try:
            for batch in _batches(plan, cfg.batch_size):
                if stop.is_set():
                    return
                tiles = []
                for _ii, start in batch:
                    block = read_tile(source, start, plan.tile_shape, spatial)
                    _check_finite(block, start)
                    tiles.append(pre(block))
                q.put((batch, np.stack(tiles)))
            q.put(None)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    th = threading.Thread(target=reader, name="medseg-tile-reader", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            batch, x = item
            yield batch, _run_model(model, x, device, cfg.amp, post)
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.05)


# ------------------------------------------------------------------- distributed
def _worker_predict(model, source, starts, tile_shape, pre, post):
    """Runs on a dask worker: the scattered model stays in the worker's memory."""
    tiles = []
    for start in starts:
        block = read_tile(source, start, tile_shape, source.spatial_shape)
        _check_finite(block, start)
        tiles.append(pre(block))
    return _run_model(model, np.stack(tiles), torch.device("cpu"), False, post)


def _distributed_batches(client, model, source, plan, cfg, pre, post):
    """Submit batches to the cluster, a bounded window ahead, and yield them in order."""
    model_cpu = model.to("cpu").eval()
    [model_future] = client.scatter([model_cpu], broadcast=True)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    window = 2 * n_workers
    pending = []
    it = _batches(plan, cfg.batch_size)
    try:
        for batch in it:
            starts = [s for _ii, s in batch]
            fut = client.submit(_worker_predict, model_future, source, starts, plan.tile_shape, pre, post, pure=False)
            pending.append((batch, fut))
            if len(pending) >= window:
                b, f = pending.pop(0)
                yield b, f.result()
        while pending:
            b, f = pending.pop(0)
            yield b, f.result()
    finally:
        for _b, f in pending:
            f.cancel()


# ---------------------------------------------------------------- whole image
def predict_whole(model, image, *, stride: int = 8, device="cpu", preprocess=None, postprocess=None, channel_axis=None, amp=False):
    """Reference: one pass over the whole image, padded at the far border to a stride multiple."""
    source = as_source(image, channel_axis)
    spatial = source.spatial_shape
    padded = tuple(_round_up(s, stride) for s in spatial)
    block = read_tile(source, (0,) * len(spatial), padded, spatial)
    x = (preprocess or _default_preprocess)(block)[None]
    y = _run_model(prepare_model(model, len(spatial), device), x, torch.device(device), amp, postprocess)[0]
    return y[(slice(None),) + tuple(slice(0, s) for s in spatial)]
