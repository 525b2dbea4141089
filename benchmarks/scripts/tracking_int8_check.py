"""Issue 15: the tracker with the actor's linear layers in fp32 and in int8 (PyTorch's dynamic
quantisation: int8 weights, activations quantised per batch; convolutions in fp32). It failed
the rule in docs/benchmarks.md and is not in the package; the copy of the agent is made here.

The shipped agent on synthetic images, start + the true heading, no end, one way; and again
with the end given (the trace stops there, as ``bench tracking`` runs): SI and crossing
images (seed SI), domain-randomised images with and without a wider parent vessel at the
start (seed DR). Also the actor's time per step for 16 traces. No real image is read.
Run from the repository root:
python benchmarks/scripts/tracking_int8_check.py --seeds SI DR [--n SC NDR] [--json PATH]"""
import json
import sys
import time

import numpy as np
import torch

from napari_medseg.methods.tracking.metrics import trace_metrics
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track


torch.set_num_threads(2)


def with_int8_linear(policy):
    """A copy of ``policy`` whose actor's linear layers are dynamically quantised to int8."""
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    q = copy.deepcopy(policy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice (the API moves to torchao)
        q.actor = quantize_dynamic(q.actor, {torch.nn.Linear}, dtype=torch.qint8)
    return q


def _arg(name, default):
    if name not in sys.argv:
        return default
    i = sys.argv.index(name) + 1
    return [int(v) for v in sys.argv[i : i + 2]]


def actor_ms(policy, n=300):
    x = torch.randn(16, 12, 11, 11)
    with torch.no_grad():
        for _ in range(20):
            policy.steer(x)
        t = time.perf_counter()
        for _ in range(n):
            policy.steer(x)
    return (time.perf_counter() - t) / n * 1000


def main():
    seed_sc, seed_dr = _arg("--seeds", [4242, 555])
    n_sc, n_dr = _arg("--n", [100, 48])
    sets = {"SI": generate_many("SI", n_sc, seed=seed_sc), "crossing": generate_many("crossing", n_sc, seed=seed_sc),
            "DR": generate_many("DR", n_dr, seed=seed_dr), "DR parent at start": generate_many("DRp", n_dr, seed=seed_dr)}
    policy, meta = load_tracker()
    out = {"model": f"tracking v{meta.get('version')}", "seeds": {"SI, crossing": seed_sc, "DR, DR parent": seed_dr},
           "actor_ms_16_traces": {"fp32": actor_ms(policy), "int8": actor_ms(with_int8_linear(policy))},
           "results": {}}
    print("actor ms per step, 16 traces:", out["actor_ms_16_traces"], flush=True)
    for name, imgs in sets.items():
        heads = np.stack([r.centreline[min(5, len(r.centreline) - 1)] - r.start for r in imgs])
        for precision, agent in (("fp32", policy), ("int8", with_int8_linear(policy))):
            cfg = TrackConfig(check_starts=False, both_ways=False)
            found, ended = [], []
            t0 = time.perf_counter()
            for i in range(0, len(imgs), 25):
                part = slice(i, i + 25)
                args = (np.stack([r.image for r in imgs[part]]), np.stack([r.start for r in imgs[part]]))
                found += track(*args, None, policy=agent, config=cfg, directions=heads[part])
                ended += track(*args, np.stack([r.end for r in imgs[part]]), policy=agent, config=cfg,
                               directions=heads[part])
            sec = time.perf_counter() - t0
            m = [trace_metrics(t.points, r.centreline) for t, r in zip(found, imgs)]
            me = [trace_metrics(t.points, r.centreline) for t, r in zip(ended, imgs)]
            res = {"coverage_pct": float(np.mean([x["coverage_pct"] for x in m])),
                   "with_end_coverage_pct": float(np.mean([x["coverage_pct"] for x in me])),
                   "with_end_error_px": float(np.nanmean([x["error_px"] for x in me])), "seconds": sec}
            out["results"].setdefault(name, {})[precision] = res
            print(f"{name:>20} {precision}: coverage {res['coverage_pct']:5.1f} %; end given: coverage "
                  f"{res['with_end_coverage_pct']:5.1f} %  error {res['with_end_error_px']:.3f} px  ({sec:.0f} s)",
                  flush=True)
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
