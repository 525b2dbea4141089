"""The loop both ablation scripts share: each named variant on training seeds 0, 1 and 2,
one printed row per run, means per variant, and the rows as JSON when a path is given."""
import json
import time

import numpy as np


def run(variants: dict, run_one, argv: list, keys=("val", "test")) -> dict:
    """``run_one(overrides, seed) -> row``; ``argv``: [VARIANT[,VARIANT...]] [OUT.json]."""
    names = argv[1].split(",") if len(argv) > 1 else list(variants)
    out = {}
    for name in names:
        rows = []
        for seed in (0, 1, 2):
            t = time.perf_counter()
            row = {**run_one(variants[name], seed), "s": round(time.perf_counter() - t, 1)}
            rows.append(row)
            print(name, seed, json.dumps(row, default=float), flush=True)
        out[name] = rows
        print(f"== {name}: " + " ".join(f"{k} {np.mean([r[k] for r in rows]):.3f}" for k in keys), flush=True)
    if len(argv) > 2:
        with open(argv[2], "w") as f:
            json.dump(out, f, indent=1, default=float)
    return out
