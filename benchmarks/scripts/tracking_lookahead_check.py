"""Issue 15: the tracker with and without the entropy-triggered lookahead (``TrackConfig.lookahead``).

The shipped agent on synthetic images, start + the true heading, no end, one way (as the
ridge-input probe runs), and again with the end given (one way, stopping there, as
``bench tracking`` runs; its error is not inflated by wandering past the fibre's end): SI and crossing images (seed SI), domain-randomised images with
and without a wider parent vessel at the start (seed DR). No real image is read.
Run from the repository root:
python benchmarks/scripts/tracking_lookahead_check.py --seeds SI DR [--n SC NDR] [--max-angle DEG] [--json PATH]"""
import json
import sys
import time

import numpy as np
import torch

from napari_medseg.methods.tracking.lookahead import Lookahead
from napari_medseg.methods.tracking.metrics import trace_metrics
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track

torch.set_num_threads(2)




def _arg(name, default):
    if name not in sys.argv:
        return default
    i = sys.argv.index(name) + 1
    return [int(v) for v in sys.argv[i : i + 2]]


seed_sc, seed_dr = _arg("--seeds", [4242, 555])
n_sc, n_dr = _arg("--n", [100, 48])
_kw = {}
if "--max-angle" in sys.argv:
    _a = float(sys.argv[sys.argv.index("--max-angle") + 1])
    _kw["angles"] = tuple(float(a) for a in np.arange(-_a, _a + 1e-6, 15.0))
LOOK = Lookahead(**_kw)
sets = {"SI": generate_many("SI", n_sc, seed=seed_sc), "crossing": generate_many("crossing", n_sc, seed=seed_sc),
        "DR": generate_many("DR", n_dr, seed=seed_dr), "DR parent at start": generate_many("DRp", n_dr, seed=seed_dr)}
policy, meta = load_tracker()
out = {"model": f"tracking v{meta.get('version')}", "seeds": {"SI, crossing": seed_sc, "DR, DR parent": seed_dr},
       "lookahead": LOOK.__dict__, "results": {}}
for name, imgs in sets.items():
    heads = np.stack([r.centreline[min(5, len(r.centreline) - 1)] - r.start for r in imgs])
    for label, look in (("off", None), ("on", LOOK)):
        t0 = time.perf_counter()
        found = []
        for i in range(0, len(imgs), 25):
            part = slice(i, i + 25)
            found += track(np.stack([r.image for r in imgs[part]]), np.stack([r.start for r in imgs[part]]), None,
                           policy=policy, config=TrackConfig(check_starts=False, both_ways=False, lookahead=look),
                           directions=heads[part])
        sec = time.perf_counter() - t0
        ended = []  # the same with the end given (the trace stops there; no wandering past it)
        for i in range(0, len(imgs), 25):
            part = slice(i, i + 25)
            ended += track(np.stack([r.image for r in imgs[part]]), np.stack([r.start for r in imgs[part]]),
                           np.stack([r.end for r in imgs[part]]), policy=policy,
                           config=TrackConfig(check_starts=False, both_ways=False, lookahead=look), directions=heads[part])
        me = [trace_metrics(t.points, r.centreline) for t, r in zip(ended, imgs)]
        m = [trace_metrics(t.points, r.centreline) for t, r in zip(found, imgs)]
        cov = [x["coverage_pct"] for x in m]
        res = {"coverage_pct": float(np.mean(cov)), "error_px": float(np.nanmean([x["error_px"] for x in m])),
               "lost_at_start": int(sum(c < 10 for c in cov)), "seconds": sec, "per_image": np.round(cov, 1).tolist(),
               "with_end_coverage_pct": float(np.mean([x["coverage_pct"] for x in me])),
               "with_end_error_px": float(np.nanmean([x["error_px"] for x in me]))}
        out["results"].setdefault(name, {})[label] = res
        print(f"{name:>20} lookahead {label:>3}: coverage {res['coverage_pct']:5.1f} %  error {res['error_px']:.3f} px  "
              f"lost {res['lost_at_start']}/{len(imgs)}; end given: coverage {res['with_end_coverage_pct']:5.1f} %  "
              f"error {res['with_end_error_px']:.3f} px  ({sec:.0f} s)", flush=True)
if "--json" in sys.argv:
    with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
        json.dump(out, f, indent=1)
