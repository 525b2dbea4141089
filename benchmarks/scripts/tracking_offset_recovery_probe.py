"""Issue 15: does the agent step back onto a fibre it has drifted beside?

Retina #9 (analysis of v8's trace, docs/benchmarks.md): past a junction the trace runs about
one vessel width beside the vessel and never returns. This probe starts the agent beside
synthetic fibres: at a point a quarter of the way along the fibre, ``d`` px across it (a
random side), heading along it; one way, no end, no ridge fitting. Per offset: coverage of
the rest of the fibre (reference points with a trace point within 3 px) and the share of
traces that come within 2 px of the fibre in their first 25 px ("recovered").
No real image is read.
Run from the repository root:
python benchmarks/scripts/tracking_offset_recovery_probe.py SETTING SEED N VERSIONS [JSON]
e.g. ``DR 777 48 8,9`` (VERSIONS comma-separated)."""
import json
import sys

import numpy as np
import torch
from scipy.spatial import cKDTree

from napari_medseg.methods.tracking.curves import arc_length
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track

torch.set_num_threads(2)
OFFSETS = (0.0, 3.0, 5.0, 7.0)


def cases(setting: str, seed: int, n: int):
    rng = np.random.default_rng(seed + 1)
    out = []
    for im in generate_many(setting, n, seed):
        c = im.centreline
        s = arc_length(c)
        i = int(np.clip(np.searchsorted(s, 0.25 * s[-1]), 2, len(c) - 3))
        t = c[i + 2] - c[i - 2]
        t = t / np.linalg.norm(t)
        out.append((im.image, c[i:], c[i], t, np.array([-t[1], t[0]]) * rng.choice([-1, 1])))
    return out


def score(rows, traces) -> dict:
    cov, rec = [], []
    for (_, ref, *_), tr in zip(rows, traces):
        d, _ = cKDTree(tr.points).query(ref)
        cov.append(100.0 * float((d <= 3.0).mean()))
        along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(tr.points, axis=0), axis=1))]
        d_tr, _ = cKDTree(ref).query(tr.points[along <= 25.0])
        rec.append(bool((d_tr <= 2.0).any()))
    return {"coverage_pct": float(np.mean(cov)), "recovered_rate": float(np.mean(rec))}


def main():
    setting, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    versions = [int(v) for v in sys.argv[4].split(",")]
    rows = cases(setting, seed, n)
    images = np.stack([r[0] for r in rows])
    heads = np.stack([r[3] for r in rows])
    out = {"setting": setting, "seed": seed, "n": n, "offsets_px": list(OFFSETS), "results": {}}
    for v in versions:
        policy, _ = load_tracker(v)
        for d in OFFSETS:
            starts = np.clip(np.stack([r[2] + d * r[4] for r in rows]), 1, np.array(images.shape[1:]) - 2)
            cfg = TrackConfig(check_starts=False, max_steps=200, fit_ridge=False)
            res = score(rows, track(images, starts, None, policy=policy, config=cfg, directions=heads))
            out["results"][f"v{v} d{d:g}"] = res
            print(f"v{v} offset {d:g} px: coverage {res['coverage_pct']:.1f} %, recovered {res['recovered_rate']:.2f}",
                  flush=True)
        far = [out["results"][f"v{v} d{d:g}"]["coverage_pct"] for d in (5.0, 7.0)]
        out["results"][f"v{v} mean d5 d7"] = float(np.mean(far))
    if len(sys.argv) > 5:
        with open(sys.argv[5], "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
