"""Issue 15: the real-fibre time goal (ours <= 2x the minimal path) for two tracking versions,
alternating, three runs each, on the same machine in one process (the whole `bench tracking
--real` each time; only its timings and coverage are kept). Run from the repository root:
python benchmarks/scripts/tracking_real_timing.py [JSON [VERSION ...]] (default: 6 7)"""
import sys

import json
from napari_medseg.bench import tracking_real as T
VERSIONS = tuple(int(a) for a in sys.argv[2:]) or (6, 7)
res = {}
for rep in range(3):
    for v in VERSIONS:
        out = T.run(model_version=v)
        res.setdefault(v, []).append((round(out["real_ms_per_fibre"],1), round(out["minpath_real_ms_per_fibre"],1), round(out["greedy_real_ms_per_fibre"],1), out["real_coverage_pct"]))
        print(v, res[v][-1], flush=True)
out = {"columns": ["real_ms_per_fibre", "minpath_real_ms_per_fibre", "greedy_real_ms_per_fibre", "real_coverage_pct"],
       "runs": {f"tracking v{k}": v for k, v in res.items()}}
json.dump(out, open(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/tracking-real-timing.json", "w"), indent=1)
