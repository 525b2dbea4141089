"""Issue 15: two tracking versions on the training's validation sets (deterministic policy,
32 SI+DR images each, 6-px start stub as in training). Seed 1 is v3's own selection set,
seed 2 v4's, seed 3 that of the parent-start run (not shipped; docs/benchmarks.md), seeds 7
and 8 no run's (v4 was shipped on 7). Pass the parent-start run's version as NEW to repeat it.
Run from the repository root: python benchmarks/scripts/tracking_val_compare.py [OLD NEW [SEED ...]]."""
import sys

import torch

from napari_medseg.core.registry import Registry
from napari_medseg.methods.tracking.env import EnvConfig, TrackingEnv
from napari_medseg.methods.tracking.ppo import collect_rollout, rollout_metrics, synthetic_episodes

torch.set_num_threads(2)
versions = [int(v) for v in sys.argv[1:3]] or [4, 5]
seeds = [int(v) for v in sys.argv[3:]] or [1, 2, 3, 7, 8]
reg = Registry()
for seed in seeds:
    imgs, lines = synthetic_episodes("SI+DR", seed)(-1, 32)
    for v in versions:
        policy, _ = reg.get("tracking", v).load("cpu")
        env = TrackingEnv(EnvConfig(max_steps=200, start_stub=6.0, agent_input=policy.agent_input), "cpu")
        m = rollout_metrics(collect_rollout(policy.eval(), env, imgs, lines, deterministic=True), lines)
        print(f"validation seed {seed}: tracking v{v} coverage {m['coverage_pct']:.2f} % error {m['error_px']:.3f} px",
              flush=True)
