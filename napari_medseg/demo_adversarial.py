"""The headless demo's steps for the three adversarial docks: each runs the dock's own
controller on its sample data with the shipped model (no training) and takes a screenshot."""

from __future__ import annotations

from pathlib import Path

from .demo import _only, _screenshot, _settle


def _show_slice(viewer, layer, index: int | None = None) -> None:
    """Slice ``index`` (default the middle) of a (slices, H, W) layer, in napari's default axis
    order (an earlier demo step may have changed it), the slice filling the canvas
    (reset_view would also fit the hidden slide layers)."""
    viewer.dims.order = tuple(range(viewer.dims.ndim))
    if layer.ndim == 3:
        k = len(layer.data) // 2 if index is None else int(index)
        viewer.dims.set_point(0, float(k * layer.scale[0] + layer.translate[0]))
    if viewer.canvas.grid.enabled:
        viewer.reset_view()
        return
    (y0, x0), (y1, x1) = (layer.extent.world[0][-2:], layer.extent.world[1][-2:])
    ch, cw = viewer.screenshot(canvas_only=True, flash=False).shape[:2]
    viewer.camera.center = (0.0, (y0 + y1) / 2, (x0 + x1) / 2)
    viewer.camera.zoom = 0.95 * min(ch / max(y1 - y0, 1e-6), cw / max(x1 - x0, 1e-6))


def demo_adversarial_segmentation(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Adversarial segmentation (Chen et al. 2019): the cardiac sample's patient P1 mapped by
    name, its LGE segmented by the shipped model, Dice against the sample's LGE labels."""
    from ._sample_cardiac import cardiac_sample

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


def demo_modality_transfer(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Modality transfer (Giacomello et al. 2020): the tumour sample's FLAIR segmented by the
    shipped SegAN source model; Dice against the sample's whole-tumour labels."""
    import numpy as np

    from ._sample_tumour import tumour_sample
    from .core import metrics

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


def demo_site_normalization(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Normalize across sites (Delisle et al. 2019): the two-site sample's domains added
    (image layers with their labels), normalised by the shipped model (histograms and JSD before and after), then
    segmented."""
    from ._sample_sites import sites_sample

    c = widgets["Normalize across sites"].controller
    # the last step: the side-by-side grid shows this sample only. clear() is one batched
    # update; removing layers one by one makes napari collect garbage after each (0.5 s
    # apiece with torch loaded: 40 s of the demo)
    viewer.layers.clear()
    added = _only(viewer, sites_sample())
    domains = []
    for site in ("infant", "adult"):  # each site's image layers and their "<image> labels" layers
        images = [layer for name, layer in added.items() if name.startswith(site) and not name.endswith("labels")]
        domains.append(c.add_domain(site, images=images, labels=[added[f"{im.name} labels"] for im in images]))
    shown = c.normalize(block=True)
    _show_slice(viewer, shown[0])
    _settle(app)
    shots = [_screenshot(viewer, out / "normalization-1-side-by-side.png")]
    viewer.canvas.grid.enabled = False
    segmented = c.segment(block=True)
    return {"method": "adversarial normalization across sites (Delisle et al. 2019)",
            "domains": [d.name for d in domains], "normalized_layers": len(shown), "segmented_layers": len(segmented),
            "jsd": {k: (None if v is None else float(v)) for k, v in c.jsd.items()}, "screenshots": shots}
