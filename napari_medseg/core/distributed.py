"""Training on several processes (``torchrun``): data-parallel with PyTorch's DDP.

``torchrun --nproc-per-node N napari-medseg train SLUG ...`` starts N copies of the
command with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set. :func:`init_from_env` joins
them into one process group (gloo on CPU, NCCL on CUDA, each rank on its own GPU);
the shared training loop then wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel`, so every step averages the ranks'
gradients and all ranks hold the same weights. Each rank draws its own patches
(:func:`rank_seed`); only rank 0 writes (registry versions, run folders, progress
bars). A command started without torchrun runs as one process, exactly as before.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import NoReturn

import torch
import torch.distributed as dist


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher setting the env)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """A process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that saves, prints and ships."""
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join torchrun's process group when launched by it; returns this rank's device.

    CPU ranks talk over gloo. CUDA ranks use NCCL, each on ``cuda:LOCAL_RANK``. Called
    without a launcher it changes nothing and returns ``device``.
    """
    if not launched() or active():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown(wait_for_peers: bool = True) -> None:
    """Leave the process group. After a run that ended normally every rank first waits for
    the others (a barrier): a rank tearing gloo down while its peer still finishes its last
    collective can abort the peer. After an error there is no waiting (the peer may be gone)."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a torchrun rank now, after :func:`shutdown`: flush the streams and leave without
    the interpreter's teardown. That teardown can abort a rank whose run succeeded (gloo's
    threads: "terminate called without an active exception", SIGABRT), and torchrun then
    reports the whole run as failed. Everything the run writes is written (atomically) before."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(int(code or 0))


@contextmanager
def leaving_group_after():
    """Run the block, then :func:`shutdown` (with the barrier only when the block succeeded)."""
    try:
        yield
    except BaseException:
        shutdown(wait_for_peers=False)
        raise
    shutdown()


def rank_seed(seed: int) -> int:
    """A per-rank seed for data sampling, so the ranks train on different patches;
    rank 0 (and a single process) keeps ``seed``."""
    return seed + 1009 * rank()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DDP when a process group is running, else ``model`` itself."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def average_gradients(model) -> None:
    """All-reduce every gradient to the ranks' mean, in place: DDP's update for loops that
    run the model several times per step (DDP's hooks expect one forward per backward).
    ``model``: a module or a list of parameters. Call after ``backward()`` and before the
    optimiser step; nothing on one process."""
    if not active():
        return
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def from_main(value):
    """Rank 0's ``value`` (any picklable object) on every rank: what rank 0 alone decided or
    wrote, such as the registry version it saved. ``value`` itself on one process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_weights(model: torch.nn.Module) -> None:
    """Rank 0's weights and buffers on every rank (all start from the same point)."""
    if not active():
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank. DDP syncs them before
    each forward, so after a training step the ranks' statistics differ by that step's
    update; evaluation and the kept weights must see one set."""
    if not active():
        return
    with torch.no_grad():
        for t in model.buffers():
            dist.broadcast(t.data, src=0)


def mean_metrics(metrics: dict) -> dict:
    """Each float metric averaged over the ranks (the loss each rank saw on its own patches)."""
    if not active() or not metrics:
        return metrics
    keys = sorted(k for k, v in metrics.items() if isinstance(v, float))
    t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        t = t.cuda()
    dist.all_reduce(t)
    return {**metrics, **{k: float(v) / world_size() for k, v in zip(keys, t.tolist())}}
