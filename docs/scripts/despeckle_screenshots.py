"""Retake docs/images/despeckle_*.png: the staining dock's Despeckle on the sample RCM layer.

    xvfb-run -a .venv/bin/python docs/scripts/despeckle_screenshots.py

Uses a throwaway NAPARI_MEDSEG_HOME, so nothing it writes touches your own results.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
from _shots import dock_wide, shot, wait  # noqa: E402  (docs/scripts/_shots.py)

OUT = Path(__file__).resolve().parents[1] / "images"


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "confocal_pair")
    w = dock_wide(viewer, "Confocal digital staining", 480)
    layers = viewer.layers
    rcm = layers["RCM (reflectance)"]
    for lay in layers:
        lay.visible = lay is rcm
    w.speckled.value, w.tile.value = rcm, 512
    out = w.controller.despeckle(block=True)
    viewer.camera.center, viewer.camera.zoom = (640, 420), 3.0
    rcm.visible = False
    shot(viewer, OUT / "despeckle_dock.png")
    for name, shown in (("despeckle_before.png", rcm), ("despeckle_after.png", out)):
        for lay in layers:
            lay.visible = False
        wait(100)
        shown.visible = True  # napari 0.9 draws a multiscale layer once its visibility changes
        shot(viewer, OUT / name, canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    main()
