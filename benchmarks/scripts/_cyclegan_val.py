"""Issue 22: the CycleGAN's validation crops (its CMU-1 validation rows and slideflow's tile,
which no report uses) and what each candidate generator scores on them: CIELAB distance
per stain, SSIM against the H&E, and the 2/4-px energy the generator adds to its input."""
import copy

import numpy as np
from torch import nn

from napari_medseg.bench import staining_real as sr
from napari_medseg.methods.staining import confocal, hne
from napari_medseg.methods.staining.metrics import ssim_rgb
from napari_medseg.methods.staining.pipeline import StainingNet, stain_array


def bilinear_copy(generator):
    """The generator with its nearest up-sampling switched to bilinear, same weights."""
    g = copy.deepcopy(generator)
    for m in g.modules():
        if isinstance(m, nn.Upsample):
            m.mode, m.align_corners = "bilinear", False
    return g


def crops(size: int = 256) -> list:
    cmu_val, sf = hne.split().val[0], hne.despeckle_split().val[0]
    return [cmu_val[:size, :size], cmu_val[-size:, -size:], sf[:size, :size], sf[-size:, -size:]]


def crop_scores(generators: dict, despeckler) -> dict:
    """{name: {"hematoxylin", "eosin", "ssim", "added": one value per crop}}, printed as it goes."""
    res = {}
    for name, gen in generators.items():
        rows = {"hematoxylin": [], "eosin": [], "ssim": [], "added": []}
        for i, he in enumerate(crops()):
            pair = confocal.confocal_pair(np.ascontiguousarray(he), seed=700 + i)
            masks = sr.stain_masks(pair.he)
            gar = stain_array(StainingNet(despeckler).eval(), pair.fcm, pair.rcm)
            rgb = stain_array(StainingNet(despeckler, gen).eval(), pair.fcm, pair.rcm)
            for st, m in masks.items():
                rows[st].append(sr.lab_distance(rgb, pair.he, m))
            rows["ssim"].append(ssim_rgb(rgb, pair.he))
            rows["added"].append(sr.checkerboard_ratio(rgb, np.clip(gar, 0, 1) * 255.0))
        res[name] = {k: [round(float(x), 4) for x in v] for k, v in rows.items()}
        print(name, {k: (round(float(np.nanmean(v)), 3) if k != "added" else v) for k, v in res[name].items()},
              flush=True)
    return res
