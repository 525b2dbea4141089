"""Retake docs/images/box_*.png: the Box-supervised training widget on the kidney sample.

    xvfb-run -a .venv/bin/python docs/scripts/box_screenshots.py [steps per round]

Uses a throwaway NAPARI_MEDSEG_HOME, so the rounds it trains never touch your own
model versions.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
from _shots import dock_wide, wait  # noqa: E402  (docs/scripts/_shots.py)
import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images"


def shot(viewer, name: str, canvas_only: bool = False) -> None:
    from skimage.io import imsave

    wait(300)
    imsave(OUT / name, viewer.screenshot(canvas_only=canvas_only, flash=False), check_contrast=False)
    print("wrote", OUT / name)


def main(steps: int = 150, only_predicted: bool = False) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "synthetic_kidney")
    w = dock_wide(viewer, "Box-supervised training", 520)
    c = w.controller
    layers = viewer.layers
    if only_predicted:
        return predicted(viewer, c)
    # through the dock's own controls, so that the screenshot shows what was used
    w.image.value, w.boxes.value = layers["kidney A"], layers["kidney A boxes"]
    w.val_image.value, w.val_labels.value = layers["kidney validation"], layers["kidney validation labels"]
    w.steps.value, w.rounds1.value = steps, 3
    shot(viewer, "box_boxes.png")
    c.stage1(block=True)
    # round 1 (trained on the filled boxes) against round 3, as outlines, around a few glomeruli
    boxes = layers["kidney A boxes"].data
    centre = np.mean([np.mean(b, axis=0) for b in boxes if np.mean(b, axis=0)[0] > 500], axis=0)
    viewer.scene.camera.center, viewer.scene.camera.zoom = tuple(centre), 2.2
    for rnd in (1, 3):
        for lay in layers:
            lay.visible = lay.name in ("kidney A", "kidney A boxes", f"kidney A [stage 1 round {rnd}]")
        lab = layers[f"kidney A [stage 1 round {rnd}]"]
        lab.contour, lab.opacity = 3, 1.0
        shot(viewer, f"box_round{rnd}.png", canvas_only=True)
    viewer.reset_view()
    w.scroll.verticalScrollBar().setValue(w.scroll.verticalScrollBar().maximum())  # the rounds plot
    shot(viewer, "box_dock.png")
    predicted(viewer, c)


def predicted(viewer, c) -> None:
    layers = viewer.layers
    # the current shipped model (6 + 3 rounds on four hard slides) on the unlabelled slide, as instances
    from skimage.measure import regionprops

    from napari_medseg.methods.box_iterative.boxes import boxes_from_shapes
    from napari_medseg.methods.box_iterative.instances import expected_radius

    lay = layers["kidney A boxes"]  # the object radius, as from the Stage-1 boxes
    radius = expected_radius(boxes_from_shapes(lay.data, lay.shape_type, layers["kidney A"].data.shape[:2]).boxes)
    # the newest shipped version, not the rounds this script may have trained before (user versions)
    shipped = max(e.version for e in c.registry.list("glomeruli") if e.source == "shipped")
    print("glomeruli version:", shipped)
    c.set(predict_image=layers["kidney B (unlabelled)"], version=shipped, object_radius=radius)
    pred = c.predict(block=True)
    pred.contour, pred.opacity = 0, 0.45  # filled: one colour per instance
    for lay in layers:
        lay.visible = lay is pred or lay.name == "kidney B (unlabelled)"
    print("predicted layer:", pred.name, "objects:", int(np.asarray(pred.data).max()))
    centres = [r.centroid for r in regionprops(np.asarray(pred.data))]
    mid = np.array(pred.data.shape) / 2
    viewer.scene.camera.center = tuple(min(centres, key=lambda p: np.hypot(*(np.array(p) - mid))))
    viewer.scene.camera.zoom = 1.2
    viewer.layers.selection.active = pred
    pred.visible = False  # a fresh labels layer is drawn only after a redraw
    wait(500)
    pred.visible = True
    wait(1500)
    shot(viewer, "box_predicted.png", canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 150, "--only-predicted" in sys.argv)
