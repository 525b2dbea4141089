"""A job that raises never wedges a dock: message shown, Stop reset, next job runs."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.core.errors import MemoryPreflightError
from napari_medseg.core.jobs import Progress

pytestmark = pytest.mark.gui


def _failing(exc):
    def gen():
        yield Progress(1, 3, "step 1/3")
        raise exc

    return gen()


def _fine():
    yield Progress(1, 1, "only step")
    return "result"


@pytest.mark.parametrize("exc, words", [
    (RuntimeError("CUDA error: an illegal memory access"), "RuntimeError: CUDA error"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "smaller tile or batch size"),
    (MemoryPreflightError("This inference job needs about 900 MiB"), "needs about 900 MiB"),
    (ValueError("bad value"), "ValueError: bad value"),
])
def test_a_failing_job_is_reported_and_the_runner_stays_usable(qtbot, monkeypatch, caplog, exc, words):
    from napari_medseg.widgets import _runner
    from napari_medseg.widgets._runner import JobRunner

    shown = []
    monkeypatch.setattr(_runner, "show_error", shown.append)
    runner = JobRunner()
    qtbot.addWidget(runner)
    errors = []
    with qtbot.waitSignal(runner.failed, timeout=10000):
        runner.start(_failing(exc), on_error=errors.append)
    qtbot.waitUntil(lambda: not runner.running, timeout=10000)
    assert errors == [exc] and len(shown) == 1 and words in shown[0]
    assert runner.status.text().startswith("failed:") and words in runner.status.text()
    assert not runner.stop_button.isEnabled() and runner.progress.value() == 0
    assert "job failed" in caplog.text and "Traceback" in caplog.text
    done = []
    with qtbot.waitSignal(runner.finished, timeout=10000):
        assert runner.start(_fine(), on_done=done.append) is not None
    assert done == ["result"] and runner.status.text() == "done"
