"""Issue 22, the validation side: the same comparison (nearest vs bilinear up-sampling in the
shipped stain_cyclegan, no retraining) on images that no report uses: the CycleGAN's own
validation rows of CMU-1 and slideflow's tile (the despeckler's validation source).
Run from benchmarks/scripts (it imports _cyclegan_val)."""
import json

import torch

from _cyclegan_val import bilinear_copy, crop_scores
from napari_medseg.bench.staining_slide import shipped_entry

torch.set_num_threads(2)
desp = shipped_entry("despeckle").load("cpu")[0].eval()
g = shipped_entry("stain_cyclegan", 3).load("cpu")[0].eval()
gb = bilinear_copy(g)
print(json.dumps(crop_scores({"nearest": g, "bilinear": gb}, desp)))
