"""``napari-medseg bench scaling``: training on 1 vs 2 processes (torch DDP over gloo) and
folder prediction on 1 vs 2 dask workers, side by side in one run.

Training: the tissue network (:data:`napari_medseg.methods.tissue.model.ARCH`) on
patches of fixed size; one process with two threads against two one-thread processes
in DDP, each rank with the same per-rank batch (so two ranks see twice the patches per
step). ``ddp_weights_max_abs_diff``: two ranks against one process on both ranks'
batches, a few Adam steps of a small network (it should be float rounding).

Prediction: ``predict despeckle --scheduler local:N`` on a folder of generated speckled
images, N = 1 and 2 one-thread workers; ``distributed_predict_max_abs_diff`` compares
the two runs' files. A machine with two cores cannot show more than about 2x.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {
    "train_patches_per_s_ratio": "~2x at best on 2 cores (reported, no goal)",
    "predict_images_per_s_ratio": "~2x at best on 2 cores (reported, no goal)",
    "ddp_weights_max_abs_diff": "float rounding (<= 1e-5)",
    "distributed_predict_max_abs_diff": "0 (same files)",
}
SIZES = {True: {"steps": 6, "batch": 2, "patch": 128, "images": 4, "side": 384},
         False: {"steps": 20, "batch": 4, "patch": 192, "images": 8, "side": 768}}


# ------------------------------------------------------------------ training
def _train_rank(rank: int, world: int, store: str, threads: int, steps: int, batch: int, patch: int, out: str):
    import torch
    import torch.distributed as dist

    from ..core import distributed

    from ..core import nets
    from ..core.jobs import collect
    from ..core.training import train_supervised
    from ..methods.tissue.model import ARCH

    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    with distributed.leaving_group_after():
        torch.manual_seed(0)
        model = nets.build(ARCH)
        g = torch.Generator().manual_seed(rank)

        def next_batch(_step):
            x = torch.rand(batch, 3, patch, patch, generator=g)
            return x, (x[:, :1] > 0.5).long()[:, 0]

        loss = torch.nn.CrossEntropyLoss()
        collect(train_supervised(model, next_batch, loss, steps=2))  # warm-up (allocator, oneDNN)
        t0 = time.perf_counter()
        collect(train_supervised(model, next_batch, loss, steps=steps))
        seconds = time.perf_counter() - t0
        if rank == 0:
            Path(out).write_text(json.dumps({"seconds": seconds}))


def train_throughput(world: int, steps: int, batch: int, patch: int) -> dict:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        threads = max(1, (os.cpu_count() or 2) // world)
        mp.spawn(_train_rank, args=(world, os.path.join(tmp, "store"), threads, steps, batch, patch, out),
                 nprocs=world, join=True)
        seconds = json.loads(Path(out).read_text())["seconds"]
    return {"steps_per_s": steps / seconds, "patches_per_s": steps * batch * world / seconds}


def _ddp_rank(rank: int, store: str, out: str, steps: int):
    import torch
    import torch.distributed as dist

    from ..core import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    with distributed.leaving_group_after():
        model = _small_net()
        from ..core.jobs import collect
        from ..core.training import train_supervised

        collect(train_supervised(model, lambda s: _ddp_batch(rank, s), _mse, steps=steps, lr=1e-2))
        if rank == 0:
            torch.save(model.state_dict(), out)


def _small_net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))


def _ddp_batch(rank: int, step: int):
    import torch

    g = torch.Generator().manual_seed(1000 * rank + step)
    x = torch.rand(4, 1, 32, 32, generator=g)
    return x, 0.5 * x.roll(1, dims=-1) + 0.1


def _mse(a, b):
    import torch

    return torch.nn.functional.mse_loss(a, b)


def ddp_weights_diff(steps: int = 10) -> float:
    """Largest |w_DDP - w_single| after ``steps`` Adam steps: two ranks against one process
    that trains on both ranks' batches at once."""
    import torch
    import torch.multiprocessing as mp

    from ..core.jobs import collect
    from ..core.training import train_supervised

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "w.pt")
        mp.spawn(_ddp_rank, args=(os.path.join(tmp, "store"), out, steps), nprocs=2, join=True)
        ddp = torch.load(out, weights_only=True)
    single = _small_net()
    collect(train_supervised(single, lambda s: tuple(torch.cat(t) for t in zip(_ddp_batch(0, s), _ddp_batch(1, s))),
                             _mse, steps=steps, lr=1e-2))
    return float(max((ddp[k] - v).abs().max() for k, v in single.state_dict().items()))


# ------------------------------------------------------------------ prediction
def _speckled_folder(folder: Path, n: int, side: int, seed: int = 0) -> None:
    import tifffile
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        clean = 0.2 + 0.6 * gaussian(rng.random((side, side)), 4)
        clean = (clean - clean.min()) / (np.ptp(clean) + 1e-9)
        noisy = 3000 * (0.2 + 0.6 * clean) * (1 + 0.2 * rng.standard_normal(clean.shape))
        tifffile.imwrite(folder / f"image{i:02d}.tif", noisy.clip(0, 65535).astype(np.uint16))


def predict_throughput(src: Path, out: Path, workers: int) -> float:
    """Images per second of ``predict despeckle SRC --scheduler local:N`` (cluster start included)."""
    from argparse import Namespace

    from ..methods.staining.cli import predict_despeckle

    n = len(list(src.iterdir()))
    args = Namespace(images=str(src), out=str(out), tile=512, model=None, device="cpu", format="tif", bf16=False,
                     scheduler=f"local:{workers}")
    t0 = time.perf_counter()
    code = predict_despeckle(args)
    seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"predict despeckle on {workers} worker(s) failed (exit {code}).")
    return n / seconds


def run(quick: bool = False, json_path: str | None = None) -> dict:
    import tifffile

    cfg = SIZES[bool(quick)]
    t0 = time.perf_counter()
    one = train_throughput(1, cfg["steps"], cfg["batch"], cfg["patch"])
    two = train_throughput(2, cfg["steps"], cfg["batch"], cfg["patch"])
    r = {
        "train_steps_per_s_1proc": one["steps_per_s"], "train_steps_per_s_2proc": two["steps_per_s"],
        "train_patches_per_s_1proc": one["patches_per_s"], "train_patches_per_s_2proc": two["patches_per_s"],
        "train_patches_per_s_ratio": two["patches_per_s"] / one["patches_per_s"],
        "ddp_weights_max_abs_diff": ddp_weights_diff(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        _speckled_folder(src, cfg["images"], cfg["side"])
        a = predict_throughput(src, Path(tmp) / "w1", 1)
        b = predict_throughput(src, Path(tmp) / "w2", 2)
        diff = max(float(np.abs(tifffile.imread(Path(tmp) / "w1" / p.name) - tifffile.imread(p)).max())
                   for p in (Path(tmp) / "w2").glob("*.tif"))
    r.update({"predict_images_per_s_1worker": a, "predict_images_per_s_2workers": b,
              "predict_images_per_s_ratio": b / a, "distributed_predict_max_abs_diff": diff})
    r.update({
        "cpu_count": os.cpu_count(), "train_batch_per_rank": cfg["batch"], "train_patch": cfg["patch"],
        "train_steps": cfg["steps"], "predict_images": cfg["images"], "predict_image_side": cfg["side"],
        "quick": bool(quick), "seconds": time.perf_counter() - t0, "goals": GOALS,
    })
    if json_path:
        Path(json_path).write_text(json.dumps(r, indent=2))
    return r
