"""Issue 16: one variance per class or one shared by all classes in the native-resolution
refinement (``postprocess.VARIANCE``). Where two tissues mix in one voxel, its intensity lies
between their means in proportion to the mix, so the arg-max of the mix changes where the
intensity passes the midpoint of the two means; a tied variance puts the likelihood's
boundary there, per-class variances move it towards the narrower class. Held-out subjects of
all five kinds, the seeds of joint_folded_val.py, joint model and N, T1 alone. Validation data
only (never a real scan).
Run from the repository root: python benchmarks/scripts/joint_variance_val.py [N] [OUT.json]."""
import json
import sys

import numpy as np

from _joint import ls, models, probs_of
from joint_folded_val import KINDS, dice, subject
from napari_medseg.methods.joint_lesion_tissue import postprocess as P
from napari_medseg.methods.joint_lesion_tissue.inference import model_mode, spacing_of

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
out = {"versions": {mode: models[mode][1].get("version") for mode in models}, "variances": list(P.VARIANCES)}
for kind in KINDS:
    rows = {(key, v): [] for key in ("joint", "N") for v in P.VARIANCES}
    for i in range(n):
        s = subject(kind, i)
        t1, ref, mask, affine = s["T1"], s["tissue"], s["brain"], s["affine"]
        for mode, key in (("joint", "joint"), ("tissue_only", "N")):
            pr, used = probs_of(mode, {"T1": t1}, affine, mask)
            for v in P.VARIANCES:
                P.VARIANCE = v
                fin = P.finish(pr, {"T1": t1}, used, ls, spacing_of(affine), mode=model_mode(models[mode][1]),
                               mask=mask)
                rows[(key, v)].append(dice(fin.labels, ref))
        P.VARIANCE = "class"
        print(kind, i, {f"{k}/{v}": np.round(r[-1], 3).tolist() for (k, v), r in rows.items()}, flush=True)
    out[kind] = {f"{k}/{v}": np.round(np.mean(r, 0), 4).tolist() for (k, v), r in rows.items()}
    for k, v in out[kind].items():
        print(kind, k, v, "mean", round(float(np.mean(v)), 4), flush=True)
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
