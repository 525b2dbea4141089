"""The demo step of the modality transfer dock (Giacomello et al. 2020): the shipped model on the sample, no training."""

from __future__ import annotations

from pathlib import Path

from ..demo import _only, _screenshot, _settle
from ._view import _show_slice


def run(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Modality transfer (Giacomello et al. 2020): the tumour sample's FLAIR segmented by the
    shipped SegAN source model; Dice against the sample's whole-tumour labels."""
    import numpy as np

    from ..methods.modality_transfer.sample import tumour_sample
    from ..core import metrics

    c = widgets["Modality transfer"].controller
    added = _only(viewer, tumour_sample())
    c.set(predict_image=added["sub-01 FLAIR"], predict_name="segan_tumour", predict_version=None)
    layer = c.predict(block=True)
    truth = np.asarray(added["sub-01 tumour"].data) > 0
    dice = metrics.dice(np.asarray(layer.data) > 0, truth, True)
    _show_slice(viewer, layer, int(np.argmax(truth.sum(axis=(1, 2)))))
    _settle(app)
    return {"method": "SegAN modality transfer (Giacomello et al. 2020)", "labels_layer": layer.name, "dice": dice,
            "screenshots": [_screenshot(viewer, out / "transfer-1-flair-segmented.png")]}
