"""Issue 16: a CSF/GM decision calibrated on synthetic validation subjects. The refinement's
CSF prior is multiplied by exp(delta) (a log-prior offset) before the EM; delta = 0 is the
shipped behaviour. Held-out subjects of all three kinds of anatomy, the same seeds as
joint_folded_val.py, joint model only, T1 alone. Validation data only (never a real scan).
Run from the repository root: python benchmarks/scripts/joint_csf_offset_val.py [N] [OUT.json]."""
import json
import sys

import numpy as np

from _joint import ls, models, probs_of
from joint_folded_val import KINDS, dice, subject
from napari_medseg.methods.joint_lesion_tissue import postprocess as P
from napari_medseg.methods.joint_lesion_tissue.inference import model_mode, spacing_of

DELTAS = (-0.5, -0.25, 0.0, 0.25, 0.5)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
csf = ls.names.index("CSF")
out = {"version": models["joint"][1].get("version"), "deltas": list(DELTAS), "csf_channel": csf}
for kind in KINDS:
    rows = {d: [] for d in DELTAS}
    for i in range(n):
        s = subject(kind, i)
        t1, ref, mask, affine = s["T1"], s["tissue"], s["brain"], s["affine"]
        pr, used = probs_of("joint", {"T1": t1}, affine, mask)
        for d in DELTAS:
            p = pr.copy()
            p[csf] *= np.exp(d)
            fin = P.finish(p, {"T1": t1}, used, ls, spacing_of(affine), mode=model_mode(models["joint"][1]), mask=mask)
            rows[d].append(dice(fin.labels, ref))
        print(kind, i, flush=True)
    out[kind] = {f"delta{d:+g}": np.round(np.mean(v, 0), 4).tolist() for d, v in rows.items()}
    for k, v in out[kind].items():
        print(kind, k, v, round(float(np.mean(v)), 4), flush=True)
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
