"""Issue 15: how far an agent's step turns with the image. On points every 5 px along the
centrelines of domain-randomised synthetic fibres (seed 2626 by default; no run, probe or bench
uses it), each heading along its fibre with a 6-px path stub behind (as tracking starts), the
agent's step is taken on the eight turned/mirrored views and mapped back
(``tracking.symmetry``). Reported: the mean angle between each of the eight steps and their mean
(0 for an agent whose step turns exactly with the image), and the mean angle between the
untransformed step and the fibre's direction there. No real image is read.
Run from the repository root:
python benchmarks/scripts/tracking_equivariance_probe.py VERSIONS [N] [SEED] [JSON], VERSIONS e.g. 9,10"""
import json
import sys

import numpy as np
import torch

from napari_medseg.methods.tracking import symmetry as S
from napari_medseg.methods.tracking.curves import arc_length
from napari_medseg.methods.tracking.env import EnvConfig, TrackingEnv
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many

torch.set_num_threads(2)
versions = [int(v) for v in sys.argv[1].split(",")]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 24
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 2626
images = generate_many("DR", n, seed=seed)


def angle(a, b):
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-9)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


out = {"seed": seed, "images": n, "setting": "DR", "results": {}}
for v in versions:
    policy, meta = load_tracker(v)
    spread, error = [], []
    for r in images:
        line = r.centreline
        s = arc_length(line)
        idx = [int(np.searchsorted(s, t)) for t in np.arange(6.0, s[-1] - 6.0, 5.0)]
        if not idx:
            continue
        pts = line[idx]
        ahead = line[[min(int(np.searchsorted(s, s[i] + 4.0)), len(line) - 1) for i in idx]] - pts
        env = TrackingEnv(EnvConfig(start_stub=6.0, agent_input=policy.agent_input))
        obs = env.reset(np.stack([r.image] * len(idx)), starts=pts, initial_directions=ahead)
        with torch.no_grad():
            steps = np.stack([S.back(policy.steer(S.apply(obs.actor, *sym))[0], *sym).numpy() for sym in S.SYMMETRIES])
        mean = steps.mean(0)
        spread += angle(steps, mean[None]).mean(0).tolist()
        error += angle(steps[0], ahead).tolist()
    row = {"points": len(spread), "symmetry_spread_deg": float(np.mean(spread)),
           "step_vs_fibre_deg": float(np.mean(error))}
    out["results"][f"tracking v{meta.get('version')}"] = row
    print(f"tracking v{meta.get('version')}: {row}", flush=True)
if len(sys.argv) > 4:
    with open(sys.argv[4], "w") as f:
        json.dump(out, f, indent=1)
