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

import queue
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from .device import autocast, preflight
from .errors import InputError
from .io.validate import assert_finite
from .jobs import Progress
from .nets import has_instance_norm
from .sources import TileSource, as_source
from .tileplan import AxisPlan, TileConfig, TilePlan, _round_up, default_overlap, plan_axis, plan_tiles
from .tilestore import (
    BandAccumulator,
    _Writer,
    create_output,
    create_pyramid_output,
    into_result,
    labels_from_probabilities,
    open_pyramid_output,
    probabilities,
    pyramid_shapes,
    unit_to_uint8,
)

# the tiling API in one place: plan, stores and the inference that fills them
__all__ = [
    "AxisPlan", "BandAccumulator", "TileConfig", "TilePlan", "create_output", "create_pyramid_output",
    "default_overlap", "into_result", "labels_from_probabilities", "open_pyramid_output", "plan_axis", "plan_tiles",
    "predict_whole", "prepare_model", "probabilities", "pyramid_shapes", "read_tile", "tiled_inference",
]


# ----------------------------------------------------------------------- reading
def read_tile(source: TileSource, start, tile_shape, spatial_shape) -> np.ndarray:
    """Channels-first tile, zero-padded past the image's far border."""
    sl = tuple(slice(s, min(s + t, L)) for s, t, L in zip(start, tile_shape, spatial_shape))
    block = source.read(sl)  # (C, *spatial)
    pad = [(0, 0)] + [(0, t - (sl_.stop - sl_.start)) for t, sl_ in zip(tile_shape, sl)]
    if any(p[1] for p in pad):
        block = np.pad(block, pad)
    return block


def _read_batch(source: TileSource, starts, tile_shape, pre) -> np.ndarray:
    """Read, check and preprocess the tiles of one batch: (B, C, *tile_shape) network input."""
    tiles = []
    for start in starts:
        block = read_tile(source, start, tile_shape, source.spatial_shape)
        _check_finite(block, start)
        tiles.append(pre(block))
    return np.stack(tiles)


def _check_finite(block: np.ndarray, start) -> None:
    assert_finite(block, f"the image near position {tuple(int(s) for s in start)}")


# --------------------------------------------------------------------- inference
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


def _run_model(model, x: np.ndarray, device, amp: bool, postprocess, cpu_bf16: bool = False) -> np.ndarray:
    with torch.inference_mode(), autocast(device, amp, cpu_bf16):
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
    to_output = {"labels": labels_from_probabilities, "rgb8": unit_to_uint8}.get(cfg.output, probabilities)
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

    def reader():
        try:
            for batch in _batches(plan, cfg.batch_size):
                if stop.is_set():
                    return
                q.put((batch, _read_batch(source, [s for _ii, s in batch], plan.tile_shape, pre)))
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
            yield batch, _run_model(model, x, device, cfg.amp, post, cfg.cpu_bf16)
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
    return _run_model(model, _read_batch(source, starts, tile_shape, pre), torch.device("cpu"), False, post)


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
