"""Issue 16: the refinement's prior exponent tau, on held-out subjects of all three kinds of
anatomy (gyrified, ribbon, fsaverage5's cerebrum), T1 alone, 1.25 mm, stripped, the same
seeds as joint_folded_val.py. Each model's probabilities are computed once per subject and
refined with every tau. Validation data only (never a real scan).
Run from the repository root: python benchmarks/scripts/joint_prior_power_val.py [N] [OUT.json]."""
import json
import sys

import numpy as np

from _joint import ls, models, probs_of
from joint_folded_val import KINDS, dice, subject
from napari_medseg.methods.joint_lesion_tissue import postprocess as P
from napari_medseg.methods.joint_lesion_tissue.inference import model_mode, spacing_of

TAUS = (0.5, 0.75, 1.0, 1.5)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
out = {"versions": {mode: models[mode][1].get("version") for mode in models}, "taus": list(TAUS)}
for kind in KINDS:
    rows = {f"{key}_tau{t}": [] for key in ("joint", "N") for t in TAUS}
    for i in range(n):
        s = subject(kind, i)
        t1, ref, mask, affine = s["T1"], s["tissue"], s["brain"], s["affine"]
        for mode, key in (("joint", "joint"), ("tissue_only", "N")):
            pr, used = probs_of(mode, {"T1": t1}, affine, mask)
            for t in TAUS:
                fin = P.finish(pr, {"T1": t1}, used, ls, spacing_of(affine), mode=model_mode(models[mode][1]),
                               mask=mask, power=t)
                rows[f"{key}_tau{t}"].append(dice(fin.labels, ref))
        print(kind, i, flush=True)
    out[kind] = {k: np.round(np.mean(v, 0), 4).tolist() for k, v in rows.items()}
    for k, v in out[kind].items():
        print(kind, k, v, round(float(np.mean(v)), 4), flush=True)
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
