"""Issue 16 (2026-12-06): where on the real MNI152 T1 the joint model loses tissue Dice to the GMM.

Analysis only: nothing is chosen, trained or tuned here. Both methods run as `bench joint`
runs them (same brain mask, predicted lesion counted as white matter). Every brain voxel's
reference class is the arg-max of the CSF / GM / WM maps; its certainty is the largest of
the three fractions. The voxels are split by certainty (partial-volume voxels, where the
arg-max is close to a coin toss, against clear ones) and by depth (within 2 mm of the
brain mask's edge or deeper), and for each part the script counts, per method, the
voxels whose label differs from the reference and the confusions between the classes.
Run from the repository root: python benchmarks/scripts/joint_mni_certainty.py [--json FILE]
(the split by depth alone, 2026-12-07: joint_mni_errors.py)"""
import json
import sys

import numpy as np
from scipy import ndimage

from _joint import ls, models
from napari_medseg.bench.joint import _lesion_as_wm, _mni_reference
from napari_medseg.methods.joint_lesion_tissue.baseline_gmm import gmm_tissue_segmentation
from napari_medseg.methods.joint_lesion_tissue.inference import segment_scan
from napari_medseg.methods.joint_lesion_tissue.mni import mni152

CERTAINTY = (0.0, 0.5, 0.7, 0.9, 1.01)
NAMES = ("CSF", "GM", "WM")

jm, jmeta, jentry = models["joint"]
out = {"model": jentry.label, "certainty_bins": list(CERTAINTY[:-1]), "by_spacing": {}}
for sp in (1.0, 2.0):
    t1, gm, wm, affine = mni152(sp)
    mask = t1 > 0
    ref = _mni_reference(gm, wm, mask)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    certainty = np.max(np.stack([csf, gm, wm]), 0)
    depth_mm = ndimage.distance_transform_edt(mask) * sp
    preds = {"joint": _lesion_as_wm(segment_scan(jm, jmeta, ls, {"T1": t1}, affine, mask=mask).labels, ls),
             "gmm": gmm_tissue_segmentation(t1, ls, mask=mask)}
    parts = {f"certainty {lo:g}-{min(hi, 1.0):g}": mask & (certainty >= lo) & (certainty < hi)
             for lo, hi in zip(CERTAINTY[:-1], CERTAINTY[1:])}
    parts.update({"edge (within 2 mm of the mask's edge)": mask & (depth_mm <= 2.0),
                  "deep (more than 2 mm in)": mask & (depth_mm > 2.0)})
    rows = {}
    for part, where in parts.items():
        row = {"voxels": int(where.sum()), "reference_share": {n: float((ref[where] == i + 1).mean()) if where.any()
                                                                else None for i, n in enumerate(NAMES)}}
        for name, pred in preds.items():
            confusion = {f"{a}->{b}": int(((ref == i + 1) & (pred == j + 1) & where).sum())
                         for i, a in enumerate(NAMES) for j, b in enumerate(NAMES) if i != j}
            row[name] = {"wrong": int(((pred != ref) & where).sum()), "confusions": confusion}
        rows[part] = row
        print(f"{sp:g} mm, {part}: {row['voxels']} voxels; wrong: joint {row['joint']['wrong']}, "
              f"GMM {row['gmm']['wrong']}", flush=True)
    # the T1 intensity at which each labelling switches from CSF to GM: among brain voxels
    # labelled CSF or GM, the lowest intensity bin where fewer than half are CSF
    edges = np.quantile(t1[mask], np.linspace(0.0, 0.6, 61))
    switch = {}
    for name, lab in (("reference", ref), *preds.items()):
        sel = mask & np.isin(lab, (1, 2))
        idx = np.digitize(t1[sel], edges)
        share = [float((lab[sel][idx == k] == 1).mean()) if (idx == k).any() else np.nan for k in range(1, len(edges))]
        k = next((k for k, v in enumerate(share) if v < 0.5), None)
        switch[name] = None if k is None else float(edges[k])
    rows["csf_gm_switch_t1"] = switch
    print(f"{sp:g} mm, T1 intensity where CSF turns to GM: " + ", ".join(f"{k} {v:.3f}" for k, v in switch.items()))
    out["by_spacing"][f"{sp:g}mm"] = rows
if "--json" in sys.argv:
    with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
        json.dump(out, f, indent=2)
