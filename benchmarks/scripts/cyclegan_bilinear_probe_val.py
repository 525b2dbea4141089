"""Issue 22, the validation side: the same comparison (nearest vs bilinear up-sampling in the
shipped stain_cyclegan, no retraining) on images that no report uses: the CycleGAN's own
validation rows of CMU-1 and slideflow's tile (the despeckler's validation source)."""
import copy, json
import numpy as np, torch
from torch import nn
torch.set_num_threads(2)
from napari_medseg.bench import staining_real as sr
from napari_medseg.bench.staining_slide import shipped_entry
from napari_medseg.methods.staining import confocal, hne
from napari_medseg.methods.staining.metrics import ssim_rgb
from napari_medseg.methods.staining.pipeline import StainingNet, stain_array

desp = shipped_entry("despeckle").load("cpu")[0].eval()
g = shipped_entry("stain_cyclegan").load("cpu")[0].eval()
gb = copy.deepcopy(g)
for m in gb.modules():
    if isinstance(m, nn.Upsample):
        m.mode, m.align_corners = "bilinear", False
cmu_val = hne.split().val[0]
sf = hne.despeckle_split().val[0]
s = 256
crops = [cmu_val[:s, :s], cmu_val[-s:, -s:], sf[:s, :s], sf[-s:, -s:]]
print([c.shape for c in crops])
res = {}
for name, gen in (("nearest", g), ("bilinear", gb)):
    rows = {"hematoxylin": [], "eosin": [], "ssim": [], "added": []}
    for i, he in enumerate(crops):
        pair = confocal.confocal_pair(np.ascontiguousarray(he), seed=700 + i)
        masks = sr.stain_masks(pair.he)
        gar = stain_array(StainingNet(desp).eval(), pair.fcm, pair.rcm)
        rgb = stain_array(StainingNet(desp, gen).eval(), pair.fcm, pair.rcm)
        for st, m in masks.items():
            rows[st].append(sr.lab_distance(rgb, pair.he, m))
        rows["ssim"].append(ssim_rgb(rgb, pair.he))
        rows["added"].append(sr.checkerboard_ratio(rgb, np.clip(gar, 0, 1) * 255.0))
    res[name] = {k: [round(float(x), 4) for x in v] for k, v in rows.items()}
    print(name, {k: (round(float(np.nanmean(v)), 3) if k != "added" else v) for k, v in res[name].items()})
print(json.dumps(res))
