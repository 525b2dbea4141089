"""Retake docs/images/box_real_instances.png: the Box-supervised training widget on a real
16-bit fluorescence image (stardist's bundled nuclei), boxes on its left half, two Stage-1
rounds, then Predict with touching nuclei split into instances.

    xvfb-run -a .venv/bin/python docs/scripts/box_real_screenshot.py

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


def main() -> None:
    from skimage.io import imsave

    from napari_medseg.bench.box_iterative_real import nuclei, split_halves
    from napari_medseg.methods.box_iterative.boxes import boxes_to_shapes

    image, mask = nuclei()
    boxes, left, _ = split_halves(mask)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.add_image(image, name="nuclei (16-bit)", colormap="gray")
    viewer.add_image(image[:, left], name="left half", colormap="gray", visible=False)
    viewer.add_shapes(boxes_to_shapes(boxes), shape_type="rectangle", name="boxes (left half)", edge_color="yellow",
                      face_color="transparent", edge_width=1.5)
    w = dock_wide(viewer, "Box-supervised training", 460)
    c = w.controller
    c.set(image=viewer.layers["left half"], boxes=viewer.layers["boxes (left half)"], steps=60, patch=128,
          batch_size=4, rounds1=2)
    c.stage1(rounds=2, block=True)
    c.set(predict_image=viewer.layers["nuclei (16-bit)"])
    result = c.predict(block=True)
    for lay in viewer.layers:
        lay.visible = lay.name in ("nuclei (16-bit)", "boxes (left half)", result.name)
    result.contour = 0
    result.opacity = 0.55
    viewer.reset_view()
    wait(500)
    imsave(OUT / "box_real_instances.png", viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print("wrote", OUT / "box_real_instances.png", "-", c.message)
    viewer.close()


if __name__ == "__main__":
    main()
