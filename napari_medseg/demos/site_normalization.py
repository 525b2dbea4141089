"""The demo step of the site normalization dock (Delisle et al. 2019): the shipped model on the sample, no training."""

from __future__ import annotations

from pathlib import Path

from ..demo import _only, _screenshot, _settle
from ._view import _show_slice


def run(viewer, widgets, app, out: Path, steps: int) -> dict:
    """Normalize across sites (Delisle et al. 2019): the two-site sample's domains added
    (image layers with their labels), normalised by the shipped model (histograms and JSD before and after), then
    segmented."""
    from ..methods.site_normalization.sample import sites_sample

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
