"""Retake docs/images/staining_*.png: the Confocal digital staining widget on the sample pair.

    xvfb-run -a .venv/bin/python docs/scripts/staining_screenshots.py

Uses a throwaway NAPARI_MEDSEG_HOME, so nothing it writes touches your own results.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
from _shots import dock_wide, wait  # noqa: E402  (docs/scripts/_shots.py)

OUT = Path(__file__).resolve().parents[1] / "images"
TRUTH = "H&E (the truth the pair was derived from)"


def shot(viewer, name: str, canvas_only: bool = False) -> None:
    from skimage.io import imsave

    wait(400)
    imsave(OUT / name, viewer.screenshot(canvas_only=canvas_only, flash=False), check_contrast=False)
    print("wrote", OUT / name)


def show_only(viewer, *layers) -> None:
    for lay in viewer.layers:
        lay.visible = False
    wait(100)
    for lay in layers:  # napari 0.9.2 draws a multiscale RGB layer once its visibility changes
        lay.visible = True


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "confocal_pair")
    w = dock_wide(viewer, "Confocal digital staining", 480)
    c = w.controller
    layers = viewer.layers
    w.fcm.value, w.rcm.value = layers["FCM (nuclei)"], layers["RCM (reflectance)"]
    w.preview_size.value, w.tile.value = 512, 512
    viewer.camera.center, viewer.camera.zoom = (640, 420), 2.0
    c.preview(block=True)
    shot(viewer, "staining_dock.png")
    c.set(despeckle=False, cyclegan=False)
    w.despeckle.value = w.cyclegan.value = False
    gareau = c.stain(block=True)
    w.despeckle.value = w.cyclegan.value = True
    full = c.stain(block=True)
    for name, layer_list in [("staining_before.png", [layers["FCM (nuclei)"], layers["RCM (reflectance)"]]),
                             ("staining_gareau.png", [gareau]), ("staining_after.png", [full]),
                             ("staining_truth.png", [layers[TRUTH]])]:
        show_only(viewer, *layer_list)
        shot(viewer, name, canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    main()
