"""Issue 15: two tracking versions on the training's validation sets (deterministic policy,
32 SI+DR images each, 6-px start stub as in training). Seed 1 is v3's own selection set,
seed 2 v4's, seed 7 neither's (the one v4 was shipped on). Run from the repository root:
python benchmarks/scripts/tracking_val_compare.py [OLD NEW]."""
import sys

import torch

from napari_medseg.core.registry import Registry
from napari_medseg.methods.tracking.env import EnvConfig, TrackingEnv
from napari_medseg.methods.tracking.ppo import collect_rollout, rollout_metrics, synthetic_episodes

torch.set_num_threads(2)
versions = [int(v) for v in sys.argv[1:3]] or [3, 4]
reg = Registry()
for seed in (1, 2, 7):
    imgs, lines = synthetic_episodes("SI+DR", seed)(-1, 32)
    for v in versions:
        policy, _ = reg.get("tracking", v).load("cpu")
        env = TrackingEnv(EnvConfig(max_steps=200, start_stub=6.0), "cpu")
        m = rollout_metrics(collect_rollout(policy.eval(), env, imgs, lines, deterministic=True), lines)
        print(f"validation seed {seed}: tracking v{v} coverage {m['coverage_pct']:.2f} % error {m['error_px']:.3f} px",
              flush=True)
