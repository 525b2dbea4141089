"""Issue 16: how much should the refinement trust the network on a population template?

The real MNI152 T1 is an average of registered brains, and its reference is the arg-max of
averaged tissue maps. This script makes synthetic templates the same way
(``synth.template_like_subject``: 12 subjects sharing shape and folding, each with its own
proportions, noise and a registration-like shift) and single randomised subjects, never a
real scan, and scores on both the GMM and the joint model and N, refined with the prior
exponent tau in TAUS (postprocess.refine: posterior ~ prior^tau x likelihood). T1 alone,
the same brain mask for every method; predicted lesion counts as white matter.
Run from the repository root: python benchmarks/scripts/joint_template_val.py [N_TEMPLATES N_SINGLE]."""
import json
import sys

import numpy as np

from _joint import ls, models, probs_of
from napari_medseg.bench.joint import _lesion_as_wm
from napari_medseg.methods.joint_lesion_tissue import postprocess as P
from napari_medseg.methods.joint_lesion_tissue.baseline_gmm import gmm_tissue_segmentation
from napari_medseg.methods.joint_lesion_tissue.inference import model_mode, spacing_of
from napari_medseg.methods.joint_lesion_tissue.metrics import dice_per_class
from napari_medseg.methods.joint_lesion_tissue.synth import randomised_subject, template_like_subject

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHAPE, SPACING = (128, 144, 128), (1.25, 1.25, 1.25)
n_templates = int(sys.argv[1]) if len(sys.argv) > 1 else 3
n_single = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def dice(labels, ref):
    d = dice_per_class(_lesion_as_wm(labels, ls), ref, ls, ls.tissues)
    return [round(float(d[n]), 4) for n in ("CSF", "grey matter", "white matter")]


def score(kind, seed, t1, ref, mask, affine):
    row = {"kind": kind, "seed": seed, "gmm": dice(gmm_tissue_segmentation(t1, ls, mask=mask), ref)}
    sp = spacing_of(affine)
    for mode, key in (("joint", "joint"), ("tissue_only", "N")):
        pr, used = probs_of(mode, {"T1": t1}, affine, mask)
        for tau in TAUS:
            out = P.finish(pr, {"T1": t1}, used, ls, sp, mode=model_mode(models[mode][1]), mask=mask, power=tau)
            row[f"{key} tau={tau:g}"] = dice(out.labels, ref)
    print(json.dumps(row), flush=True)
    return row


rows = []
for i in range(n_templates):
    t = template_like_subject(100 + i, shape=SHAPE, spacing=SPACING)
    rows.append(score("template", 100 + i, t["T1"], t["reference"], t["mask"], t["affine"]))
for i in range(n_single):
    s = randomised_subject(8_100_000 + i, SHAPE, SPACING, lesions=False, flair=False, p_stripped=1.0)
    rows.append(score("single", 8_100_000 + i, s["T1"], s["tissue"], s["brain"], s["affine"]))
for kind in ("template", "single"):
    part = [r for r in rows if r["kind"] == kind]
    if part:
        keys = [k for k in part[0] if k not in ("kind", "seed")]
        print(kind, {k: np.round(np.mean([r[k] for r in part], 0), 3).tolist() for k in keys})
