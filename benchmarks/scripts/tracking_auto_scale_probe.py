"""Issue 15, item 2 (observation, nothing adopted): should the window scale follow the fibre
width measured at the start? Synthetic SI images (seeds 424242+, not the bench's) zoomed
×1/×4/×6/×8 so that the fibre is 1–8× as wide as in training; each traced from its start
and heading at scale 1 and at scale = max(1, FWHM / 8 px), 8 px being the widest fibre
(FWHM) the domain-randomised training draws. Coverage within 3 px × zoom."""
import json
import sys

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_medseg.methods.tracking import synthetic
from napari_medseg.methods.tracking.heading import fibre_width
from napari_medseg.methods.tracking.metrics import coverage
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.prepare import prepare_image
from napari_medseg.methods.tracking.track import TrackConfig, track

torch.set_num_threads(1)
policy, meta = load_tracker()
out = {"model": f"tracking v{meta.get('version')}", "rows": {}}
for zoom in (1, 4, 6, 8):
    rows = {"width_px": [], "scale_auto": [], "coverage_scale1": [], "coverage_auto": []}
    for i in range(12):
        im = synthetic.generate("SI", seed=424242 + i)
        img = prepare_image(ndi.zoom(im.image, zoom, order=1) if zoom > 1 else im.image)
        cl = im.centreline * zoom + (zoom - 1) / 2
        d = (cl[3] - cl[0]) / np.linalg.norm(cl[3] - cl[0])
        w = fibre_width(img, cl[0], d)
        auto = max(1.0, w / 8.0)
        for key, sc in (("coverage_scale1", 1.0), ("coverage_auto", auto)):
            tr = track(img, cl[:1], policy=policy, directions=d[None],
                       config=TrackConfig(scale=sc, max_steps=200 * zoom))[0]
            rows[key].append(coverage(tr.points, cl, radius=3.0 * zoom))
        rows["width_px"].append(w)
        rows["scale_auto"].append(auto)
    out["rows"][zoom] = {k: float(np.mean(v)) for k, v in rows.items()}
    print(zoom, {k: round(v, 2) for k, v in out["rows"][zoom].items()}, flush=True)
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
