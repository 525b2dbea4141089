"""``napari-medseg bench tracking``: the DRL tracker against the minimal-path baseline.

On a held-out synthetic SI validation set (a seed never used in training) the
current ``tracking`` model (the shipped one unless the user trained another) tracks
from each axon's start towards its end; the classical minimal-path tracker connects
the same start and end points. Both are scored with the paper's metrics. Our traces
are scored as the dock returns them, fitted onto the ridge (:mod:`..methods.tracking.fitting`);
``*_unfitted`` keys score the agent's own points, and the entropy split uses those. The
environment throughput is measured batched (32 episodes stepping together) and as a
per-agent Python loop (batch 1), in the same run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

VALIDATION_SEED = 90210  # never used by training (training seeds derive from --seed via SeedSequence)
SETTING = "SI"


def _images(setting: str, n: int):
    from ..methods.tracking.synthetic import generate_many

    return generate_many(setting, n, seed=VALIDATION_SEED)


def evaluate(policy, images, max_steps: int = 200, batch: int = 32, both_ways: bool = False) -> dict:
    """Track every image from its centreline start towards its end (``batch`` images
    stepping together, each with the rules of :func:`~..methods.tracking.track.track`);
    mean metrics. One way by default, the paper's protocol; ``both_ways``: also from the
    end, joined where the two meet (what the dock does when given ends)."""
    from ..methods.tracking.metrics import mean_metrics, trace_metrics
    from ..methods.tracking.track import TrackConfig, track

    config = TrackConfig(max_steps=max_steps, check_starts=False, both_ways=both_ways)
    rows, raw = [], []
    for i in range(0, len(images), batch):
        part = images[i : i + batch]
        traces = track(np.stack([r.image for r in part]), np.stack([r.start for r in part]),
                       np.stack([r.end for r in part]), policy=policy, config=config)
        rows += [trace_metrics(t.points, r.centreline) for t, r in zip(traces, part)]
        # the entropy belongs to the agent's own positions, before the ridge fitting
        raw += [trace_metrics(t.raw_points, r.centreline, t.entropy) for t, r in zip(traces, part)]
    out, unfitted = mean_metrics(rows), mean_metrics(raw)
    out.update(entropy_within=unfitted["entropy_within"], entropy_outside=unfitted["entropy_outside"],
               coverage_pct_unfitted=unfitted["coverage_pct"], error_px_unfitted=unfitted["error_px"])
    return out


def evaluate_baseline(images) -> dict:
    from ..methods.tracking.baseline import minimal_path
    from ..methods.tracking.metrics import mean_metrics, trace_metrics

    return mean_metrics([trace_metrics(minimal_path(r.image, r.start, r.end), r.centreline) for r in images])


def env_throughput(policy, images, batch: int, seconds: float) -> float:
    """Environment + policy steps per second at ``batch`` episodes stepping together;
    batch 1 loops over the episodes in Python, one agent at a time. Each episode takes
    50 steps with rewards and the critic's centreline view (as in training); the
    centreline images are rendered once beforehand and resets are not timed, so both
    sides measure stepping only."""
    from ..methods.tracking.curves import centreline_image
    from ..methods.tracking.env import EnvConfig, TrackingEnv

    env = TrackingEnv(EnvConfig(off_track=None, agent_input=policy.agent_input), "cpu")
    imgs = np.stack([r.image for r in images])
    lines = [r.centreline for r in images]
    maps = np.stack([centreline_image(ln, r.image.shape) for ln, r in zip(lines, images)])
    no_end = np.full((batch, 2), np.nan)
    steps, busy, i = 0, 0.0, 0
    with torch.no_grad():
        while busy < seconds:
            sel = [(i + k) % len(images) for k in range(batch)]
            i += batch
            obs = env.reset(imgs[sel], [lines[k] for k in sel], ends=no_end, centreline_images=maps[sel])
            t0 = time.perf_counter()
            for _ in range(50):
                n_running = int((~env.done).sum())
                if n_running == 0:
                    break
                act = policy.act(obs.actor)
                obs = env.step(act.displacement).observation
                steps += n_running
            busy += time.perf_counter() - t0
    return steps / busy


def run(quick: bool = False, json_path: str | None = None, n: int | None = None, seconds: float | None = None) -> dict:
    from ..methods.tracking.model import load_tracker

    torch.set_flush_denormal(True)
    n = n or (50 if quick else 200)
    policy, meta = load_tracker()
    m = meta.get("metrics", {})
    results: dict = {"quick": quick, "n_images": n, "setting": SETTING, "validation_seed": VALIDATION_SEED,
                     "model_version": meta.get("version"), "torch_threads": torch.get_num_threads()}
    images = _images(SETTING, n)
    ours = evaluate(policy, images)
    base = evaluate_baseline(images)
    results.update(coverage_pct=ours["coverage_pct"], error_px=ours["error_px"],
                   error_raw_px=ours["error_raw_px"], lost_steps=ours["lost_steps"],
                   coverage_pct_unfitted=ours["coverage_pct_unfitted"], error_px_unfitted=ours["error_px_unfitted"],
                   entropy_within=ours["entropy_within"], entropy_outside=ours["entropy_outside"],
                   baseline_coverage_pct=base["coverage_pct"], baseline_error_px=base["error_px"])
    crossing = _images("crossing", max(min(n, 20), n // 4))
    cross = evaluate(policy, crossing)
    cross_base = evaluate_baseline(crossing)
    cross_both = evaluate(policy, crossing, both_ways=True)  # given both ends, like the minimal path
    results.update(coverage_pct_crossing_both_ways=cross_both["coverage_pct"],
                   error_px_crossing_both_ways=cross_both["error_px"],
                   error_px_crossing_unfitted=cross["error_px_unfitted"])
    results.update(coverage_pct_crossing=cross["coverage_pct"], error_px_crossing=cross["error_px"],
                   baseline_coverage_pct_crossing=cross_base["coverage_pct"],
                   baseline_error_px_crossing=cross_base["error_px"], n_images_crossing=len(crossing))
    seconds = seconds or (4.0 if quick else 15.0)
    results["env_steps_per_s"] = env_throughput(policy, images[:64], 32, seconds)
    results["single_env_steps_per_s"] = env_throughput(policy, images[:64], 1, seconds)
    results["batched_speedup"] = results["env_steps_per_s"] / results["single_env_steps_per_s"]
    results["train_minutes_to_90pct"] = m.get("train_minutes_to_90pct")
    results["train_cpu_minutes_to_90pct"] = m.get("train_cpu_minutes_to_90pct")
    results["goals"] = {
        "coverage_pct": ">= 93.4", "error_px": "<= 0.64", "entropy_outside": "> entropy_within",
        "batched_speedup": ">= 10", "train_minutes_to_90pct": "<= 30",
    }
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2, default=float))
    return results
