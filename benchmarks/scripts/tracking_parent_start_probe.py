"""Issue 15: how a tracking version does when each fibre starts where it leaves a wider vessel
(``SyntheticSettings.start_parent_fraction``), against the same domain-randomised images
without that parent (48 images, seed 555, start + the true heading, one way).
Run from the repository root: python benchmarks/scripts/tracking_parent_start_probe.py FRACTION [VERSION]."""
import sys

import numpy as np
import torch

from napari_medseg.methods.tracking import randomised as R
from napari_medseg.methods.tracking.metrics import trace_metrics
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track

torch.set_num_threads(2)
frac = float(sys.argv[1])
version = int(sys.argv[2]) if len(sys.argv) > 2 else None
draw = R.randomised_settings
R.randomised_settings = lambda rng: draw(rng).replace(start_parent_fraction=frac)
imgs = generate_many("DR", 48, seed=555)
policy, meta = load_tracker(version)
heads = np.stack([r.centreline[min(5, len(r.centreline) - 1)] - r.start for r in imgs])
found = track(np.stack([r.image for r in imgs]), np.stack([r.start for r in imgs]), None, policy=policy,
              config=TrackConfig(check_starts=False, both_ways=False), directions=heads)
cov = [trace_metrics(t.points, r.centreline)["coverage_pct"] for t, r in zip(found, imgs)]
print(f"parent fraction {frac}: tracking v{meta.get('version')} coverage {np.mean(cov):.1f} %, "
      f"lost at the start (coverage < 10 %) {sum(c < 10 for c in cov)} of {len(imgs)}")
