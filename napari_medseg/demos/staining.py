"""The demo step of the Confocal digital staining dock (Combalia et al. 2019)."""

from __future__ import annotations

from pathlib import Path

from ..demo import _only, _screenshot, _settle
from ._view import _zoom_to


def run(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Confocal digital staining: the confocal-like sample pair, a preview of the field of
    view, then the whole sample slide with the shipped despeckler and CycleGAN; the colour
    distance of the result to the H&E the pair came from, against Gareau's stain alone."""
    import numpy as np

    from ..methods.staining.sample import confocal_sample
    from ..methods.staining.metrics import color_distance

    w = widgets["Confocal digital staining"]
    c = w.controller
    added = _only(viewer, confocal_sample())
    he = added["H&E (the truth the pair was derived from)"]
    c.set(fcm=added["FCM (nuclei)"], rcm=added["RCM (reflectance)"], preview_size=512, tile=512)
    _zoom_to(viewer, he.data.shape[:2])
    c.preview(block=True)
    shots = [_screenshot(viewer, out / "staining-1-preview.png")]
    stained = c.stain(block=True)
    for layer in viewer.layers:
        if layer is not stained:
            layer.visible = False
    # napari 0.9.2: a multiscale RGB layer can stay black after the layers around it are
    # hidden, until its own visibility is toggled
    stained.visible = False
    _settle(app, 0.2)
    stained.visible = True
    _settle(app)
    shots.append(_screenshot(viewer, out / "staining-2-whole-slide.png"))
    full = np.asarray(stained.data[0])
    c.set(despeckle=False, cyclegan=False)
    gareau = c.stain(block=True)
    gareau.visible = False
    return {
        "method": "confocal digital staining (Combalia et al. 2019)",
        "stained_layer": stained.name, "levels": len(stained.data),
        "color_distance_full_pipeline": color_distance(full, he.data),
        "color_distance_gareau_only": color_distance(np.asarray(gareau.data[0]), he.data),
        "screenshots": shots,
    }
