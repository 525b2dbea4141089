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

import numpy as np
import torch

from napari_medseg.bench.box_iterative import predict_labels
from napari_medseg.core.registry import Registry
from napari_medseg.methods.box_iterative.instances import expected_radius
from napari_medseg.methods.box_iterative.metrics import pooled_scores
from napari_medseg.methods.box_iterative.model import model_from_entry
from napari_medseg.methods.box_iterative.recipe import SEEDS, Recipe

torch.set_num_threads(2)
args = sys.argv[1:]
out = args[args.index("--json") + 1] if "--json" in args else None
args = [a for a in args if a != "--json" and a != out]
split, versions = args[0], [int(v) for v in args[1:]]
recipe = Recipe()
boxes = [s.boxes for s in recipe.slides("train1")]
min_area = int(0.25 * min(int(np.min((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))) for b in boxes))
radius = expected_radius(np.concatenate(boxes))
slides = recipe.slides(split)
reg = Registry()
results = {}
for v in versions:
    model, _ = model_from_entry(reg.get("glomeruli", v), "cpu")
    pairs = [(predict_labels(model, s.rgb, "cpu"), s.instances) for s in slides]
    loose = pooled_scores(pairs, min_area, gt_instances=True, radius=radius)
    strict = pooled_scores(pairs, min_area, iou=0.75, gt_instances=True, radius=radius)
    results[f"v{v}"] = {"object_f1": float(loose["object_f1"]), "object_f1_iou75": float(strict["object_f1"]),
                        "object_precision": float(loose["object_precision"]),
                        "object_recall": float(loose["object_recall"]), "pixel_f1": float(loose["pixel_f1"]),
                        "n_true_objects": int(loose["n_true_objects"])}
    print(f"{split}: glomeruli v{v} " + " ".join(f"{k} {x:.4f}" for k, x in results[f"v{v}"].items()), flush=True)
if out:
    with open(out, "w") as f:
        json.dump({"split": split, "slide_seeds": list(SEEDS[split]),
                   "min_object_area": min_area, "radius_px": radius, "versions": results}, f, indent=2)
