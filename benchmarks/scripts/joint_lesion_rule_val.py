"""Issue 16: which lesion decision makes the joint model's lesions comparable to W's?
Validation phantoms (seeds 800000+, used by neither training, whose seeds mod 1e6 are
below 300000, nor bench joint's held-out 900000+). Rules for the joint model:

- argmax: the lesion where it wins the refined arg-max over every class (before 2026-12-05);
- one-vs-all: lesion probability >= 0.5, tissue from the refined arg-max over the tissue
  channels (postprocess.finish since 2026-12-05);
both followed by the lesion support and size rules. W: its own finish (p >= 0.5, size).
Run from the repository root: python benchmarks/scripts/joint_lesion_rule_val.py [SEED0 N]."""
import sys

import numpy as np

from _joint import ls, probs_of
from napari_medseg.bench.joint import SHAPE, SPACING
from napari_medseg.core.phantoms.brain import brain_phantom
from napari_medseg.methods.joint_lesion_tissue import postprocess as P
from napari_medseg.methods.joint_lesion_tissue.inference import spacing_of
from napari_medseg.methods.joint_lesion_tissue.labels import REDUCED
from napari_medseg.methods.joint_lesion_tissue.metrics import dice_per_class

seed0 = int(sys.argv[1]) if len(sys.argv) > 1 else 800000
n = int(sys.argv[2]) if len(sys.argv) > 2 else 6



rows = {"W": [], "joint, refined arg-max": [], "joint, one-vs-all": []}
for i in range(n):
    ph = brain_phantom(SHAPE, seed0 + i, "reduced" if ls.names == REDUCED.names else "full", lesions=True,
                       spacing=SPACING)
    vols, mask, sp = {"T1": ph.t1, "FLAIR": ph.flair}, ph.labels > 0, spacing_of(ph.affine)
    pw, uw = probs_of("lesion_only", vols, ph.affine, mask)
    pj, uj = probs_of("joint", vols, ph.affine, mask)
    new = P.finish(pj, vols, uj, ls, sp, mode="joint", mask=mask)
    keep = np.arange(1, pj.shape[0])
    old = np.zeros(mask.shape, np.uint8)
    old[mask] = keep[np.argmax(new.posterior, 0)]
    tissue = keep != ls.lesion
    fallback = np.zeros(mask.shape, np.uint8)
    fallback[mask] = keep[tissue][np.argmax(new.posterior[tissue], 0)]
    P.lesion_support(old, vols, ls, sp, 0.01, fallback)
    for key, lab in (("W", P.finish(pw, vols, uw, ls, sp, mode="lesion_only", mask=mask).labels),
                     ("joint, refined arg-max", old), ("joint, one-vs-all", new.labels)):
        rows[key].append(dice_per_class(lab, ph.labels, ls, (ls.lesion,))["lesion"])
    print(seed0 + i, {k: round(v[-1], 3) for k, v in rows.items()}, flush=True)
print("mean lesion Dice:", {k: round(float(np.mean(v)), 3) for k, v in rows.items()})
