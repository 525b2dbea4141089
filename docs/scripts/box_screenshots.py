"""Retake docs/images/box_*.png: the Box-supervised training widget on the kidney sample.

    xvfb-run -a .venv/bin/python docs/scripts/box_screenshots.py [steps per round]

Uses a throwaway NAPARI_MEDSEG_HOME, so the rounds it trains never touch your own
model versions.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtWidgets import QApplication, QDockWidget  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images"


def wait(ms: int) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < ms / 1000:
        QApplication.processEvents()
        time.sleep(0.01)


def shot(viewer, name: str, canvas_only: bool = False) -> None:
    from skimage.io import imsave

    wait(300)
    imsave(OUT / name, viewer.screenshot(canvas_only=canvas_only, flash=False), check_contrast=False)
    print("wrote", OUT / name)


def main(steps: int = 150) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "synthetic_kidney")
    w = viewer.window.add_plugin_dock_widget("napari-medseg", "Box-supervised training")[1]
    qdock = w.parent()
    while not isinstance(qdock, QDockWidget):
        qdock = qdock.parent()
    viewer.window._qt_window.resizeDocks([qdock], [520], Qt.Orientation.Horizontal)
    c = w.controller
    layers = viewer.layers
    c.set(image=layers["kidney A"], boxes=layers["kidney A boxes"], val_image=layers["kidney validation"],
          val_labels=layers["kidney validation labels"], steps=steps, rounds1=3)
    w._from_settings()
    shot(viewer, "box_boxes.png")
    c.stage1(block=True)
    # compare round 1 (trained on the filled boxes) with round 3 on one corner of the slide
    viewer.camera.center, viewer.camera.zoom = (300, 300), 1.6
    for lay in layers:
        lay.visible = lay.name in ("kidney A", "kidney A boxes", "kidney A [stage 1 round 1]")
    shot(viewer, "box_round1.png", canvas_only=True)
    layers["kidney A [stage 1 round 1]"].visible = False
    layers["kidney A [stage 1 round 3]"].visible = True
    shot(viewer, "box_round3.png", canvas_only=True)
    viewer.reset_view()
    shot(viewer, "box_dock.png")
    viewer.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 150)
