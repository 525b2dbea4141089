"""Issue 15: does the agent follow fibres better on a ridge map than on the raw intensities?

Each synthetic image is given to the shipped agent three ways: as it is ("raw"), as the
Sato ridge map the greedy follower uses, mapped to the training intensities ("ridge"), and
the mean of the two ("blend"). Start + the true heading, no end, one way. Sets: 100 SI and
100 crossing images (seed 4242), 48 domain-randomised images (seed 555) with and without a
wider parent vessel at the start (``start_parent_fraction`` 0 / 1). None of these seeds is a
bench's or a training run's. No real image is read.
Run from the repository root:
python benchmarks/scripts/tracking_ridge_input_probe.py [--versions V ...] [--variants raw ...] [--seeds SI DR] [--junction] [--beside] [--with-end] [--symmetries K ...] [--json PATH]
(default: the current version, all three variants; ``--versions 5 6 --variants raw`` compares two
versions on the images as they are, as the v6 rule does)."""
import json
import sys
import time

import numpy as np
import torch

from napari_medseg.methods.tracking.greedy import ridge_map
from napari_medseg.methods.tracking.metrics import trace_metrics
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.prepare import normalise_like_training
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track

torch.set_num_threads(2)


def variants(image):
    ridge = normalise_like_training(ridge_map(image))
    return {"raw": image, "ridge": ridge, "blend": (0.5 * (image + ridge)).astype(np.float32)}




def _arg(name, default):
    if name not in sys.argv:
        return default
    i = sys.argv.index(name) + 1
    vals = []
    while i < len(sys.argv) and not sys.argv[i].startswith("--"):
        vals.append(sys.argv[i])
        i += 1
    return vals


versions = [int(v) for v in _arg("--versions", [])] or [None]
symmetries = [int(v) for v in _arg("--symmetries", [])] or [1]  # TrackConfig.symmetries to compare
chosen = _arg("--variants", ["raw", "ridge", "blend"])
seed_sc, seed_dr = (int(v) for v in _arg("--seeds", [4242, 555]))  # SI + crossing, DR + DR parent
sets = {"SI": generate_many("SI", 100, seed=seed_sc), "crossing": generate_many("crossing", 100, seed=seed_sc),
        "DR": generate_many("DR", 48, seed=seed_dr), "DR parent at start": generate_many("DRp", 48, seed=seed_dr)}
if "--junction" in sys.argv:
    sets["DR wider junctions"] = generate_many("DRj", 48, seed=seed_dr)
if "--beside" in sys.argv:  # 96: a steadier set than 48
    sets["DR start beside its parent"] = generate_many("DRs", 96, seed=seed_dr)
out = {"results": {}, "seeds": {"SI, crossing": seed_sc, "DR, DR parent at start": seed_dr}}
for version, k_sym in [(v, k) for v in versions for k in symmetries]:
    policy, meta = load_tracker(version)
    tag = f"tracking v{meta.get('version')}" + (f" x{k_sym}" if len(symmetries) > 1 else "")
    config = TrackConfig(check_starts=False, both_ways=False, symmetries=k_sym)
    out.setdefault("models", []).append(tag)
    for name, imgs in sets.items():
        heads = np.stack([r.centreline[min(5, len(r.centreline) - 1)] - r.start for r in imgs])
        prepared = [variants(r.image) if chosen != ["raw"] else {"raw": r.image} for r in imgs]
        for v in chosen:
            t0 = time.perf_counter()
            found = []
            for i in range(0, len(imgs), 25):
                part = slice(i, i + 25)
                found += track(np.stack([p[v] for p in prepared[part]]), np.stack([r.start for r in imgs[part]]),
                               None, policy=policy, config=config,
                               directions=heads[part])
            m = [trace_metrics(t.points, r.centreline) for t, r in zip(found, imgs)]
            cov = float(np.mean([x["coverage_pct"] for x in m]))
            err = float(np.nanmean([x["error_px"] for x in m]))
            lost = int(sum(x["coverage_pct"] < 10 for x in m))
            key = v if len(versions) == 1 and len(symmetries) == 1 else f"{tag} {v}"
            row = {"coverage_pct": cov, "error_px": err, "lost_at_start": lost}
            extra = ""
            if "--with-end" in sys.argv:
                ended = []
                for i in range(0, len(imgs), 25):
                    part = slice(i, i + 25)
                    ended += track(np.stack([p[v] for p in prepared[part]]), np.stack([r.start for r in imgs[part]]),
                                   np.stack([r.end for r in imgs[part]]), policy=policy,
                                   config=config, directions=heads[part])
                me = [trace_metrics(t.points, r.centreline) for t, r in zip(ended, imgs)]
                row["with_end_coverage_pct"] = float(np.mean([x["coverage_pct"] for x in me]))
                row["with_end_error_px"] = float(np.nanmean([x["error_px"] for x in me]))
                extra = f"  with the end: {row['with_end_coverage_pct']:5.1f} % {row['with_end_error_px']:.3f} px"
            out["results"].setdefault(name, {})[key] = row
            print(f"{tag} {name:>20} {v:>5}: coverage {cov:5.1f} %  error {err:.3f} px  lost {lost}/{len(imgs)}{extra}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
if len(versions) == 1 and len(symmetries) == 1:
    out["model"] = out.pop("models")[0]
if "--json" in sys.argv:
    with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
        json.dump(out, f, indent=2)
