"""The one job runner every widget uses: progress bar, Stop button, live metrics.

It runs an engine generator (see ``napari_medseg.core.jobs``) in napari's
``thread_worker``; the console and the CLI run the very same generator. Every job
also reports to napari's Activity dock (a ``napari.utils.progress`` per job), so a long
training or whole-slide run can be followed with the dock closed.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

from napari.qt.threading import create_worker
from napari.utils import progress as activity_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.errors import MedsegError
from ..core.jobs import Job, Progress

log = logging.getLogger("napari_medseg")


def _format_metrics(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return "   ".join(parts)


class JobRunner(QWidget):
    """Progress bar + Stop + metrics readout for one job at a time."""

    finished = Signal(object)  # the job's return value (None if stopped or failed)
    failed = Signal(object)  # the exception a job raised (shown, logged; the dock stays usable)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.stop_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.metrics)
        self.job: Job | None = None
        self.worker = None
        self.history: list[Progress] = []
        self.activity = None  # the running job's entry in napari's Activity dock
        self._latest: Progress | None = None
        self._activity_pending = False
        self._activity_described = -1e9  # when the Activity entry last got a new description

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, gen, on_done: Callable | None = None, on_progress: Callable[[Progress], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None, title: str | None = None):
        """Run ``gen`` (a progress generator) in a worker thread. ``on_done(result)`` runs when it
        ends or is stopped (result None), ``on_error(exc)`` when it raised; ``title`` names
        the job in the Activity dock (default: the dock's title)."""
        if self.running:
            show_info("A job is already running; press Stop first.")
            return None
        self.job = job = Job(gen)
        self.history = []
        self._close_activity()
        self._activity_title = title or self._title()
        self.activity = activity_progress(total=0, desc=self._activity_title)
        self._activity_described = -1e9

        def work():
            # every exception is caught here and handed back as a value: superqt treats a
            # RuntimeError escaping a worker (torch OOM and CUDA errors are RuntimeErrors)
            # as an aborted thread and emits neither errored nor finished, wedging the dock
            try:
                for report in job:
                    yield report
            except BaseException as exc:  # noqa: BLE001 - reported in the dock, logged in full
                return _Failed(exc, traceback.format_exc())
            return job.result

        worker = create_worker(work, _start_thread=False, _ignore_errors=True)  # errors: _on_error
        worker.yielded.connect(self._on_progress)
        if on_progress is not None:
            worker.yielded.connect(on_progress)
        worker.returned.connect(lambda result: self._on_done(result, on_done, on_error))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._cleanup)
        self.worker = worker
        self.stop_button.setEnabled(True)
        self.status.setText("running…")
        worker.start()
        return worker

    def stop(self):
        if self.job is not None:
            self.job.stop()
            self.status.setText("stopping after this step…")

    def _title(self) -> str:
        w = self.parentWidget()
        while w is not None and not w.windowTitle():
            w = w.parentWidget()
        title = w.windowTitle().replace(" (napari-medseg)", "") if w is not None else ""
        return f"napari-medseg: {title}" if title else "napari-medseg job"

    def _report_activity(self):
        """Mirror the latest report in the Activity dock, from the event loop rather than
        inside the report's own slot: napari's progress may process pending events while it
        redraws, so a newer report can be handled in the middle of an older one. Each write
        checks that its report is still the latest; the newer one's own call does the rest."""
        self._activity_pending = False
        bar, p = self.activity, self._latest
        if bar is None or p is None:
            return
        # napari redraws the Activity dock on each new description (~0.1 s here): at most
        # two a second; the bar's count follows every report
        now = time.monotonic()
        describe = bool(p.message) and now - self._activity_described >= 0.5
        if describe:
            self._activity_described = now
        updates = (lambda: bar.set_description(f"{self._activity_title} — {p.message}") if describe else None,
                   lambda: setattr(bar, "total", max(0, p.total)) if bar.total != max(0, p.total) else None,
                   lambda: bar.update(p.step - bar.n) if p.step != bar.n else None)
        for update in updates:
            if self.activity is not bar or self._latest is not p:
                return
            update()

    def _close_activity(self):
        if self.activity is not None:
            self.activity.close()
            self.activity = None

    def _on_progress(self, p: Progress):
        self._latest = p
        self.history.append(p)
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.step)
        self.status.setText(p.message)
        self.metrics.setText(_format_metrics(p.metrics))
        if not self._activity_pending:
            self._activity_pending = True
            QTimer.singleShot(0, self._report_activity)

    def _on_done(self, result, on_done, on_error=None):
        if isinstance(result, _Failed):
            log.error("napari-medseg job failed:\n%s", result.trace)
            self._on_error(result.exc)
            if on_error is not None:
                on_error(result.exc)
            self.failed.emit(result.exc)
            self.finished.emit(None)
            return
        stopped = self.job is not None and self.job.stopped
        self.status.setText("stopped" if stopped else "done")
        if on_done is not None:
            on_done(result)
        self.finished.emit(result)

    def _on_error(self, exc: BaseException):
        msg = str(exc) if isinstance(exc, MedsegError) else f"{type(exc).__name__}: {exc}"
        if _out_of_memory(exc):
            msg += " Out of memory: try a smaller tile or batch size."
        self.status.setText(f"failed: {msg}")
        self._reset()
        show_error(msg)

    def _reset(self):
        self._close_activity()
        self.worker = None
        self.stop_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)

    def _cleanup(self):
        self._reset()


class _Failed:
    """What a job that raised hands back to the GUI thread."""

    def __init__(self, exc: BaseException, trace: str):
        self.exc, self.trace = exc, trace


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    from ..core.errors import MemoryPreflightError

    if isinstance(exc, MemoryPreflightError):
        return False  # its message already says what to change
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(exc).lower()
