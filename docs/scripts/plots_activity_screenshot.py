"""Take docs/images/training_plots_activity.png: a dock's training plots (pyqtgraph: labelled
axes, a legend with the latest values, Dice on a fixed 0-1 axis) while a job runs, with
napari's Activity dock open beside the canvas showing the same job.

    xvfb-run -a .venv/bin/python docs/scripts/plots_activity_screenshot.py [STEPS]

Trains the Normalize across sites dock on its two-site phantom sample for STEPS steps
(default 160) on one CPU thread and takes the picture two thirds of the way through.
Uses a throwaway NAPARI_MEDSEG_HOME, so nothing it writes touches your own models.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
import torch  # noqa: E402
from _shots import dock_wide, wait  # noqa: E402  (docs/scripts/_shots.py)

OUT = Path(__file__).resolve().parents[1] / "images"


def main(steps: int) -> None:
    from skimage.io import imsave

    torch.set_num_threads(1)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "brain_sites")
    w = dock_wide(viewer, "Normalize across sites", 520)
    c = w.controller
    c.find_domains()
    c.set(steps=steps, warmup_steps=max(1, steps // 5), device="cpu")
    c.train()  # in the background, as the Train button does
    viewer.window._qt_window._activity_dialog.show()
    t0 = time.monotonic()
    while c.runner.running and (not c.runner.history or c.runner.history[-1].step < 2 * steps // 3):
        wait(200)
        if time.monotonic() - t0 > 1800:
            raise SystemExit("training did not get far enough in 30 minutes")
    w.scroll.ensureWidgetVisible(w.dice_plot)
    w.scroll.horizontalScrollBar().setValue(0)
    wait(800)
    imsave(OUT / "training_plots_activity.png", viewer.screenshot(canvas_only=False, flash=False),
           check_contrast=False)
    print("wrote", OUT / "training_plots_activity.png")
    c.runner.stop()
    while c.runner.running:
        wait(200)
    viewer.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 160)
