"""What the joint-model validation scripts share: the current models (joint, N, W), their
label set, and one model's probabilities on a scan's own grid. JOINT_VERSIONS="joint=3" (comma-separated
mode=version) takes those versions instead of the current ones."""
import os

import torch

from napari_medseg.bench.joint import _label_set, current_models
from napari_medseg.core.registry import Registry
from napari_medseg.methods.joint_lesion_tissue.models import BASELINE_NAMES
from napari_medseg.methods.joint_lesion_tissue.inference import scan_probabilities, usable_modalities

torch.set_num_threads(2)
models = current_models()
# another version than the current one: JOINT_VERSIONS="joint=3,tissue_only=4"
for _item in filter(None, os.environ.get("JOINT_VERSIONS", "").split(",")):
    _mode, _v = _item.split("=")
    _entry = Registry().get(BASELINE_NAMES[_mode], int(_v))
    models[_mode] = (*_entry.load("cpu"), _entry)
ls = _label_set(models)


def probs_of(mode, vols, affine, mask):
    """(probabilities on the scan grid, modalities used) of model ``mode`` on ``vols``."""
    model, meta, _ = models[mode]
    used, _ = usable_modalities(model.modalities, vols)
    return scan_probabilities(model, meta, ls, vols, affine, used, mask=mask), used
