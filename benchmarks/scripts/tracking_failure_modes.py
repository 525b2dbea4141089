"""Issue 15: where the shipped agent loses synthetic fibres, by kind (analysis only; decides nothing).

Each domain-randomised fibre (with and without a wider vessel at the start; 96 each, seed
8642, no training run's or bench's seed) is traced from its start and true heading, one way,
no end. A lost fibre is put in the first matching kind:
- "lost at the start": coverage under 10 %;
- "left at a distractor": the trace's first point more than 6 px from the fibre (after 10 px
  of trace) lies within 6 px of a crossing or branching vessel, or of the parent vessel;
- "left elsewhere": it left the fibre away from any other vessel (faint stretch, clutter),
  split by the fibre's local signal-to-noise ratio where the trace left it: on the image
  smoothed at σ 1 px, |fibre − background| at the nearest centreline point, the background
  being the median of the pixels 5–10 px from the fibre (and 5 px from any other vessel)
  in a 21-px window, over the standard deviation of image − smoothed image there:
  "faint (SNR < 2)" or "visible" (also where too little clear background is left to tell);
- "stopped early": it never left, but covered under 90 %.
Run from the repository root: python benchmarks/scripts/tracking_failure_modes.py [VERSION] [--json PATH]"""
import json
import sys

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_medseg.methods.tracking.metrics import distance_to_centreline, trace_metrics
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track

torch.set_num_threads(2)
args = [a for a in sys.argv[1:]]
out_path = args[args.index("--json") + 1] if "--json" in args else None
version = int(args[0]) if args and not args[0].startswith("--") else None


def local_snr(r, q, half: int = 10) -> float:
    sm = ndi.gaussian_filter(r.image, 1.0)
    iy, ix = (int(round(v)) for v in q)
    y0, y1, x0, x1 = max(0, iy - half), iy + half + 1, max(0, ix - half), ix + half + 1
    yy, xx = np.mgrid[y0:min(y1, r.image.shape[0]), x0:min(x1, r.image.shape[1])]
    pts = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)
    d = distance_to_centreline(pts, r.centreline)
    others = [distance_to_centreline(pts, v) for v in r.distractors if len(v) > 1]
    clear = np.min(others, axis=0) > 5.0 if others else np.ones(len(pts), bool)
    bg = (d > 5.0) & (d <= 10.0) & clear
    if bg.sum() < 10:
        return float("nan")
    win_sm, win = sm[yy, xx].ravel(), r.image[yy, xx].ravel()
    noise = float(np.std((win - win_sm)[bg])) + 1e-9
    return abs(float(sm[iy, ix]) - float(np.median(win_sm[bg]))) / noise


policy, meta = load_tracker(version)
result = {"model": f"tracking v{meta.get('version')}", "seed": 8642, "sets": {}}
for name, setting in (("DR", "DR"), ("DR, wider vessel at the start", "DRp")):
    imgs = generate_many(setting, 96, seed=8642)
    heads = np.stack([r.centreline[min(5, len(r.centreline) - 1)] - r.start for r in imgs])
    traces = []
    for i in range(0, len(imgs), 24):
        part = slice(i, i + 24)
        traces += track(np.stack([r.image for r in imgs[part]]), np.stack([r.start for r in imgs[part]]), None,
                        policy=policy, config=TrackConfig(check_starts=False, both_ways=False), directions=heads[part])
    kinds = {"followed": 0, "lost at the start": 0, "left at a distractor": 0, "left elsewhere, faint (SNR < 2)": 0,
             "left elsewhere, visible": 0, "stopped early": 0}
    coverage = []
    for t, r in zip(traces, imgs):
        cov = trace_metrics(t.points, r.centreline)["coverage_pct"]
        coverage.append(cov)
        pts = t.points
        d = distance_to_centreline(pts, r.centreline)
        walked = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        far_end = np.linalg.norm(pts - r.centreline[-1], axis=1) <= 3.0
        stop = int(np.argmax(far_end)) if far_end.any() else len(pts)
        off = np.where((d[:stop] > 6.0) & (walked[:stop] > 10.0))[0]
        if cov < 10:
            kinds["lost at the start"] += 1
        elif len(off):
            p = pts[off[0]]
            near = [distance_to_centreline(p[None], v)[0] for v in r.distractors if len(v) > 1]
            if near and min(near) <= 6.0:
                kinds["left at a distractor"] += 1
            else:
                q = r.centreline[int(np.argmin(np.linalg.norm(r.centreline - p, axis=1)))]
                snr = local_snr(r, q)
                kinds["left elsewhere, faint (SNR < 2)" if snr < 2 else "left elsewhere, visible"] += 1
        elif cov < 90:
            kinds["stopped early"] += 1
        else:
            kinds["followed"] += 1
    result["sets"][name] = {"n": len(imgs), "coverage_pct": float(np.mean(coverage)), "kinds": kinds}
    print(name, f"coverage {np.mean(coverage):.1f} %", kinds, flush=True)
if out_path:
    json.dump(result, open(out_path, "w"), indent=1)
