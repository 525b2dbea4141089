"""Issue 22: stain_cyclegan v4 (bilinear resize-convolution, fine-tuned) against v3 (nearest)
and v3 with bilinear switched on at inference, on validation crops only (the CycleGAN's
CMU-1 validation rows and slideflow's tile): colour, SSIM, and the 2/4-px energy the
generator adds to its input; then the training's own validation, which chose the
checkpoints. Run from benchmarks/scripts: python cyclegan_v4_val.py [OUT.json]."""
import json
import sys

import numpy as np
import torch

from _cyclegan_val import bilinear_copy, crop_scores
from napari_medseg.bench import staining_real as sr
from napari_medseg.bench.staining_slide import shipped_entry
from napari_medseg.methods.staining import confocal, hne
from napari_medseg.methods.staining.cyclegan_training import stain_preview
from napari_medseg.methods.staining.metrics import color_distance, ssim_rgb
from napari_medseg.methods.staining.pipeline import StainingNet, stain_array

torch.set_num_threads(2)
desp = shipped_entry("despeckle").load("cpu")[0].eval()
v3 = shipped_entry("stain_cyclegan", 3).load("cpu")[0].eval()
v3b = bilinear_copy(v3)
v4 = shipped_entry("stain_cyclegan", 4).load("cpu")[0].eval()
res = crop_scores({"v3": v3, "v3_bilinear_at_inference": v3b, "v4": v4}, desp)

# the training's own validation (what chose v3's and v4's checkpoints): derived pairs from
# the CMU-1 validation rows, colour distance and SSIM against the H&E they came from
val_pairs = [confocal.confocal_pair(he, seed=1000 + i) for i, he in enumerate(hne.split().val)]
val_gareau = [stain_array(StainingNet(despeckler=desp), p.fcm, p.rcm) for p in val_pairs]
own = {"gareau": {"color_distance": float(np.mean([color_distance(g, p.he) for g, p in zip(val_gareau, val_pairs)])),
                  "ssim": float(np.mean([ssim_rgb(g, p.he) for g, p in zip(val_gareau, val_pairs)]))}}
for name, gen in (("v3", v3), ("v3_bilinear_at_inference", v3b), ("v4", v4)):
    outs = [stain_preview(gen, g, "cpu") for g in val_gareau]
    own[name] = {"color_distance": float(np.mean([color_distance(o, p.he) for o, p in zip(outs, val_pairs)])),
                 "ssim": float(np.mean([ssim_rgb(o, p.he) for o, p in zip(outs, val_pairs)])),
                 "added": [round(float(sr.checkerboard_ratio(o, np.clip(g, 0, 1) * 255.0 if g.max() <= 1 else g)), 4)
                           for o, g in zip(outs, val_gareau)]}
print(json.dumps(own, indent=1))
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump({"validation_crops": res, "training_validation": own}, f, indent=1)
