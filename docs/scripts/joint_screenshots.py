"""Retake docs/images/joint_*.png: the Joint lesion + tissue widget on the brain phantom
sample and on the MNI152 template with synthetic lesions.

    xvfb-run -a .venv/bin/python docs/scripts/joint_screenshots.py

Uses a throwaway NAPARI_MEDSEG_HOME, so nothing it writes touches your own results.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
import numpy as np  # noqa: E402
from _shots import dock_wide, wait  # noqa: E402  (docs/scripts/_shots.py)

OUT = Path(__file__).resolve().parents[1] / "images"


def shot(viewer, name: str, canvas_only: bool = False) -> None:
    from skimage.io import imsave

    wait(400)
    imsave(OUT / name, viewer.screenshot(canvas_only=canvas_only, flash=False), check_contrast=False)
    print("wrote", OUT / name)


def axial(viewer, layer) -> None:
    """Axial slices (array axis 2 sliced), the middle one, anterior up."""
    viewer.dims.order = (2, 1, 0)
    viewer.dims.set_point(2, float(layer.data.shape[2] // 2 * layer.scale[2] + layer.translate[2]))
    viewer.reset_view()
    viewer.camera.angles = (0.0, 0.0, 180.0)  # radiological-ish: y (anterior) up


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "brain_phantom")
    w = dock_wide(viewer, "Joint lesion + tissue", 480)
    c = w.controller
    layers = viewer.layers
    w.t1.value, w.flair.value = layers["T1"], layers["FLAIR"]
    axial(viewer, layers["T1"])
    labels = c.segment(block=True)
    shot(viewer, "joint_dock.png")
    for lay in layers:
        lay.visible = lay.name in ("FLAIR", labels.name)
    shot(viewer, "joint_flair_labels.png", canvas_only=True)
    for lay in layers:
        lay.visible = lay.name in ("T1", "true labels")
    shot(viewer, "joint_truth.png", canvas_only=True)
    # correct one slab with the true labels, retrain for a few steps
    edited = np.array(labels.data)
    mid = edited.shape[2] // 2
    edited[:, :, mid - 3:mid + 3] = layers["true labels"].data[:, :, mid - 3:mid + 3]
    labels.data = edited
    c.set(retrain_steps=10)
    c.retrain(block=True)
    for lay in layers:
        lay.visible = lay.name in ("T1", labels.name)
    shot(viewer, "joint_retrained.png")

    # the real template: T1 only, then T1 + FLAIR
    for lay in list(layers):
        layers.remove(lay)
    viewer.open_sample("napari-medseg", "mni_lesions")
    c.rollback()  # back to the shipped current version
    w.t1.value, w.flair.value, w.mask.value = layers["T1"], layers["FLAIR"], layers["brain mask"]
    axial(viewer, layers["T1"])
    mni = c.segment(block=True)
    shot(viewer, "joint_mni_dock.png")
    for lay in layers:
        lay.visible = lay.name in ("T1", mni.name)
    shot(viewer, "joint_mni.png", canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    main()
