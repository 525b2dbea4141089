"""Touching objects split into instances (issue 17, item 2) and object F1 on instances."""

import numpy as np
import pytest
import tifffile

from napari_medseg.core.errors import InputError
from napari_medseg.methods.box_iterative.instances import expected_radius, split_instances
from napari_medseg.methods.box_iterative.metrics import object_scores


def _discs(centres, r=12, shape=(100, 140)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, 1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return out


def test_two_touching_discs_become_two_instances_and_one_ellipse_stays_one():
    truth = _discs([(50, 40), (50, 60), (50, 110)])  # the first two overlap: one component
    inst = split_instances(truth > 0, radius=12)
    assert inst.max() == 3
    assert object_scores(truth > 0, truth, iou=0.75, gt_instances=True)["f1"] < 0.7  # merged as components
    assert object_scores(inst, truth, iou=0.75, gt_instances=True, pred_instances=True)["f1"] == 1.0
    yy, xx = np.mgrid[:100, :140]
    ellipse = ((yy - 50) / 10.0) ** 2 + ((xx - 70) / 30.0) ** 2 <= 1
    assert split_instances(ellipse, radius=10).max() == 1  # elongated, not cut at every bump


def test_real_nuclei_mask_splits_closer_to_its_instances():
    """stardist's bundled fluorescence nuclei with their instance mask (real, annotated)."""
    from importlib.util import find_spec
    from pathlib import Path

    from skimage.measure import regionprops

    folder = Path(find_spec("stardist").submodule_search_locations[0]) / "data" / "images"
    mask = tifffile.imread(folder / "mask2d.tif")
    radius = expected_radius([p.bbox for p in regionprops(mask)])
    inst = split_instances(mask > 0, radius)
    merged = object_scores(mask > 0, mask, iou=0.75, gt_instances=True)["f1"]
    split = object_scores(inst, mask, iou=0.75, gt_instances=True, pred_instances=True)["f1"]
    assert split > merged + 0.1, (merged, split)


def test_bad_masks():
    assert split_instances(np.zeros((20, 20)), 5).max() == 0
    with pytest.raises(InputError, match="2-D"):
        split_instances(np.ones((3, 20, 20)), 5)
    with pytest.raises(InputError, match="No boxes"):
        expected_radius(np.zeros((0, 4)))
    assert expected_radius([[0, 0, 10, 30], [0, 0, 20, 20]]) == pytest.approx(7.5)
