"""Retake docs/images/adversarial_*.png: the Adversarial segmentation widget (Chen et al.
2019) on the cardiac MR phantom sample.

    xvfb-run -a .venv/bin/python docs/scripts/adversarial_screenshots.py [STEPS]

Maps patient P1 (LGE truth as validation labels) and P2 (no LGE labels), adds phantom
patients, trains "adversarial + weak transfer" for STEPS iterations (default 240, half
of them pre-training; lr 1e-3 so that a short CPU run learns something), and predicts P2's
LGE. Uses a throwaway NAPARI_MEDSEG_HOME, so nothing it writes touches your own results.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
import numpy as np  # noqa: E402
from _shots import dock_wide, wait  # noqa: E402  (docs/scripts/_shots.py)

OUT = Path(__file__).resolve().parents[1] / "images"
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 240
MID_MM = 40.0  # a mid-ventricular position along the long axis (the sample spans about 5-95 mm)
PANEL = 360  # pixels per panel in the stitched figures


def shot(viewer, name: str) -> None:
    from skimage.io import imsave

    wait(400)
    imsave(OUT / name, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print("wrote", OUT / name)


def panel(viewer, visible, title: str) -> np.ndarray:
    """The canvas with only the ``visible`` layers, cropped to the image and titled."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    for lay in viewer.layers:
        lay.visible = lay.name in visible
    viewer.reset_view()
    wait(300)
    img = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3]
    h, w = img.shape[:2]
    side = int(min(h, w) * 0.96)
    y0, x0 = (h - side) // 2, (w - side) // 2
    pil = PILImage.fromarray(img[y0:y0 + side, x0:x0 + side]).resize((PANEL, PANEL), PILImage.LANCZOS)
    ImageDraw.Draw(pil).text((8, 6), title, fill=(255, 255, 255))
    return np.asarray(pil)


def stitch(viewer, name: str, panels) -> None:
    from skimage.io import imsave

    tiles = [panel(viewer, visible, title) for visible, title in panels]
    gap = np.full((PANEL, 6, 3), 40, np.uint8)
    row = np.concatenate([t if i == 0 else np.concatenate([gap, t], 1) for i, t in enumerate(tiles)], 1)
    imsave(OUT / name, row, check_contrast=False)
    print("wrote", OUT / name)


def main() -> None:
    import torch

    torch.set_num_threads(2)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "cardiac_sequences")
    w = dock_wide(viewer, "Adversarial segmentation", 480)
    c = w.controller
    layers = viewer.layers
    w.patient.value = "P1"
    viewer.dims.set_point(0, MID_MM)

    # the three sequences of one patient at the same long-axis position, with the labels that exist
    stitch(viewer, "adversarial_sequences.png", [
        (("P1 bSSFP", "P1 bSSFP labels"), "P1 bSSFP + expert labels"),
        (("P1 T2", "P1 T2 labels"), "P1 T2 + expert labels"),
        (("P1 LGE",), "P1 LGE (target, no labels)")])

    # the pseudo-masks that weak transfer puts on the LGE slices, next to the truth
    c.show_pseudo_masks()
    stitch(viewer, "adversarial_pseudo_masks.png", [
        (("P1 LGE", "P1 LGE pseudo-masks from bSSFP"), "LGE + pseudo-mask from bSSFP"),
        (("P1 LGE", "P1 LGE pseudo-masks from T2"), "LGE + pseudo-mask from T2"),
        (("P1 LGE", "P1 LGE truth (for checking only)"), "LGE + truth (checking only)")])

    # a cohort: P1 (validated on its LGE truth), P2 (no LGE labels), four phantom patients
    c.add_patient()
    w.patient.value = "P2"
    c.set(lge_labels=None)
    c.add_patient()
    c.set(phantoms=4, steps=STEPS, pretrain_steps=STEPS // 2, batch_size=4, lr=1e-3, size=0)
    for lay in layers:
        lay.visible = lay.name in ("P1 LGE", "P1 LGE pseudo-masks from bSSFP")
    c.listeners.append(lambda kind, m=None: print(f"step {m['step']}/{STEPS}", flush=True)
                       if kind == "progress" and m["step"] % 20 == 0 else None)
    c.train(block=True)
    print(c.message)
    c.set(predict_image=layers["P2 LGE"])
    labels = c.predict(block=True)
    print(c.message)
    for lay in layers:
        lay.visible = lay.name in ("P2 LGE", labels.name)
    viewer.reset_view()
    w.scroll.verticalScrollBar().setValue(0)
    shot(viewer, "adversarial_dock.png")
    w.scroll.ensureWidgetVisible(w.dice_plot, 0, 0)
    shot(viewer, "adversarial_training.png")

    stitch(viewer, "adversarial_predicted.png", [
        (("P2 LGE",), "P2 LGE (not trained on with labels)"),
        (("P2 LGE", labels.name), f"P2 LGE + prediction ({labels.name.split('[')[1][:-1]})"),
        (("P2 LGE", "P2 LGE truth (for checking only)"), "P2 LGE + truth (checking only)")])
    viewer.close()


if __name__ == "__main__":
    main()
