"""Issue 16: does training on gyrified cortex (``train joint --data folded``) help?

Scores the current joint model and N (refined, as segment_scan does) and the GMM on
held-out single randomised subjects at 1.25 mm, T1 alone, the same brain mask for all:
with the gyrified cortex of real thickness (seeds 8_200_000+) and with the phantom's
thick cortical ribbon (seeds 8_100_000+), and with fsaverage5's cerebrum (``--data surface``,
seeds 8_300_000+), and drawn as population-average templates (``--average-share``, seeds
8_400_000+), and with the skull-stripped mask cut closer to the brain (``--tight-share``, seeds
8_500_000+). No training uses these seeds; never a real scan.
Run from the repository root: python benchmarks/scripts/joint_folded_val.py [N] [OUT.json] [KINDS],
KINDS a comma-separated subset of folded,ribbon,surface,average,tight (default all five)."""
import json
import sys

import numpy as np

from _joint import ls, models, probs_of
from napari_medseg.bench.joint import _lesion_as_wm
from napari_medseg.methods.joint_lesion_tissue import postprocess as P
from napari_medseg.methods.joint_lesion_tissue.baseline_gmm import gmm_tissue_segmentation
from napari_medseg.methods.joint_lesion_tissue.inference import model_mode, spacing_of
from napari_medseg.methods.joint_lesion_tissue.metrics import dice_per_class
from napari_medseg.methods.joint_lesion_tissue.synth import randomised_subject

SHAPE, SPACING = (128, 144, 128), (1.25, 1.25, 1.25)
KINDS = {"folded": (8_200_000, 1.0, 0.0), "ribbon": (8_100_000, 0.0, 0.0), "surface": (8_300_000, 0.0, 1.0),
         "average": (8_400_000, 0.5, 0.0, 1.0),  # population-average templates of gyrified or ribbon subjects
         "tight": (8_500_000, 0.5, 0.0, 0.0, 1.0)}  # gyrified or ribbon, the mask cut closer (0-4 mm of CSF off)


def dice(labels, ref):
    d = dice_per_class(_lesion_as_wm(labels, ls), ref, ls, ls.tissues)
    return [float(d[c]) for c in ("CSF", "grey matter", "white matter")]


def subject(kind: str, i: int) -> dict:
    """Held-out subject ``i`` of one kind: T1 alone, skull-stripped, no lesions."""
    base, p_folded, p_surface, p_average, p_tight = (*KINDS[kind], 0.0, 0.0)[:5]
    return randomised_subject(base + i, SHAPE, SPACING, lesions=False, flair=False, p_stripped=1.0,
                              p_folded=p_folded, p_surface=p_surface, p_average=p_average, p_tight=p_tight)


def main(argv):
    n = int(argv[1]) if len(argv) > 1 else 4
    out = {"versions": {mode: models[mode][1].get("version") for mode in models}}
    for kind in (argv[3].split(",") if len(argv) > 3 else list(KINDS)):
        rows = {"gmm": [], "joint": [], "N": []}
        for i in range(n):
            s = subject(kind, i)
            t1, ref, mask, affine = s["T1"], s["tissue"], s["brain"], s["affine"]
            rows["gmm"].append(dice(gmm_tissue_segmentation(t1, ls, mask=mask), ref))
            for mode, key in (("joint", "joint"), ("tissue_only", "N")):
                pr, used = probs_of(mode, {"T1": t1}, affine, mask)
                fin = P.finish(pr, {"T1": t1}, used, ls, spacing_of(affine), mode=model_mode(models[mode][1]),
                               mask=mask)
                rows[key].append(dice(fin.labels, ref))
            print(kind, i, {k: np.round(v[-1], 3).tolist() for k, v in rows.items()}, flush=True)
        out[kind] = {k: np.round(np.mean(v, 0), 4).tolist() for k, v in rows.items()}
        print(kind, "mean CSF / GM / WM", out[kind], flush=True)
    if len(argv) > 2:
        with open(argv[2], "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv)
