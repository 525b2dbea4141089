"""The demo step of the Box-supervised training dock (Gupta et al. 2019)."""

from __future__ import annotations

from pathlib import Path

from ..demo import _screenshot
from ._view import _zoom_to


def run(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Box-supervised training: the kidney sample's boxes, two Stage-1 rounds, a correction
    of round 2 (the true outlines painted in, as a researcher would), one more round; then
    the model segments the unlabelled slide."""
    from ..methods.box_iterative.sample import kidney_sample

    w = widgets["Box-supervised training"]
    c = w.controller
    for layer in viewer.layers:
        layer.visible = False
    added = {kw["name"]: getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in kidney_sample()}
    slide, boxes = added["kidney A"], added["kidney A boxes"]
    slide.visible = boxes.visible = True
    c.set(image=slide, boxes=boxes, val_image=added["kidney validation"], val_labels=added["kidney validation labels"],
          steps=max(3, steps), rounds1=2)
    c.stage1(block=True)
    rounds = [lay for lay in viewer.layers if lay.name.startswith("kidney A [stage 1 round")]
    _zoom_to(viewer, slide.data.shape[:2])
    shots = [_screenshot(viewer, out / "box-1-two-rounds.png")]
    latest = rounds[-1]
    latest.data = added["kidney A true glomeruli"].data.astype(latest.data.dtype)  # the painted correction
    c.stage1(rounds=1, block=True)
    history = c.history()
    c.set(predict_image=added["kidney B (unlabelled)"])
    pred = c.predict(block=True)
    for layer in viewer.layers:
        layer.visible = layer is pred or layer.name == "kidney B (unlabelled)"
    shots.append(_screenshot(viewer, out / "box-2-predicted.png"))
    return {
        "method": "box-supervised training (Gupta et al. 2019)",
        "rounds": [{"stage": h["stage"], "round": h["round"], "version": h["version"],
                    "object_f1": h["metrics"].get("object_f1")} for h in history],
        "corrected_pixels": int(c.session.slides[1][0].fixed[0].sum()) if c.session.slides[1][0].fixed else 0,
        "predicted_layer": pred.name if pred is not None else None,
        "screenshots": shots,
    }
