"""Volumes in mL, lesion count and volume, Dice per class."""

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.joint_lesion_tissue.labels import REDUCED
from napari_medseg.methods.joint_lesion_tissue.metrics import dice_per_class, lesion_stats, volumes_ml


def test_volumes_and_lesions_in_physical_units():
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[:10] = 3  # white matter: 4000 voxels
    lab[2:4, 2:4, 2:4] = 4  # one lesion of 8 voxels ...
    lab[7:9, 15:17, 15:17] = 4  # ... and another, apart from it
    v = volumes_ml(lab, REDUCED, (2.0, 2.0, 2.0))  # 8 mm^3 per voxel
    assert v["white matter"] == pytest.approx((4000 - 16) * 0.008) and v["lesion"] == pytest.approx(16 * 0.008)
    assert v["grey matter"] == 0 and "background" not in v
    s = lesion_stats(lab, REDUCED, (2.0, 2.0, 2.0))
    assert s["lesion_count"] == 2 and s["lesion_volume_ml"] == pytest.approx(0.128)
    with pytest.raises(InputError, match="spacing"):
        volumes_ml(lab, REDUCED, (1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="outside"):
        volumes_ml(lab + 5, REDUCED, (1, 1, 1))


def test_dice_per_class():
    ref = np.zeros((10, 10), np.uint8)
    ref[:5] = 2
    ref[5:] = 3
    pred = ref.copy()
    pred[4] = 3  # one row of grey matter called white matter
    d = dice_per_class(pred, ref, REDUCED)
    assert d["grey matter"] == pytest.approx(2 * 40 / (40 + 50))
    assert d["white matter"] == pytest.approx(2 * 50 / (60 + 50))
    assert np.isnan(d["lesion"])  # absent from both: not scored
    with pytest.raises(InputError, match="differ in shape"):
        dice_per_class(pred[:5], ref, REDUCED)
