"""Retake docs/images/transfer_*.png: the Modality transfer widget on the brain tumour
sample: a FLAIR source SegAN trained on phantom subjects, transferred to T2 (full, critic
frozen, from scratch), compared in the table and side by side.

    xvfb-run -a .venv/bin/python docs/scripts/transfer_screenshots.py [SOURCE_STEPS STEPS_PER_MODE]

Uses a throwaway NAPARI_MEDSEG_HOME, so nothing it writes touches your own results. Short
runs on a CPU (a few minutes): the numbers in the pictures are not benchmark figures.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _shots import dock_wide, wait  # noqa: E402  (docs/scripts/_shots.py)

OUT = Path(__file__).resolve().parents[1] / "images"
SOURCE_STEPS, STEPS = (int(v) for v in sys.argv[1:3]) if len(sys.argv) > 2 else (200, 80)


def shot(viewer, name: str, canvas_only: bool = False) -> None:
    from skimage.io import imsave

    wait(500)
    imsave(OUT / name, viewer.screenshot(canvas_only=canvas_only, flash=False), check_contrast=False)
    print("wrote", OUT / name, flush=True)


def scroll_to(w, widget) -> None:
    w.scroll.ensureWidgetVisible(getattr(widget, "native", widget), 0, 0)
    wait(200)


def main() -> None:
    torch.set_num_threads(2)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "brain_tumour")
    w = dock_wide(viewer, "Modality transfer", 480)
    c, L = w.controller, viewer.layers

    # the sample: sub-01 FLAIR with its tumour, on the slice with the most tumour
    L["sub-01 tumour"].contour = 1
    mask = L["sub-01 tumour"].data
    viewer.dims.set_point(0, float(np.argmax(mask.sum(axis=(1, 2))) * L["sub-01 tumour"].scale[0]))
    viewer.reset_view()
    shot(viewer, "transfer_sample.png", canvas_only=True)
    L["sub-01 tumour"].contour = 0

    # 1. a FLAIR source model on phantom subjects (the sample's subjects stay for the target)
    w.source_modality.value, w.phantom_subjects.value, w.source_steps.value = "FLAIR", 6, SOURCE_STEPS
    w.critic_input.value = "concat"
    c.train_source(block=True)
    print(c.message, flush=True)
    scroll_to(w, w.source_info)
    shot(viewer, "transfer_source.png")

    # 2. transfer to T2: sub-01 and sub-04 train, sub-02 validates, sub-03 is the test set and the display
    w.target_modality.value = "T2"
    w.target_images.value = [L[f"sub-0{i} T2"] for i in range(1, 5)]
    w.target_labels.value = [L[f"sub-0{i} tumour"] for i in range(1, 5)]
    w.split.value = "layers"
    w.held_out.value = [L["sub-02 T2"], L["sub-03 T2"]]
    w.show_on.value = L["sub-03 T2"]
    w.steps.value, w.scratch.value = STEPS, True
    c.compare(block=True)
    print(c.message, flush=True)
    for lay in L:
        lay.visible = lay.name in ("sub-03 T2", "sub-03 T2 [critic frozen v2]")
    viewer.reset_view()
    scroll_to(w, w.side)
    shot(viewer, "transfer_dock.png")

    # 3. side by side: truth, source only, full, critic frozen, scratch (dock and layer list hidden)
    w.side.value = True
    qdock = w.parent()
    while not hasattr(qdock, "setFloating"):
        qdock = qdock.parent()
    qdock.hide()
    viewer.window._qt_viewer.dockLayerList.hide()
    viewer.window._qt_viewer.dockLayerControls.hide()
    viewer.canvas.grid.shape = (2, 3)
    viewer.window._qt_window.resize(1500, 900)
    wait(500)
    viewer.reset_view()
    shot(viewer, "transfer_side_by_side.png", canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    main()
