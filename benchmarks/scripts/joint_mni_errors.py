"""Issue 16, analysis only (nothing is chosen on it): where the joint model and the GMM disagree
with the MNI152 reference, by depth below the brain mask's surface. Confusions (reference →
prediction, voxels) of the current joint model (refined) and the GMM at 1 and 2 mm, split into
the outer shell (within 3 mm of the mask's edge), the cortex band (3–15 mm) and deep (> 15 mm).
Run from the repository root: python benchmarks/scripts/joint_mni_errors.py [OUT.json]"""
import json
import sys

import numpy as np
from scipy import ndimage

from _joint import ls, models
from napari_medseg.bench.joint import _lesion_as_wm, _mni_reference
from napari_medseg.methods.joint_lesion_tissue.baseline_gmm import gmm_tissue_segmentation
from napari_medseg.methods.joint_lesion_tissue.inference import segment_scan
from napari_medseg.methods.joint_lesion_tissue.mni import mni152

NAMES = {1: "CSF", 2: "GM", 3: "WM"}
BANDS = {"shell <3 mm": (0, 3), "cortex 3-15 mm": (3, 15), "deep >15 mm": (15, 1e9)}
out = {"joint_version": models["joint"][1].get("version")}
for sp in (1.0, 2.0):
    t1, gm, wm, affine = mni152(sp)
    mask = t1 > 0
    ref = _mni_reference(gm, wm, mask)
    depth = ndimage.distance_transform_edt(mask) * sp
    jm, jmeta, _ = models["joint"]
    preds = {"joint": _lesion_as_wm(segment_scan(jm, jmeta, ls, {"T1": t1}, affine, mask=mask).labels, ls),
             "gmm": _lesion_as_wm(gmm_tissue_segmentation(t1, ls, mask=mask), ls)}
    tag = f"{sp:g}mm"
    out[tag] = {}
    for who, p in preds.items():
        rows = {}
        for band, (lo, hi) in BANDS.items():
            sel = mask & (depth > lo) & (depth <= hi)
            conf = {f"{NAMES[a]}->{NAMES[b]}": int(((ref == a) & (p == b) & sel).sum())
                    for a in NAMES for b in NAMES if a != b}
            rows[band] = {"voxels": int(sel.sum()), "wrong": int(((ref != p) & sel).sum()), **conf}
        out[tag][who] = rows
        print(tag, who, json.dumps(rows), flush=True)
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
