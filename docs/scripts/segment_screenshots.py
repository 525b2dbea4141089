"""Retake docs/images/segment-widget.png: the Segment dock after one retraining round on the
sample slide (run at level 1, the missed tissue painted from the sample's truth, retrain).

    xvfb-run -a .venv/bin/python docs/scripts/segment_screenshots.py [retrain steps]

Uses a throwaway NAPARI_MEDSEG_HOME, so the version it trains never touches your own.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ["NAPARI_MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg-shots-")

import napari  # noqa: E402
import numpy as np  # noqa: E402
from _shots import dock_wide, shot  # noqa: E402  (docs/scripts/_shots.py)

from pathlib import Path  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images"


def main(steps: int = 60) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-medseg", "synthetic_slide")
    w = dock_wide(viewer, "Segment", 420)
    c = w.controller
    slide, truth = viewer.layers["synthetic slide"], viewer.layers["tissue ground truth"]
    # through the dock's own controls, so that the screenshot shows what was used
    w.image.value, w.model.value, w.level.value = slide, "tissue", 1
    first = c.run(block=True)
    first.data = np.asarray(truth.data[1]).astype(first.data.dtype)  # the corrections: the missed tissue painted
    w.labels.value, w.steps.value = first, steps
    c.retrain(block=True)
    second = c.run(block=True)
    first.visible = False
    viewer.reset_view()
    print(c.rounds_text(), "|", c.message)
    shot(viewer, OUT / "segment-widget.png")
    viewer.close()
    return second


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
