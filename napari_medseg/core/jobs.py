"""Long operations as generators of :class:`Progress`, stoppable between steps.

A job function is a plain generator: it yields ``Progress(step, total, message,
metrics)`` and ``return``s its result. The same generator runs under the widgets'
shared runner (napari ``thread_worker``), in the napari console, and in the CLI
(:func:`run_in_terminal`). Stopping closes the generator at its current ``yield``, so
its ``finally`` blocks run (training jobs keep their best checkpoint that way).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

ProgressGen = Generator["Progress", None, Any]


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


class Job:
    """Drive a progress generator; :meth:`stop` (from any thread) ends it between steps.

    Iterate it to run it. Afterwards ``result`` holds the generator's return value
    (``None`` when stopped), ``stopped`` tells whether the user stopped it and
    ``last`` is the last progress report.
    """

    def __init__(self, gen: ProgressGen):
        self._gen = gen
        self._stop = threading.Event()
        self.result: Any = None
        self.last: Progress | None = None
        self.stopped = False
        self.finished = False

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[Progress]:
        try:
            while True:
                if self._stop.is_set():
                    self.stopped = True
                    return
                try:
                    report = next(self._gen)
                except StopIteration as done:
                    self.result = done.value
                    self.finished = True
                    return
                self.last = report
                yield report
        finally:
            self._gen.close()

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> Any:
        for report in self:
            if on_progress is not None:
                on_progress(report)
        return self.result


def run_in_terminal(gen: ProgressGen, desc: str = "", stream=None) -> Any:
    """Run a job with a terminal progress bar; Ctrl+C stops it cleanly."""
    from tqdm.auto import tqdm

    from . import distributed

    job = Job(gen)
    # under torchrun only rank 0 draws the bar
    bar = tqdm(total=None, desc=desc, file=stream or sys.stderr, dynamic_ncols=True, leave=True,
               disable=not distributed.is_main())
    try:
        for p in job:
            if bar.total != p.total:
                bar.total = p.total
            bar.n = p.step
            post = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in p.metrics.items()
                    if isinstance(v, (int, float, str))}
            bar.set_description(f"{desc} {p.message}".strip(), refresh=False)
            bar.set_postfix(post, refresh=False)
            bar.refresh()
    except KeyboardInterrupt:
        job.stop()
        # closing the generator runs its cleanup (e.g. keep the best checkpoint)
        job._gen.close()
        job.stopped = True
    finally:
        bar.close()
    return job


def collect(gen: ProgressGen) -> tuple[list[Progress], Any]:
    """Run a job to the end and return (all progress reports, result)."""
    job = Job(gen)
    reports = list(job)
    return reports, job.result
