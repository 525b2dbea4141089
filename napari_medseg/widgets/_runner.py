"""The one job runner every widget uses: progress bar, Stop button, live metrics.

It runs an engine generator (see ``napari_medseg.core.jobs``) in napari's
``thread_worker``; the console and the CLI run the very same generator.
"""

from __future__ import annotations

from collections.abc import Callable

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.errors import MedsegError
from ..core.jobs import Job, Progress


def _format_metrics(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return "   ".join(parts)


class JobRunner(QWidget):
    """Progress bar + Stop + metrics readout for one job at a time."""

    finished = Signal(object)  # the job's return value (None if stopped)

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

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, gen, on_done: Callable | None = None, on_progress: Callable[[Progress], None] | None = None):
        """Run ``gen`` (a progress generator) in a worker thread."""
        if self.running:
            show_info("A job is already running; press Stop first.")
            return None
        self.job = job = Job(gen)
        self.history = []

        def work():
            for report in job:
                yield report
            return job.result

        worker = create_worker(work, _start_thread=False, _ignore_errors=True)  # errors: _on_error
        worker.yielded.connect(self._on_progress)
        if on_progress is not None:
            worker.yielded.connect(on_progress)
        worker.returned.connect(lambda result: self._on_done(result, on_done))
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

    def _on_progress(self, p: Progress):
        self.history.append(p)
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.step)
        self.status.setText(p.message)
        self.metrics.setText(_format_metrics(p.metrics))

    def _on_done(self, result, on_done):
        stopped = self.job is not None and self.job.stopped
        self.status.setText("stopped" if stopped else "done")
        if on_done is not None:
            on_done(result)
        self.finished.emit(result)

    def _on_error(self, exc: Exception):
        msg = str(exc) if isinstance(exc, MedsegError) else f"{type(exc).__name__}: {exc}"
        self.status.setText(f"failed: {msg}")
        show_error(msg)

    def _cleanup(self):
        self.worker = None
        self.stop_button.setEnabled(False)
