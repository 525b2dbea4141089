"""Whole synthetic kidney slides of any size: seamless blocks of
:func:`~.synthetic.synthetic_kidney`, and a tiled pyramidal TIFF written block row by
block row (flat memory; the bench's and the tests' big slides)."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from .synthetic import BLOCK_BORDER, KidneySlide, synthetic_kidney


def _block(h, w, seed, block, by, bx, kw) -> KidneySlide:
    y0, x0 = by * block, bx * block
    bseed = int(np.random.SeedSequence([int(seed), by, bx]).generate_state(1)[0])
    shape = (min(block, h - y0), min(block, w - x0))
    return synthetic_kidney(shape, bseed, origin=(y0, x0), texture_seed=seed, border=BLOCK_BORDER, **kw)


def kidney_blocks(size, seed: int = 0, block: int = 2048, **kw):
    """Yield ``(y0, x0, KidneySlide)`` for the blocks of one ``size`` x ``size`` slide, row by row.

    Each block has its own seed (from ``seed`` and its place); tubules and stain are shared,
    so blocks join without seams; glomeruli keep off block edges.
    """
    h, w = (int(v) for v in np.broadcast_to(size, 2))  # an int or (height, width)
    for by in range(-(-h // block)):
        for bx in range(-(-w // block)):
            yield by * block, bx * block, _block(h, w, seed, block, by, bx, kw)


def _halve(rgb: np.ndarray) -> np.ndarray:
    """Mean of each 2 x 2 pixel block (an odd last row/column is dropped), rounded."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    s = rgb[:h:2, :w:2].astype(np.uint16) + rgb[1:h:2, :w:2] + rgb[:h:2, 1:w:2] + rgb[1:h:2, 1:w:2]
    return ((s + 2) // 4).astype(np.uint8)


def write_kidney_pyramid(path, size, seed: int = 0, *, tile: int = 512, levels: int | None = None,
                         block: int = 2048, compression: str | None = "zlib", **kw) -> dict:
    """Write a ``size`` x ``size`` synthetic slide as a tiled pyramidal (SubIFD) TIFF, block row by block row.

    Lower levels (2 x 2 means per block) wait in temporary files beside ``path``. ``levels`` counts
    level 0 (default: halve until the side is below 1024). Returns ``{"path", "shape", "levels"
    (shape of each level), "n_glomeruli", "boxes" (level-0 pixels)}``.
    """
    import tifffile

    from ...core.atomic import atomic_path

    h, w = (int(v) for v in np.broadcast_to(size, 2))  # an int or (height, width)
    levels = 1 + (max(h, w) >> 10).bit_length() if levels is None else int(levels)  # halve to below 1024
    if tile < 16 or tile % 16 or block % tile or not 1 <= levels <= 16 or block % 2 ** (levels - 1) \
            or min(h, w) >> (levels - 1) < 1:
        raise InputError(
            f"tile ({tile}) must be a multiple of 16, block ({block}) a multiple of the tile and of "
            f"2**(levels - 1), and the slide ({h} x {w}) big enough for {levels} levels; change them."
        )
    shapes = [(h >> k, w >> k, 3) for k in range(levels)]
    opts = dict(dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression=compression, metadata=None,
                compressionargs={"level": 1} if compression == "zlib" else None, buffersize=2**24)
    boxes: list[np.ndarray] = [np.zeros((0, 4), np.int64)]

    def level0(spill):
        for by in range(-(-h // block)):
            row = []  # the RGB of this row of blocks (their instance images are dropped at once)
            for bx in range(-(-w // block)):
                k = _block(h, w, seed, block, by, bx, kw)
                boxes.append(k.boxes + [by * block, bx * block] * 2)
                row.append(k.rgb)
            small = row
            for f in spill:  # level k of this row of blocks, appended to its file
                small = [_halve(b) for b in small]
                f.write(np.concatenate(small, axis=1).tobytes())
            for ty in range(0, row[0].shape[0], tile):
                for b in row:
                    for tx in range(0, b.shape[1], tile):
                        yield np.ascontiguousarray(b[ty : ty + tile, tx : tx + tile])

    def from_file(f, shape):
        f.seek(0)
        for ty in range(0, shape[0], tile):
            band = np.frombuffer(f.read(min(tile, shape[0] - ty) * shape[1] * 3), np.uint8)
            band = band.reshape(-1, shape[1], 3)
            for tx in range(0, shape[1], tile):
                yield np.ascontiguousarray(band[:, tx : tx + tile])

    path, bigtiff = Path(path), sum(np.prod(s) for s in shapes) > 2**31 - 2**25
    with atomic_path(path, suffix=".tmp.tif") as tmp, ExitStack() as stack:
        spill_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=path.parent)))
        spill = [stack.enter_context(open(spill_dir / f"level{k}.raw", "w+b")) for k in range(1, levels)]
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tif:
            tif.write(level0(spill), shape=shapes[0], **({"subifds": levels - 1} if levels > 1 else {}), **opts)
            for f, shape in zip(spill, shapes[1:]):
                tif.write(from_file(f, shape), shape=shape, subfiletype=1, **opts)
    boxes = np.concatenate(boxes).astype(np.int64)
    return {"path": str(path), "shape": shapes[0], "levels": shapes, "n_glomeruli": len(boxes), "boxes": boxes}
