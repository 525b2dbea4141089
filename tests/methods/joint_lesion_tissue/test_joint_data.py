"""Data for joint lesion + tissue segmentation: phantom, MNI152 test data, folder datasets."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.core.errors import InputError
from napari_medseg.methods.joint_lesion_tissue import datasets, mni
from napari_medseg.methods.joint_lesion_tissue.labels import FULL, REDUCED
from napari_medseg.core.phantoms.brain import brain_phantom
from napari_medseg.methods.joint_lesion_tissue.phantom import subject_seed, task_datasets, write_dataset

SMALL = (48, 56, 48)
SMALL_SPACING = (3.0, 3.0, 3.0)
CSF, GM, WM, LESION = 1, 2, 3, 7


@pytest.fixture(scope="module")
def patient():
    return brain_phantom(seed=0, lesions=(8, 15))


@pytest.fixture(scope="module")
def mni_patient():
    return mni.mni_with_lesions(seed=1, n_lesions=8, spacing=2.0)


@pytest.fixture(scope="module")
def small_sets():
    return task_datasets(1, 1, 1, seed=5, shape=SMALL, spacing=SMALL_SPACING)


def test_phantom_is_deterministic_per_seed():
    a, b = brain_phantom(SMALL, seed=3, spacing=SMALL_SPACING), brain_phantom(SMALL, seed=3, spacing=SMALL_SPACING)
    c = brain_phantom(SMALL, seed=4, spacing=SMALL_SPACING)
    for name in ("t1", "flair", "tissue", "lesion", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.tissue, c.tissue)
    assert np.abs(a.t1 - c.t1).mean() > 0.01


def test_phantom_anatomy_and_lesions(patient):
    assert patient.t1.dtype == patient.flair.dtype == np.float32
    assert patient.tissue.dtype == patient.labels.dtype == patient.lesion.dtype == np.uint8
    assert set(np.unique(patient.labels)) == set(range(FULL.n_classes))
    assert LESION not in patient.tissue
    brain = patient.labels >= GM  # parenchyma
    for cls in (GM, WM):
        assert 0.20 <= (patient.tissue[brain] == cls).mean() <= 0.55
    lesion = patient.lesion.astype(bool)
    assert (patient.tissue[lesion] == WM).all()  # only inside the anatomy's white matter
    np.testing.assert_array_equal(patient.labels, np.where(lesion, LESION, patient.tissue))
    assert 3 <= ndimage.label(lesion)[1] <= 15
    np.testing.assert_allclose(np.diag(patient.affine)[:3], patient.spacing)
    # skull and scalp: intensity outside the brain, so "no brain" is meaningful
    outside = patient.tissue == 0
    assert (patient.t1[outside] > 0.5).mean() > 0.01


def test_phantom_contrasts(patient):
    t1, fl, lab = patient.t1, patient.flair, patient.labels
    mean = lambda img, c: float(img[lab == c].mean())  # noqa: E731
    assert mean(t1, WM) > mean(t1, GM) > mean(t1, CSF)
    assert mean(t1, LESION) < mean(t1, WM)
    assert mean(fl, LESION) > mean(fl, WM) and mean(fl, GM) > mean(fl, WM) > mean(fl, CSF)
    assert not np.allclose(t1[lab == WM].std(), 0)  # noise and bias, not flat classes


def test_reduced_label_set_and_controls():
    ph = brain_phantom(SMALL, seed=2, label_set="reduced", lesions=4, spacing=SMALL_SPACING)
    REDUCED.check(ph.labels)
    assert set(np.unique(ph.tissue)) == {0, 1, 2, 3}
    assert REDUCED.lesion in ph.labels
    control = brain_phantom(SMALL, seed=2, lesions=False, spacing=SMALL_SPACING)
    assert control.lesion.sum() == 0 and LESION not in control.labels


def test_task_datasets_are_task_specific(small_sets):
    ctrl, pat, test = small_sets["control"][0], small_sets["patient"][0], small_sets["test"][0]
    assert {"T1", "tissue"} <= set(ctrl) and not {"FLAIR", "lesion", "labels"} & set(ctrl)
    assert {"T1", "FLAIR", "lesion"} <= set(pat) and not {"tissue", "labels"} & set(pat)
    assert {"T1", "FLAIR", "labels", "tissue", "lesion"} <= set(test)
    assert LESION not in ctrl["tissue"] and test["lesion"].any() and pat["lesion"].any()
    seeds = [s["seed"] for v in small_sets.values() for s in v]
    assert len(set(seeds)) == 3 and seeds[0] == subject_seed(5, "control", 0)
    assert len({subject_seed(0, w, i) for w in ("control", "patient", "test") for i in range(50)}) == 150


@pytest.mark.parametrize("description", ["dataset.csv", "dataset.yaml"])
def test_write_read_round_trip(tmp_path, small_sets, description):
    subjects = [s for v in small_sets.values() for s in v]
    path = write_dataset(subjects, tmp_path, description)
    rows = datasets.read_description(path)
    assert [r["label_set"] for r in rows] == ["tissue", "lesion", "joint"]
    for row, subj in zip(rows, subjects):
        loaded = datasets.load_subject(row, tmp_path)
        np.testing.assert_allclose(loaded["affine"], subj["affine"])
        assert loaded["spacing"] == pytest.approx(SMALL_SPACING)
        np.testing.assert_allclose(loaded["T1"], subj["T1"], atol=1e-6)
        assert ("FLAIR" in loaded) == ("FLAIR" in subj)
        key = datasets.TASKS[row["label_set"]]
        np.testing.assert_array_equal(loaded[key], subj[key])


def test_description_parsing(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("Subject,t1,Flair,T2,label,label_set\ns1,a.nii.gz,b.nii.gz,,l.nii.gz,lesion\n")
    (row,) = datasets.read_description(csv_path)
    assert row == {"subject": "s1", "T1": "a.nii.gz", "FLAIR": "b.nii.gz", "label": "l.nii.gz",
                   "label_set": "lesion", "classes": "full"}
    yaml_path = tmp_path / "d.yaml"
    yaml_path.write_text("classes: reduced\nsubjects:\n  - {subject: s2, T1: x.nii, label: y.nii, label_set: tissue}\n")
    assert datasets.read_description(yaml_path)[0]["classes"] == "reduced"
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,T1,FLAR\ns1,a.nii,b.nii\n")
    with pytest.raises(InputError, match="unknown column 'FLAR'"):
        datasets.read_description(bad)
    bad.write_text("subject,T1,label\ns1,a.nii,l.nii\n")
    with pytest.raises(InputError, match="label_set"):
        datasets.read_description(bad)


def _save(path, data, affine):
    nib.Nifti1Image(np.asarray(data), affine).to_filename(str(path))
    return path.name


@pytest.fixture
def folder(tmp_path, small_sets):
    s = small_sets["test"][0]
    _save(tmp_path / "t1.nii.gz", s["T1"], s["affine"])
    _save(tmp_path / "fl.nii.gz", s["FLAIR"], s["affine"])
    _save(tmp_path / "lab.nii.gz", s["labels"], s["affine"])
    return tmp_path, s


def _row(**kw):
    row = {"subject": "s", "T1": "t1.nii.gz", "FLAIR": "fl.nii.gz", "label": "lab.nii.gz",
           "label_set": "joint", "classes": "full"}
    row.update(kw)
    return {k: v for k, v in row.items() if v is not None}


def test_bad_inputs_raise_one_clear_error(folder):
    base, s = folder
    assert datasets.load_subject(_row(), base)["labels"].max() == LESION  # the good case loads
    shifted = s["affine"].copy()
    shifted[0, 3] += 5.0
    cases = {
        "resample_to": _row(FLAIR=_save(base / "shift.nii.gz", s["FLAIR"], shifted)),
        "is not on the T1 grid": _row(FLAIR=_save(base / "crop.nii.gz", s["FLAIR"][:-2], s["affine"])),
        "outside 0..7": _row(label=_save(base / "bad.nii.gz", s["labels"] + 2, s["affine"])),
        "tissue label file": _row(label="lab.nii.gz", label_set="tissue"),  # lesion class in tissue
        "4-D": _row(FLAIR=_save(base / "4d.nii.gz", np.stack([s["FLAIR"]] * 2, -1), s["affine"])),
        "no brain": _row(FLAIR=_save(base / "zero.nii.gz", np.zeros_like(s["FLAIR"]), s["affine"])),
        "needs T1": _row(T1=None),
    }
    before = {p.name: p.stat().st_mtime_ns for p in base.iterdir()}
    for words, row in cases.items():
        with pytest.raises(InputError, match=words):
            datasets.load_subject(row, base)
    assert {p.name: p.stat().st_mtime_ns for p in base.iterdir()} == before  # nothing modified
    with pytest.raises(InputError, match="no brain"):
        datasets.check_brain(np.full((20, 20, 20), 3.0) + 1e-9 * np.arange(8000).reshape(20, 20, 20), "x")


def test_resample_to_follows_the_affines(small_sets):
    s = small_sets["test"][0]
    same = datasets.resample_to(s["affine"], s["T1"].shape, s["T1"], s["affine"])
    np.testing.assert_allclose(same, s["T1"], atol=1e-5)
    moved = s["affine"].copy()
    moved[:3, 3] += np.asarray(SMALL_SPACING) * (2, 0, 0)  # the same image, two voxels along i
    back = datasets.resample_to(s["affine"], s["T1"].shape, s["T1"][2:], moved)
    np.testing.assert_allclose(back[2:-2], s["T1"][2:-2], atol=1e-5)


def test_mni_loader_and_reference_labels():
    t1, gm, wm, affine = mni.mni152(spacing=2.0)
    assert t1.shape == gm.shape == wm.shape and affine.shape == (4, 4)
    np.testing.assert_allclose(np.diag(affine)[:3], 2.0)
    t1_1mm, _, _, aff_1mm = mni.mni152()
    # the 2 mm voxel (0,0,0) is the mean of the 1 mm voxels it covers, placed at their centre
    np.testing.assert_allclose(affine[:3, 3], aff_1mm[:3, :3] @ [0.5, 0.5, 0.5] + aff_1mm[:3, 3])
    assert t1[10, 20, 30] == pytest.approx(t1_1mm[20:22, 40:42, 60:62].mean(), abs=1e-5)
    ref = mni.mni_reference_labels(gm, wm)
    assert set(np.unique(ref)) == {0, 2, 3}
    assert gm[ref == 2].min() > 0.5 and wm[ref == 3].min() > 0.5


def test_mni_with_lesions(mni_patient):
    p = mni_patient
    lesion = p.lesion.astype(bool)
    assert lesion.sum() > 50 and p.wm[lesion].min() > 0.8  # only where WM probability is high
    REDUCED.check(p.labels)
    assert (p.labels[lesion] == REDUCED.lesion).all() and {2, 3} <= set(np.unique(p.labels))
    wm = p.labels == 3
    assert p.t1[lesion].mean() < p.t1[wm].mean()
    assert p.flair[lesion].mean() > p.flair[wm].mean() and p.flair[p.labels == 2].mean() > p.flair[wm].mean()


def test_preprocess_normalises_inside_the_brain(patient):
    out = datasets.preprocess({"T1": patient.t1, "FLAIR": patient.flair}, patient.affine, spacing=(3.0, 3.0, 3.0))
    np.testing.assert_allclose(np.diag(out.affine)[:3], 3.0, atol=1e-6)
    assert out.images["T1"].shape == out.mask.shape == (48, 56, 48)
    for img in out.images.values():
        assert img.dtype == np.float32 and np.isfinite(img).all()
        assert abs(img[out.mask].mean()) < 1e-3 and img[out.mask].std() == pytest.approx(1.0, abs=1e-3)
    brain = datasets.preprocess({"T1": patient.t1}, patient.affine, (3.0, 3.0, 3.0), mask=patient.labels >= GM)
    assert brain.mask.sum() < out.mask.sum()
    assert brain.images["T1"][~brain.mask].max() == 0.0


def test_the_mni_sample_without_nilearn_is_one_message_naming_the_extra(monkeypatch):
    import importlib.util

    from napari_medseg.core.errors import InputError
    from napari_medseg.methods.joint_lesion_tissue import mni

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nilearn" else real(name, *a))
    with pytest.raises(InputError, match=r"napari-medseg\[samples\]"):
        mni.mni152(spacing=2.0)
