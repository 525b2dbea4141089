"""The joint label set: the lesion is the last class, tissues sit between, bad values get one message."""

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.joint_lesion_tissue.labels import FULL, LABEL_SETS, REDUCED


def test_lesion_last_tissues_between():
    assert FULL.names[FULL.lesion] == "lesion" and REDUCED.names[REDUCED.lesion] == "lesion"
    assert FULL.tissues == (1, 2, 3, 4, 5, 6) and REDUCED.tissues == (1, 2, 3)
    assert all(len(s.names) == len(s.colours) == s.n_classes for s in LABEL_SETS.values())


def test_unexpected_label_values_are_named():
    REDUCED.check(np.array([[0, 1], [3, 4]]))  # fine
    with pytest.raises(InputError, match=r"values \[5, 9\] outside 0\.\.4"):
        REDUCED.check(np.array([0, 5, 9, 2]), "label image")
    with pytest.raises(InputError, match=r"\[-1\]"):
        FULL.check(np.array([-1, 0]))
