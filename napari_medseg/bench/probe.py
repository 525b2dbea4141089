"""Run one CLI call or engine function in a forked child with a time limit, and say how it ended.

The reliability bench and ``tests/reliability`` judge every probe the same way:

- ``ok``: exit 0;
- ``clear_error``: exit 2 with one ``napari-medseg: error: ...`` line and no traceback;
- ``crash``: anything else that ended (a traceback, another exit code);
- ``hang``: still running after the time limit (the child is killed).

Forking after the parent has imported torch keeps each probe to milliseconds, so a
corpus of a hundred files runs in well under the bench's five minutes.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

OK, CLEAR, CRASH, HANG = "ok", "clear_error", "crash", "hang"


@dataclass
class Outcome:
    kind: str  # ok, clear_error, crash, hang
    code: int | None
    stderr: str
    seconds: float

    @property
    def message(self) -> str:
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def _child(func, args, err_path: str, out_path: str) -> None:
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(err, 2)
    os.dup2(out, 1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    code = 0
    try:
        import torch

        torch.set_num_threads(1)
        _fresh_dask_pools()
        code = func(*args)
        code = int(code or 0)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - that is what a crash is
        traceback.print_exc()
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fresh_dask_pools() -> None:
    """A forked child inherits dask's thread pools without their threads: start new ones."""
    import threading

    try:
        import dask.threaded as dt
    except ImportError:  # pragma: no cover
        return
    dt.default_pool = None
    dt.pools.clear()
    dt.main_thread = threading.current_thread()
    dt.pools_lock = threading.Lock()


def classify(code: int | None, stderr: str) -> str:
    if code is None:
        return HANG
    if "Traceback (most recent call last)" in stderr:
        return CRASH
    if code == 0:
        return OK
    # ours: "napari-medseg: error: ..."; argparse's: a usage line, then "napari-medseg CMD: error: ..."
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("napari-medseg") and ": error: " in ln]
    if code == 2 and len(errors) == 1 and lines[-1] == errors[0]:
        return CLEAR
    return CRASH


def run_probe(func, *args, timeout: float = 10.0, workdir: str | os.PathLike | None = None) -> Outcome:
    """Run ``func(*args)`` in a forked child; ``func`` returns an exit code (like ``cli.main``)."""
    import tempfile
    import time

    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        err, out = os.path.join(tmp, "stderr"), os.path.join(tmp, "stdout")
        proc = ctx.Process(target=_child, args=(func, args, err, out), daemon=True)
        t0 = time.perf_counter()
        proc.start()
        proc.join(timeout)
        code = proc.exitcode
        if proc.is_alive():
            proc.kill()
            proc.join()
            code = None
        seconds = time.perf_counter() - t0
        stderr = Path(err).read_text(errors="replace") if os.path.exists(err) else ""
    return Outcome(classify(code, stderr), code, stderr, seconds)


def cli(*argv: str) -> int:
    """``napari-medseg ARGV`` in this process (for :func:`run_probe`)."""
    from ..cli import main

    return main([str(a) for a in argv])


def snapshot(*paths: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders), to prove nothing was lost."""
    out = {}
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        for f in files:
            out[str(f)] = _digest(f)
    return out


def _digest(f: Path, whole_up_to: int = 256 * 2**20) -> str:
    """sha256 of the file; past ``whole_up_to`` bytes (sparse test giants), of its size, mtime and ends."""
    h = hashlib.sha256()
    st = f.stat()
    with open(f, "rb") as fh:
        if st.st_size <= whole_up_to:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(repr((st.st_size, st.st_mtime_ns)).encode())
            h.update(fh.read(1 << 20))
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def lost(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files of ``before`` that are gone or changed in ``after``."""
    return [f for f, h in before.items() if after.get(f) != h]
