"""Issue 17: shipped glomeruli versions scored as the recipe scores its rounds.

The recipe's six validation slides (seeds 301-306, 2048 px, hard generator) decide whether a
retrained model ships; the bench's six held-out slides (seeds 90401-90406) are scored after
that decision only, for the record. Object matching and instance splitting as in the recipe:
predicted objects under a quarter of the smallest IS-train1 box do not count, and the
distance-watershed radius comes from the IS-train1 boxes.
Run from the repository root:
python benchmarks/scripts/glomeruli_ship_check.py val|test VERSION [VERSION ...] [--json FILE]"""
import json
import sys
import tempfile

import torch

from napari_medseg.bench.box_iterative import _test_scores
from napari_medseg.core.registry import Registry
from napari_medseg.methods.box_iterative.recipe import SEEDS, Recipe
from napari_medseg.methods.box_iterative.stages import IterativeTraining

torch.set_num_threads(2)
args = sys.argv[1:]
out = args[args.index("--json") + 1] if "--json" in args else None
args = [a for a in args if a != "--json" and a != out]
split, versions = args[0], [int(v) for v in args[1:]]
recipe = Recipe()
# the recipe's session, given its Stage-1 slides, sets the speck size and the instance radius
session = IterativeTraining(workdir=tempfile.mkdtemp(prefix="glomeruli-check-"))
train1 = recipe.slides("train1")
session.set_stage1([s.rgb for s in train1], [s.boxes for s in train1])
min_area, radius = session.min_object_area(), session.object_radius()
keys = ("object_f1", "object_f1_iou75", "object_precision", "object_recall", "pixel_f1", "n_true_objects")
scores = _test_scores(Registry(), versions, recipe.slides(split), "cpu", min_area, radius)
results = {}
for v, sc in zip(versions, scores):
    results[f"v{v}"] = {k: float(sc[k]) for k in keys}
    print(f"{split}: glomeruli v{v} " + " ".join(f"{k} {x:.4f}" for k, x in results[f"v{v}"].items()), flush=True)
if out:
    with open(out, "w") as f:
        json.dump({"split": split, "slide_seeds": list(SEEDS[split]), "min_object_area": min_area, "radius_px": radius,
                   "versions": results}, f, indent=2)
