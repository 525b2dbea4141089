"""How late a Qt timer fires in a napari viewer while a CPU training job runs.

The job is a real U-Net training loop run through the widgets' shared
:class:`~napari_medseg.widgets._runner.JobRunner` (napari ``thread_worker``). A 10 ms
``QTimer`` records how much later than due each tick arrives; the same measurement
with no job running is the baseline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

TICK_MS = 10


def _training_job(stop_after_s: float):
    import torch

    from ..core import nets
    from ..core.training import train_supervised

    torch.manual_seed(0)
    model = nets.build(nets.bench_unet_arch())
    g = torch.Generator().manual_seed(0)

    def batch(_step):
        x = torch.rand((4, 1, 192, 192), generator=g)
        return x, (x > 0.5).long()

    loss = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for p in train_supervised(model, batch, lambda out, y: loss(out, y[:, 0]), steps=100000):
        yield p
        if time.perf_counter() - t0 > stop_after_s:
            return


def _lateness(app, seconds: float) -> np.ndarray:
    from qtpy.QtCore import QEventLoop, QTimer

    delays, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        delays.append(max(0.0, (now - last[0]) * 1000 - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    last[0] = time.perf_counter()
    timer.start()
    loop.exec()
    timer.stop()
    return np.asarray(delays[1:])


def measure(seconds: float = 6.0) -> dict:
    import napari
    from qtpy.QtWidgets import QApplication

    from ..widgets._runner import JobRunner

    viewer = napari.Viewer(show=True)
    viewer.add_image(np.random.default_rng(0).random((512, 512)), name="noise")
    runner = JobRunner()
    viewer.window.add_dock_widget(runner, name="job")
    app = QApplication.instance()
    idle = _lateness(app, min(2.0, seconds / 2))
    steps = []
    runner.start(_training_job(seconds + 60), on_progress=lambda p: steps.append(p.step))
    t0 = time.perf_counter()
    while not steps and time.perf_counter() - t0 < 60:  # measure once training is under way
        app.processEvents()
        time.sleep(0.005)
    first = len(steps)
    busy = _lateness(app, seconds)
    trained = len(steps) - first
    runner.stop()
    t0 = time.perf_counter()
    while runner.running and time.perf_counter() - t0 < 30:
        app.processEvents()
        time.sleep(0.01)
    viewer.close()
    return {
        "gui_event_latency_ms_p95": float(np.percentile(busy, 95)),
        "gui_event_latency_ms_max": float(busy.max()),
        "gui_event_latency_ms_p95_idle": float(np.percentile(idle, 95)),
        "gui_training_steps_during_measurement": trained,
    }


def measure_in_subprocess(seconds: float = 6.0) -> dict:
    """Run :func:`measure` in a child process, under Xvfb when there is no display."""
    cmd = [sys.executable, "-m", "napari_medseg.bench.gui_latency", str(seconds)]
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if shutil.which("xvfb-run") is None:
            return {"gui_event_latency_ms_p95": None, "gui_event_latency_note": "no display and no xvfb-run"}
        cmd = ["xvfb-run", "-a", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"GUI latency measurement failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 6.0)))
