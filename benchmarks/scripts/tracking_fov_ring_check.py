"""Issue 15: does filling the soft edge of a fundus photograph's field of view (the 1-px ring
that turns bright once inverted) help the tracker? A synthetic check, rule in
docs/benchmarks.md. 96 DR + 96 DRp images (seed 2468), each made a fundus-like photograph
(inverted, embedded in a 184² canvas, a field of view of radius 88 px with a blurred edge
over a black frame), prepared three ways, traced by the current model from the start and the
true heading (one way, no end). No real image is read.
Run from the repository root: python benchmarks/scripts/tracking_fov_ring_check.py [JSON]"""
import json
import sys

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_medseg.methods.tracking import prepare as P
from napari_medseg.methods.tracking.metrics import trace_metrics
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track

torch.set_num_threads(2)
CANVAS, RADIUS, OFFSET = 184, 88, 28


def photograph(image: np.ndarray) -> np.ndarray:
    c = np.full((CANVAS, CANVAS), float(np.median(1.0 - image)), np.float32)
    c[OFFSET:OFFSET + image.shape[0], OFFSET:OFFSET + image.shape[1]] = 1.0 - image
    yy, xx = np.mgrid[:CANVAS, :CANVAS]
    disk = ((yy - CANVAS / 2) ** 2 + (xx - CANVAS / 2) ** 2 <= RADIUS**2).astype(np.float32)
    return c * ndi.gaussian_filter(disk, 0.8)


def prepared(photo: np.ndarray, variant: str) -> np.ndarray:
    if variant == "prepare_image now":  # what was adopted: the third variant
        return P.prepare_image(photo, invert=True)
    frame = P._frame(photo)
    filled = frame | (P._soft_edge(photo, frame) if variant != "today" else False)
    a = photo.copy()
    a[filled] = np.median(photo[~frame])
    a = a.max() - a
    if variant in ("today", "edge filled"):  # "today": the preparation before the check
        return P.normalise_like_training(a)
    return P.normalise_like_training(a, ~filled)  # quantiles over the field of view


policy, meta = load_tracker()
out = {"model": f"tracking v{meta.get('version')}", "results": {}}
for setting in ("DR", "DRp"):
    imgs = generate_many(setting, 96, seed=2468)
    photos = [photograph(r.image) for r in imgs]
    starts = np.stack([r.start for r in imgs]) + OFFSET
    heads = np.stack([r.centreline[min(5, len(r.centreline) - 1)] - r.start for r in imgs])
    for variant in ("today", "edge filled", "edge filled, FOV quantiles", "prepare_image now"):
        images = np.stack([prepared(p, variant) for p in photos])
        found = []
        for i in range(0, len(imgs), 24):
            found += track(images[i:i + 24], starts[i:i + 24], None, policy=policy,
                           config=TrackConfig(check_starts=False, both_ways=False), directions=heads[i:i + 24])
        cov = [trace_metrics(t.points - OFFSET, r.centreline)["coverage_pct"] for t, r in zip(found, imgs)]
        out["results"].setdefault(setting, {})[variant] = {"coverage_pct": float(np.mean(cov)),
                                                          "lost_at_start": int(sum(c < 10 for c in cov))}
        print(f"{setting:>4} {variant:>28}: coverage {np.mean(cov):5.1f} %  lost {sum(c < 10 for c in cov)}/96",
              flush=True)
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=2)
