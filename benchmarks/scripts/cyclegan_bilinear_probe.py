"""Observation only (issue 22): does the CycleGAN's added 2/4-px energy come from nearest
up-sampling? The shipped stain_cyclegan with its nn.Upsample switched to bilinear, no retraining."""
import copy, json, torch
from torch import nn
torch.set_num_threads(2)
from napari_medseg.bench.staining_real import cyclegan_real, SIZES
from napari_medseg.bench.staining_slide import shipped_entry
desp = shipped_entry("despeckle").load("cpu")[0].eval()
g = shipped_entry("stain_cyclegan").load("cpu")[0].eval()
out = {"nearest": cyclegan_real(desp, g, SIZES[False]["stain_size"])}
g2 = copy.deepcopy(g)
for m in g2.modules():
    if isinstance(m, nn.Upsample):
        m.mode = "bilinear"; m.align_corners = False
out["bilinear"] = cyclegan_real(desp, g2, SIZES[False]["stain_size"])
for k, r in out.items():
    print(k, r["cyclegan_checkerboard_added_by_crop"], r["cyclegan_color_distance"], round(r["cyclegan_ssim"], 3))
print(json.dumps(out, default=float)[:2000])
