"""The demo step of the adversarial segmentation dock (Chen et al. 2019): the shipped model on the sample, no training."""

from __future__ import annotations

from pathlib import Path

from ..demo import _only, _screenshot, _settle
from ._view import _show_slice


def run(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Adversarial segmentation (Chen et al. 2019): the cardiac sample's patient P1 mapped by
    name, its LGE segmented by the shipped model, Dice against the sample's LGE labels."""
    from ..methods.adversarial_segmentation.sample import cardiac_sample

    c = widgets["Adversarial segmentation"].controller
    _only(viewer, cardiac_sample())
    c.map_patient("P1")
    layer = c.predict(block=True)
    _show_slice(viewer, layer)
    _settle(app)
    dice = (layer.metadata.get("medseg") or {}).get("dice") or {}
    return {"method": "adversarial segmentation with weak domain transfer (Chen et al. 2019)",
            "model": c.model_entry().label, "labels_layer": layer.name, "dice": {k: float(v) for k, v in dice.items()},
            "screenshots": [_screenshot(viewer, out / "adversarial-1-lge-segmented.png")]}
