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


# ------------------------------------------------------------ the instance head (boundary class)
def _boxes_of(inst):
    from napari_medseg.methods.box_iterative.boxes import boxes_from_instances

    return boxes_from_instances(inst)


def test_boundary_target_separates_touching_objects_in_overlapping_boxes():
    from napari_medseg.methods.box_iterative.instances import BOUNDARY, boundary_target, instances_from_classes

    truth = _discs([(50, 40), (50, 62), (50, 110)])  # the first two overlap by a few pixels
    binary = (truth > 0).astype(np.uint8)
    target = boundary_target(binary, _boxes_of(truth))
    assert set(np.unique(target)) == {0, 1, BOUNDARY}
    assert (target[binary == 0] == 0).all()  # background stays background
    # a vertical wall of boundary pixels between the two discs, where their boxes overlap
    assert (target[46:55, 49:53] == BOUNDARY).any(axis=1).all()
    # walls between objects only: a lone object is all interior; with outer=True it gets a rim
    assert target[50, 110] == 1 and target[50, 98] == 1 and target[50, 122] == 1
    rimmed = boundary_target(binary, _boxes_of(truth), outer=True)
    assert rimmed[50, 110] == 1 and rimmed[50, 98] == BOUNDARY and rimmed[50, 122] == BOUNDARY
    inst = instances_from_classes(target)
    assert inst.max() == 3
    assert object_scores(inst, truth, iou=0.75, gt_instances=True, pred_instances=True)["f1"] == 1.0
    # without boxes the touching pair is one object: no wall
    alone = boundary_target(binary, np.zeros((0, 4)))
    assert instances_from_classes(alone).max() == 2 and not (alone == BOUNDARY).any()
    # ... unless the distance watershed cuts it, given the object radius
    assert instances_from_classes(alone, radius=12).max() == 3


def test_boundary_target_keeps_unknown_and_draws_no_rim_against_it():
    from napari_medseg.methods.box_iterative.instances import BOUNDARY, UNKNOWN, boundary_target

    lab = np.zeros((40, 40), np.uint8)
    lab[10:30, 10:30] = 1
    lab[:, 20:] = np.where(lab[:, 20:] == 1, 1, UNKNOWN)  # the right side of the object borders unknown
    target = boundary_target(lab, [[10, 10, 30, 30]], outer=True)
    assert (target[lab == UNKNOWN] == UNKNOWN).all()
    assert target[20, 10] == BOUNDARY and target[20, 29] == 1  # rim on the known side only
    assert boundary_target(np.zeros((8, 8), np.uint8), []).max() == 0


def test_instances_from_classes_grows_seeds_over_boundary_and_drops_specks():
    from napari_medseg.methods.box_iterative.instances import instances_from_classes, to_instances

    classes = np.zeros((30, 60), np.uint8)
    classes[5:25, 5:55] = 2  # one slab of boundary ...
    classes[10:20, 10:25] = 1  # ... with two interiors in it
    classes[10:20, 35:50] = 1
    classes[0, 0] = 1  # a speck
    inst = instances_from_classes(classes, min_area=5)
    assert inst.max() == 2 and inst[0, 0] == 0
    assert (inst[5:25, 5:55] > 0).all()  # every boundary pixel went to a seed
    assert inst[15, 6] == inst[15, 15] != inst[15, 53] == inst[15, 40]
    with pytest.raises(InputError):
        instances_from_classes(np.zeros((2, 2, 2), np.uint8))
    # dispatch: a binary map (older two-class model) by its components or the distance watershed
    truth = _discs([(50, 40), (50, 60)])
    assert to_instances(truth > 0).max() == 1 and to_instances(truth > 0, radius=12).max() == 2
    assert np.array_equal(to_instances(classes, min_area=5), inst)
