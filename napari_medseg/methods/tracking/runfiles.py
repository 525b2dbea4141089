"""The imitation phase's data set in a training run's folder, chunk by chunk.

DAgger aggregates up to ``imitation_buffer`` labelled states (some 580 MB). Rewriting them
all with every kept state would cost that much each time, so each kept state comes with
the states added since the previous one, written once as ``imitation/<offset>.pt`` (the
offset: how many states were added before them). The chunks go on disk before the
state that counts them, and chunks that later states have entirely overwritten are
removed only after that newer state is written, so whichever state a kill leaves, the
chunks it needs are there. Resuming reads the chunks the state counts and replays them
into a fresh :class:`~.imitation.LabelBuffer`, which ends up as it was.
"""

from __future__ import annotations

import shutil

import torch

from napari_medseg.core.atomic import atomic_write_bytes
from napari_medseg.core.runstate import TrainingRun

FOLDER = "imitation"


def write_imitation_chunks(run: TrainingRun, chunks: list[dict]) -> None:
    folder = run.folder / FOLDER
    for c in chunks:
        folder.mkdir(exist_ok=True)
        payload = {"offset": int(c["offset"]), "obs": c["obs"], "labels": c["labels"]}
        atomic_write_bytes(folder / f"{int(c['offset']):012d}.pt", lambda fh, p=payload: torch.save(p, fh))


def _chunk_files(run: TrainingRun) -> list:
    folder = run.folder / FOLDER
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


def prune_imitation_chunks(run: TrainingRun, total: int, capacity: int, done: bool = False) -> None:
    """Remove the chunks that the newest ``capacity`` of ``total`` states no longer hold (all
    of them once the imitation phase is ``done``). Call after the state counting ``total``."""
    if done:
        shutil.rmtree(run.folder / FOLDER, ignore_errors=True)
        return
    files = _chunk_files(run)
    for f, nxt in zip(files, files[1:] + [None]):
        end = int(nxt.stem) if nxt is not None else None  # a chunk ends where the next begins
        if end is not None and end <= total - capacity:
            f.unlink(missing_ok=True)


def read_imitation_chunks(run: TrainingRun, total: int) -> list[dict]:
    """The chunks a state that counted ``total`` states needs, in order (newer ones, written
    just before a kill, are left out)."""
    return [torch.load(f, map_location="cpu", weights_only=True) for f in _chunk_files(run) if int(f.stem) < total]
