"""Retake docs/images/normalization_*.png: the Normalize across sites widget on the two-site
brain phantom sample (infant-like and adult-like sites).

    xvfb-run -a .venv/bin/python docs/scripts/normalization_screenshots.py [STEPS]

A short CPU training with the dock's defaults (adversarial, 2-D slices; STEPS, default 300), so
the images show what a short run does, not a converged model. One torch thread: on a small
shared CPU, more threads make these tiny convolutions many times slower. Uses a throwaway
NAPARI_MEDSEG_HOME, so nothing it writes touches your own results.
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


def shot(viewer, name: str, canvas_only: bool = False) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from skimage.io import imsave

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # the "Training ..." message would cover the canvas
    wait(400)
    imsave(OUT / name, viewer.screenshot(canvas_only=canvas_only, flash=False), check_contrast=False)
    print("wrote", OUT / name)


def grab(widget, name: str) -> None:
    wait(300)
    widget.grab().save(str(OUT / name))
    print("wrote", OUT / name)


def middle_slice(viewer) -> None:
    lay = viewer.layers["infant 1"]
    viewer.dims.set_point(0, float(lay.data.shape[0] // 2 * lay.scale[0]))


def main(steps: int) -> None:
    torch.set_num_threads(1)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "brain_sites")
    w = dock_wide(viewer, "Normalize across sites", 480)
    c = w.controller
    layers = viewer.layers
    middle_slice(viewer)

    # the two sites, raw, with their labels: one subject of each
    for lay in layers:
        lay.visible = lay.name in ("infant 1", "adult 1", "infant 1 labels", "adult 1 labels")
    grid = viewer.canvas.grid
    grid.stride, grid.shape, grid.enabled = 2, (1, 2), True
    viewer.reset_view()
    shot(viewer, "normalization_sites.png", canvas_only=True)
    grid.stride, grid.enabled = 1, False

    c.find_domains()
    c.set(steps=steps, warmup_steps=max(1, steps // 5), device="cpu")  # otherwise the dock's defaults
    t0 = time.monotonic()
    c.train(block=True)
    print(f"trained {steps} steps in {time.monotonic() - t0:.0f} s:", c.message)
    middle_slice(viewer)
    w.scroll.ensureWidgetVisible(w.dice_plot)
    w.scroll.horizontalScrollBar().setValue(0)
    shot(viewer, "normalization_dock.png")
    shot(viewer, "normalization_side_by_side.png", canvas_only=True)
    w.scroll.ensureWidgetVisible(w.segment_button.native)
    w.scroll.horizontalScrollBar().setValue(0)
    grab(w.hist_plot.parentWidget(), "normalization_histograms.png")

    c.set(apply_to=[layers["infant 3"], layers["adult 3"]])
    c.segment(block=True)
    print(c.message)
    grid.enabled = False
    for lay in layers:
        lay.visible = lay.name in ("infant 3", "infant 3 [segmented]")
    viewer.reset_view()
    shot(viewer, "normalization_segmented.png", canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
