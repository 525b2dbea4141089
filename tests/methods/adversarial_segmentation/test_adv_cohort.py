"""The Qt-free data paths that the three adversarial docks call (issue 18: method logic out of
the widget layer): Chen's training cohort, the transfer splits, the normalisation domains."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.adversarial_segmentation.cardiac import cardiac_patient
from napari_medseg.methods.adversarial_segmentation.chen import ChenConfig
from napari_medseg.methods.adversarial_segmentation.cohort import (Patient, class_dice, class_labels, pseudo_masks,
                                                                   training_cohort)
from napari_medseg.methods.modality_transfer.data import source_split, target_split, volume_from_stack
from napari_medseg.methods.site_normalization.data import held_out_split, n_classes_of, training_pairs


def _patient(pid="P1", lge=True, seed=0):
    c = cardiac_patient(seed, size=(48, 48))
    images = {s: c.images[s] for s in ("bSSFP", "T2", "LGE") if lge or s != "LGE"}
    return Patient(pid, images, {s: c.labels[s] for s in ("bSSFP", "T2")}, c.labels["LGE"] if lge else None)


def test_mscmr_codes_become_classes_and_other_values_are_refused():
    notes: list = []
    lab = np.array([[0, 500], [200, 600]])
    assert class_labels(lab, "P1 bSSFP labels", notes).tolist() == [[0, 1], [2, 3]]
    assert notes and "MS-CMR" in notes[0]
    with pytest.raises(InputError, match="P1 bSSFP labels hold values"):
        class_labels(np.array([[0, 7]]), "P1 bSSFP labels", [])


def test_cohort_pairs_sources_with_lge_and_validates_on_lge_labels():
    cfg = ChenConfig(method="adversarial_transfer", steps=4, pretrain_steps=2, size=(48, 48))
    out = training_cohort([_patient("P1"), _patient("P1", seed=1)], cfg)
    assert [p.id for p in out["patients"]] == ["P1 (1)", "P1 (2)"]  # one id twice: numbered
    assert len(out["train"]) == 2 and len(out["val"]) == 2
    assert out["pairs"] > 0 and out["slices"] > 0
    masks = pseudo_masks(out["patients"][0])
    lge = out["patients"][0].images["LGE"]
    assert set(masks) == {"bSSFP", "T2"} and masks["T2"][0].shape == lge.shape


def test_cohort_refuses_weak_transfer_without_a_target_image():
    cfg = ChenConfig(method="adversarial_transfer", steps=4, pretrain_steps=2, size=(48, 48))
    with pytest.raises(InputError, match="Empty target set"):
        training_cohort([_patient(lge=False)], cfg)
    assert len(training_cohort([_patient(lge=False)], ChenConfig(method="unet", steps=4, pretrain_steps=0,
                                                                 size=(48, 48)))["train"]) == 1


def test_class_dice_names_the_classes_present():
    a = np.zeros((1, 8, 8), np.uint8)
    a[0, :4] = 1
    b = a.copy()
    b[0, :2] = 3
    d = class_dice(a, b)
    assert set(d) == {"LV", "RV"} and d["LV"] == pytest.approx(2 * 16 / (32 + 16))


def _volumes(n=4, slices=12):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = rng.random((slices, 16, 16)).astype(np.float32) + 0.1
        mask = np.zeros(img.shape, np.uint8)
        mask[:, 4:8, 4:8] = 1
        out.append(volume_from_stack(f"v{i}", img, mask, (1.0, 1.0, 1.0), i))
    return out


def test_transfer_splits_are_subject_wise_and_refuse_empty_parts():
    vols = _volumes()
    train, val = source_split(vols, 0.3, 0, "T2")
    assert not set(train["subject"].tolist()) & set(val["subject"].tolist())
    tr, va, te = target_split(vols, [2, 3], 0.3, 0, "T2")
    assert set(tr["subject"].tolist()) == {0, 1} and set(va["subject"].tolist()) | set(te["subject"].tolist()) == {2, 3}
    with pytest.raises(InputError, match="training set is empty"):
        target_split(vols, [0, 1, 2, 3], 0.3, 0, "T2")


def test_normalisation_domains_hold_out_the_last_image_and_need_labels():
    rng = np.random.default_rng(1)

    def item(k, labelled=True):
        lab = np.zeros((10, 12, 12), np.uint8)
        lab[:, 3:9, 3:9] = 1 + k % 3
        return {"title": f"im{k}", "raw": rng.random((10, 12, 12)).astype(np.float32), "labels": lab if labelled else None}

    domains = [("a", [item(0), item(1), item(2)]), ("b", [item(3), item(4)])]
    assert n_classes_of(domains) == 4
    train, val, notes = held_out_split(domains, 2, True, 0)
    assert len(train["a"]) == 2 * 10 and len(val["a"]) == 8 and not notes  # 8 evenly spaced held-out slices
    train3, val3, notes3 = held_out_split(domains, 3, True, 0)
    assert len(train3["a"]) == 2 and len(train3["b"]) == 2 and notes3 and "b:" in notes3[0]
    assert training_pairs([item(5)], 3, False, False, 0)[0][0].shape == (10, 12, 12)
    with pytest.raises(InputError, match="has no labels"):
        n_classes_of([("a", [item(0, labelled=False)])])
