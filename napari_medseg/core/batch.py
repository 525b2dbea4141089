"""Folders of images, one task per image: in this process, or on a dask.distributed cluster.

``napari-medseg predict SLUG DIR --scheduler ADDR|local:N`` hands each image to a worker
as one task; the worker reads its own input and writes its own output, so no pixels pass
through the submitting process. A failed image is reported with its reason and the others
go on. Without a scheduler the same function runs here, image after image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .errors import InputError, MedsegError
from .jobs import Progress


def open_cluster(spec: str):
    """A dask.distributed ``Client``: ``local:N`` starts N one-thread worker processes on
    this machine (closed with the client, see :func:`close_cluster`); anything else is a
    scheduler address."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise InputError("--scheduler needs dask.distributed: pip install 'napari-medseg[distributed]'.") from exc
    if spec.startswith("local:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"--scheduler local:N takes a number of workers of at least 1, not {spec!r}.")
        return Client(LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None))
    return Client(spec)


def close_cluster(client, spec: str) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None and spec.startswith("local:"):
        cluster.close()


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, MedsegError) else f"{type(exc).__name__}: {exc}"


def _call(func, args):
    """Run one task on a worker: lazy reads compute there, not back on the cluster."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        return func(*args)


def run_files(func: Callable, tasks: Sequence[tuple[str, tuple]], client=None):
    """Generator (a job): ``func(*args)`` for each ``(name, args)`` in ``tasks``, here or one
    task each on ``client``'s workers. ``func`` must be importable by the workers (a
    module-level function) and returns what it wrote. Yields :class:`Progress` per
    finished image; returns ``[{"input", "output", "error"}]`` in the order given."""
    rows = {name: {"input": name, "output": None, "error": None} for name, _ in tasks}
    n = len(tasks)
    if client is None:
        for i, (name, args) in enumerate(tasks, 1):
            try:
                rows[name]["output"] = func(*args)
            except (MedsegError, OSError, ValueError) as exc:  # one image's failure, not the batch's
                rows[name]["error"] = _reason(exc)
            yield Progress(i, n, f"{name}: {'failed' if rows[name]['error'] else 'done'}")
        return [rows[name] for name, _ in tasks]
    from distributed import as_completed

    futures = {client.submit(_call, func, args, pure=False): name for name, args in tasks}
    try:
        for i, fut in enumerate(as_completed(futures), 1):
            name = futures[fut]
            try:
                rows[name]["output"] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker's failure is one image's failure
                rows[name]["error"] = _reason(exc)
            yield Progress(i, n, f"{name}: {'failed' if rows[name]['error'] else 'done'}")
    finally:
        for fut in futures:
            fut.cancel()
    return [rows[name] for name, _ in tasks]


def run_in_terminal_on(func: Callable, tasks: Sequence[tuple[str, tuple]], scheduler: str | None, desc: str):
    """:func:`run_files` with a terminal progress bar, here or on the cluster ``scheduler``
    names (opened and closed around the run). Returns ``(rows, failed, stopped)``."""
    from .jobs import run_in_terminal

    client = open_cluster(scheduler) if scheduler else None
    try:
        job = run_in_terminal(run_files(func, tasks, client), desc)
    finally:
        if client is not None:
            close_cluster(client, scheduler)
    rows = job.result or []
    return rows, [r for r in rows if r["error"]], job.stopped


def print_failures(failed: Sequence[dict]) -> None:
    import sys

    for r in failed:
        print(f"  {r['input']}: {r['error']}", file=sys.stderr)
