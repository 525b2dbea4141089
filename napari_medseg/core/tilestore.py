"""Where the results go: band-by-band blending into on-disk zarr, with a stride pyramid.

The accumulator holds one row of tiles; finished rows are flushed to the zarr store
(and to every pyramid level), so memory stays flat as images grow and a viewer can
show the store while it fills. The writer thread does this while the model runs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from .errors import InputError
from .tileplan import TileConfig, TilePlan, plan_tiles


def release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Tiles, batches and bands are allocated and freed by three threads; glibc keeps what
    they free in per-thread arenas, and over a 20000-px slide that grew the process by
    about 0.3 GB (measured). The writer thread trims after each batch it has blended
    (which includes every band it flushes)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None
FLUSH_COLUMNS = 2048  # columns converted and written at a time (a multiple of the 1024-px chunks)


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
        """Write rows [base, upto) of the band, a block of columns at a time: converting the
        whole band at once (``to_output``'s temporaries, then zarr's copy) used to cost
        several times the band's own size, about 0.6 GB at 20000 px wide."""
        lo, hi = self.base, min(upto, self.spatial[0])
        if hi <= lo:
            return
        nd = len(self.spatial)
        width = self.spatial[-1]
        # a multiple of every level's step, so each block starts on every level's grid
        grid = 2 ** len(self.levels)
        cols = -(-FLUSH_COLUMNS // grid) * grid
        mid = tuple(slice(0, L) for L in self.spatial[1:-1])
        for c0 in range(0, width, cols):
            c1 = min(c0 + cols, width)
            block = self.buf[(slice(None), slice(0, hi - lo)) + mid + (slice(c0, c1),)]
            res = self.to_output(block)
            self.out[(Ellipsis, slice(lo, hi)) + tuple(slice(None) for _ in mid) + (slice(c0, c1),)] = res
            for k, level in enumerate(self.levels, start=1):
                f = 2**k
                first = (-lo) % f  # first row of this band that lands on level k
                sub = res[(Ellipsis, slice(first, None, f)) + (slice(None, None, f),) * (nd - 1)]
                if sub.shape[-nd] == 0:
                    continue
                r0 = (lo + first) // f
                level[(Ellipsis, slice(r0, r0 + sub.shape[-nd])) + tuple(slice(None) for _ in mid)
                      + (slice(c0 // f, c0 // f + sub.shape[-1]),)] = sub

    def finish(self) -> None:
        self._flush(self.base + self.buf.shape[1])


def probabilities(block: np.ndarray) -> np.ndarray:
    return block


def unit_to_uint8(block: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (e.g. RGB images) as uint8 0..255, rounded; the ``"rgb8"`` output."""
    return np.clip(block * 255.0 + 0.5, 0, 255).astype(np.uint8)


def labels_from_probabilities(block: np.ndarray, rows: int = 128) -> np.ndarray:
    """The most probable class per pixel (uint8), a few rows at a time: ``argmax`` of a
    whole band makes an int64 copy the size of the band (160 MB for a 20000-px-wide band)."""
    if block.shape[0] == 1:
        return (block[0] > 0.5).astype(np.uint8)
    out = np.empty(block.shape[1:], np.uint8)
    for r in range(0, block.shape[1], rows):
        out[r : r + rows] = block[:, r : r + rows].argmax(axis=0)
    return out


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
    elif cfg.output == "rgb8":  # images in [0, 1] stored as 0..255
        shape, chunks, dtype = (channels,) + tuple(spatial_shape), (1, min(step, spatial_shape[0])) + inner, "uint8"
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


def create_pyramid_output(path, spatial_shape, channels: int, cfg: TileConfig, plan: TilePlan | None = None,
                          smallest: int | None = None, largest: int | None = None, pixel_size=None,
                          unit: str | None = None):
    """A zarr group ``path`` with arrays ``"0"``, ``"1"``, ... (level k: every 2**k-th pixel).

    Large 2D results get levels down to about 1024 px, so napari can show them as a
    multiscale layer without reading the full-resolution level; others get only ``"0"``.
    ``smallest``/``largest`` override those sizes (see :func:`pyramid_shapes`). ``pixel_size``
    and ``unit``: of the input, for the OME-NGFF metadata (:func:`write_ngff_metadata`).
    Returns the list of level arrays, full resolution first.
    """
    import zarr

    group = zarr.open_group(str(path), mode="w")
    shapes = pyramid_shapes(spatial_shape, smallest, largest)
    levels = [create_output(f"{path}/{i}", shape, channels, cfg, plan if i == 0 else None)
              for i, shape in enumerate(shapes)]
    # "complete" turns true only when the whole result is written (core.outputs.PendingResult)
    group.attrs["napari_medseg"] = {"levels": len(levels), "downsample": "stride 2 per level",
                                    "output": cfg.output, "complete": False}
    write_ngff_metadata(group, levels, channel_first=cfg.output != "labels", pixel_size=pixel_size, unit=unit)
    return levels


def write_ngff_metadata(group, levels, channel_first: bool, pixel_size=None, unit: str | None = None) -> None:
    """OME-NGFF 0.5 multiscales metadata for a result group, written by ome-zarr-py, so that
    ome-zarr-py, napari-ome-zarr, Fiji and QuPath find an image in it: axes (c, then z/y/x),
    and per level a scale of 2**k pixel sizes (level k keeps every 2**k-th pixel, so no
    translation). ``pixel_size``: of the input's spatial axes (default 1, no unit)."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    nd = len(levels[0].shape) - int(channel_first)
    names = ["z", "y", "x"][-nd:] if nd <= 3 else [f"d{i}" for i in range(nd)]
    size = [1.0] * nd if pixel_size is None else [float(v) for v in pixel_size][-nd:]
    if len(size) != nd or not all(np.isfinite(v) and v > 0 for v in size):
        raise InputError(f"The pixel size {pixel_size!r} does not fit a {nd}-D result; give {nd} positive numbers.")
    axes = [{"name": "c", "type": "channel"}] if channel_first else []
    axes += [{"name": n, "type": "space", **({"unit": unit} if unit else {})} for n in names]
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": ([1.0] if channel_first else []) + [v * 2**k for v in size]}]}
        for k in range(len(levels))]
    write_multiscales_metadata(group, datasets, fmt=FormatV05(), axes=axes, name=str(group.basename or "result"))


def open_pyramid_output(path, allow_incomplete: bool = False) -> list:
    """The level arrays of a result written by :func:`create_pyramid_output`, read-only.

    A result whose run did not finish is refused unless ``allow_incomplete`` (a viewer
    showing a result while it fills)."""
    import zarr

    from .outputs import result_attrs

    info = result_attrs(path)
    if info is None:
        raise InputError(f"{path} is not a napari-medseg result (no result attributes).")
    if not allow_incomplete and info.get("complete", True) is not True:
        raise InputError(f"{path} is an incomplete result: the run that wrote it did not finish; "
                         f"run it again (with --overwrite to replace it).")
    try:
        group = zarr.open_group(str(path), mode="r")
        n = int(group.attrs.get("napari_medseg", {}).get("levels", 1))
        return [zarr.open_array(f"{path}/{i}", mode="r") for i in range(n)]
    except Exception as exc:  # noqa: BLE001 - zarr raises many kinds for damaged stores
        raise InputError(f"{path} is a damaged result ({type(exc).__name__}); run it again.") from None


def into_result(out_path, create, fill, *, inputs=(), overwrite: bool = False, info: dict | None = None):
    """Generator: ``fill(create(path))`` into a result at ``out_path`` that is marked complete
    only when ``fill`` finishes (see :class:`~napari_medseg.core.outputs.PendingResult`).

    The output path is checked now (:func:`~napari_medseg.core.outputs.check_output_path`),
    before any job starts. ``create(path)`` returns the level arrays; ``fill(levels)`` is a
    progress generator. Returns the finished result's level arrays, read-only.
    """
    from .outputs import PendingResult

    pending = PendingResult(out_path, inputs, overwrite)

    def job():
        done = False
        try:
            levels = create(pending.path)
            yield from fill(levels)
            done = True
        finally:
            if not done:
                pending.abort()
        return open_pyramid_output(pending.commit(**(info or {})))

    return job()


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
                    del item
                    release_free_memory()
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
