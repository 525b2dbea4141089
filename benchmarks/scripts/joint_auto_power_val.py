"""Issue 16: the refinement's prior exponent τ chosen per scan by the scan's own intensity
likelihood (``postprocess.choose_power``, power="auto") against the fixed τ = 1, on the
held-out subjects of all five kinds of joint_folded_val.py, T1 alone, joint model and N. The
fixed τ grid is scored too, to show how far from the best fixed τ per kind "auto" lands.
Validation data only (never a real scan).
Run from the repository root: python benchmarks/scripts/joint_auto_power_val.py [N] [OUT.json]."""
import json
import sys

import numpy as np

from _joint import ls, models, probs_of
from joint_folded_val import KINDS, dice, subject
from napari_medseg.methods.joint_lesion_tissue import postprocess as P
from napari_medseg.methods.joint_lesion_tissue.inference import model_mode, spacing_of

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
GRID = (0.5, 1.0, 1.5)  # fixed values scored beside "auto" (1.0: today's)
out = {"versions": {mode: models[mode][1].get("version") for mode in models}, "grid": list(GRID),
       "auto_chooses_among": list(P.POWERS)}
for kind in KINDS:
    rows = {f"{key}/{t}": [] for key in ("joint", "N") for t in (*GRID, "auto")}
    chosen = {"joint": [], "N": []}
    for i in range(n):
        s = subject(kind, i)
        t1, ref, mask, affine = s["T1"], s["tissue"], s["brain"], s["affine"]
        for mode, key in (("joint", "joint"), ("tissue_only", "N")):
            pr, used = probs_of(mode, {"T1": t1}, affine, mask)
            keep = np.arange(1, ls.lesion if mode == "tissue_only" else pr.shape[0])
            region = np.asarray(mask, bool)
            tau, _ = P.choose_power(np.asarray(pr, np.float32)[keep][:, region], P._features({"T1": t1}, used, region))
            chosen[key].append(tau)
            for t in (*GRID, "auto"):
                fin = P.finish(pr, {"T1": t1}, used, ls, spacing_of(affine), mode=model_mode(models[mode][1]),
                               mask=mask, power=t)
                rows[f"{key}/{t}"].append(dice(fin.labels, ref))
        print(kind, i, "chosen", {k: v[-1] for k, v in chosen.items()},
              {k: round(float(np.mean(r[-1])), 4) for k, r in rows.items() if k.endswith(("/1.0", "/auto"))},
              flush=True)
    out[kind] = {k: np.round(np.mean(v, 0), 4).tolist() for k, v in rows.items()}
    out[kind]["chosen"] = chosen
    for k in ("joint/1.0", "joint/auto", "N/1.0", "N/auto"):
        print(kind, k, out[kind][k], "mean", round(float(np.mean(out[kind][k])), 4), flush=True)
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
