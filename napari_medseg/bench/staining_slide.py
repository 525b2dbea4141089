"""The whole-slide part of ``bench staining``: a large confocal-like pair, read lazily,
stained tile by tile into a zarr pyramid; time, throughput and peak memory."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def large_pair(shape, seed: int = 0, tile: int = 1024, he=None):
    """A lazy (FCM, RCM) pair of ``shape``: the held-out sample pair repeated (with a
    seeded flip per block, so no two neighbouring blocks are equal). Nothing is computed
    until a region is read."""
    import dask.array as da

    from ..methods.staining import confocal, hne

    he = hne.sample_he() if he is None else he
    pair = confocal.confocal_pair(he[:tile, :tile], seed=seed)
    rng = np.random.default_rng(seed)
    rows, cols = -(-shape[0] // tile), -(-shape[1] // tile)
    flips = rng.integers(0, 4, (rows, cols))

    def blocks(ch):
        variants = [ch, ch[::-1], ch[:, ::-1], ch[::-1, ::-1]]
        lazy = [da.from_array(np.ascontiguousarray(v), chunks=tile) for v in variants]
        grid = [[lazy[flips[r, c]] for c in range(cols)] for r in range(rows)]
        return da.block(grid)[: shape[0], : shape[1]]

    return blocks(pair.fcm), blocks(pair.rcm)


def shipped_pipeline(device="cpu", despeckle: bool = True, cyclegan: bool = True):
    from ..core.registry import Registry
    from ..methods.staining.pipeline import StainingNet

    reg = Registry()
    d = reg.get("despeckle").load(device)[0].eval() if despeckle else None
    g = reg.get("stain_cyclegan").load(device)[0].eval() if cyclegan else None
    return StainingNet(despeckler=d, generator=g).to(device).eval()


def time_slide(shape, device="cpu", tile: int = 1024, batch_size: int = 1, out_dir=None, net=None, he=None,
               cpu_bf16: bool = False, fuse: bool = True, two_pass: bool | None = None) -> dict:
    """Stain a lazy pair of ``shape`` end to end; seconds, megapixels/s and peak RSS.
    ``two_pass``: as :func:`~napari_medseg.methods.staining.pipeline.stain_slide` (False:
    one pass, the code as it was before the despeckling pass)."""
    from ..core.jobs import collect
    from ..methods.staining.pipeline import stain_slide
    from .memory import peak_rss_mb

    net = net or shipped_pipeline(device)
    fcm, rcm = large_pair(shape, he=he)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        t0 = time.perf_counter()
        _, levels = collect(stain_slide(net, fcm, rcm, Path(tmp) / "slide.zarr", tile=tile, batch_size=batch_size,
                                        device=device, cpu_bf16=cpu_bf16, fuse=fuse, two_pass=two_pass))
        seconds = time.perf_counter() - t0
        check = np.asarray(levels[-1])
    return {"shape": list(shape), "seconds": seconds, "megapixels_per_s": shape[0] * shape[1] / 1e6 / seconds,
            "peak_rss_mb": peak_rss_mb(), "mean_output": float(check.mean())}


def shipped_entry(name: str, version: int | None = None):
    """The newest *shipped* version of a model, or its shipped ``version`` (a user's own
    versions are left out)."""
    from ..core.errors import InputError
    from ..core.registry import Registry

    entries = [e for e in Registry().list(name) if e.source == "shipped" and version in (None, e.version)]
    if not entries:
        raise InputError(f"No shipped model called {name!r}" + (f" with version {version}." if version else "."))
    return entries[-1]


def shipped_models(device="cpu", despeckle_version: int | None = None):
    """(despeckler, generator, {name: label}) of the newest shipped versions (or the
    despeckler's ``despeckle_version``), in eval mode."""
    entries = {"despeckle": shipped_entry("despeckle", despeckle_version), "stain_cyclegan": shipped_entry("stain_cyclegan")}
    d = entries["despeckle"].load(device)[0].eval()
    g = entries["stain_cyclegan"].load(device)[0].eval()
    return d, g, {n: e.label for n, e in entries.items()}


if __name__ == "__main__":  # python -m napari_medseg.bench.staining_slide 10000 15000 --device cuda
    import argparse
    import json

    p = argparse.ArgumentParser()
    p.add_argument("height", type=int)
    p.add_argument("width", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--he", default=None, help="an H&E image file to derive the pair from (default: the sample)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on a CPU that has it")
    a = p.parse_args()
    he = None
    if a.he:
        from skimage import io

        he = io.imread(a.he)[..., :3]
    print(json.dumps(time_slide((a.height, a.width), a.device, tile=a.tile, batch_size=a.batch_size, he=he,
                                cpu_bf16=a.bf16)))
