"""Retake docs/images/models.png: the Model manager with a shipped and a retrained tissue
version, the older one selected (its card shown), and the bioimage.io export controls.

    xvfb-run -a .venv/bin/python docs/scripts/models_screenshot.py

Uses a throwaway NAPARI_MEDSEG_HOME, so nothing it writes touches your own models.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
from _shots import wait  # noqa: E402  (docs/scripts/_shots.py)

OUT = Path(__file__).resolve().parents[1] / "images"


def main() -> None:
    from skimage.io import imsave

    from napari_medseg.core.jobs import collect
    from napari_medseg.core.registry import Registry
    from napari_medseg.methods.tissue import train_tissue

    reg = Registry()
    collect(train_tissue(reg, steps=4, patch=128, batch_size=2, slide_size=512))  # a user version v2
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "synthetic_slide")
    w = viewer.window.add_plugin_dock_widget("napari-medseg", "Model manager")[1]  # a magicgui Container
    w.select("tissue", 1)
    w.package.value = Path(os.environ["NAPARI_MEDSEG_HOME"]) / "tissue_v1.zip"
    wait(600)
    viewer.reset_view()
    wait(300)
    imsave(OUT / "models.png", viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print("wrote", OUT / "models.png")
    viewer.close()


if __name__ == "__main__":
    main()
