"""`napari-medseg predict joint`: a folder of subjects -> labels on each input grid + a volumes table."""

import csv

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.methods.joint_lesion_tissue.batch import subject_id
from napari_medseg.methods.joint_lesion_tissue.datasets import write_image
from napari_medseg.core.phantoms.brain import brain_phantom


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("subjects")
    t1_dir, fl_dir, mask_dir = root / "t1", root / "flair", root / "masks"
    for d in (t1_dir, fl_dir, mask_dir):
        d.mkdir()
    subjects = {"sub01": brain_phantom((48, 54, 48), 11, "reduced", lesions=4, spacing=(2.5, 2.5, 2.5)),
                "sub02": brain_phantom((40, 46, 40), 12, "reduced", lesions=4, spacing=(3.0, 3.0, 3.0))}
    for sid, ph in subjects.items():
        write_image(t1_dir / f"{sid}_T1.nii.gz", ph.t1, ph.affine)
        write_image(fl_dir / f"{sid}_FLAIR.nii.gz", ph.flair, ph.affine)
    write_image(mask_dir / "sub02_mask.nii.gz", (subjects["sub02"].labels > 0).astype(np.float32),
                subjects["sub02"].affine)
    return root, subjects


def test_subject_names_drop_modality_words():
    from pathlib import Path

    assert subject_id(Path("sub01_T1.nii.gz")) == "sub01" == subject_id(Path("sub01-flair.nii"))
    assert subject_id(Path("sub01_T1w.nii.gz")) == "sub01" == subject_id(Path("sub01_brainmask.nii.gz"))
    assert subject_id(Path("scan.nii.gz")) == "scan"


def test_folder_of_two_subjects_with_different_voxel_sizes(folders, tmp_path, monkeypatch, capsys, one_thread):
    from napari_medseg import cli

    root, subjects = folders
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))  # the shipped models only
    out = tmp_path / "out"
    argv = ["predict", "joint", "--t1", str(root / "t1"), "--flair", str(root / "flair"), "--mask",
            str(root / "masks"), "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "volumes.csv").open()))
    assert [r["subject"] for r in rows] == ["sub01", "sub02"] and not any(r["error"] for r in rows)
    for r in rows:
        ph = subjects[r["subject"]]
        img = nib.load(str(out / r["labels_file"]))
        labels = np.asarray(img.dataobj)
        assert labels.shape == ph.t1.shape and np.allclose(img.affine, ph.affine)  # the input grid, affine kept
        voxel_ml = float(np.prod(ph.spacing)) / 1000
        assert float(r["white matter (mL)"]) == pytest.approx((labels == 3).sum() * voxel_ml, abs=1e-3)
        assert int(r["lesion count"]) >= 0 and r["modalities"] == "T1+FLAIR"
        dice = 2 * ((labels == 3) & (ph.labels == 3)).sum() / ((labels == 3).sum() + (ph.labels == 3).sum())
        assert dice > 0.6, (r["subject"], dice)  # a real segmentation, on either voxel size
    masked = np.asarray(nib.load(str(out / "sub02_labels.nii.gz")).dataobj)
    assert (masked[subjects["sub02"].labels == 0] == 0).all() and "mask sub02_mask" in rows[1]["notes"]
    before = (out / "volumes.csv").read_bytes()
    assert cli.main(argv) == 2  # never replaces what it wrote
    assert "exists" in capsys.readouterr().err and (out / "volumes.csv").read_bytes() == before


@pytest.mark.slow
def test_a_two_worker_cluster_writes_the_same_labels_and_table(folders, tmp_path, monkeypatch, capsys):
    """One subject per task on a LocalCluster of 2 workers: the same labels and the same
    volumes table as the serial run (issue 21)."""
    pytest.importorskip("distributed")
    from napari_medseg import cli

    root, _subjects = folders
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    base = ["predict", "joint_lesion_tissue", "--t1", str(root / "t1"), "--flair", str(root / "flair"), "--mask",
            str(root / "masks"), "--device", "cpu"]
    assert cli.main([*base, "--out", str(tmp_path / "serial")]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "spread"), "--scheduler", "local:2"]) == 0, capsys.readouterr().err
    serial = list(csv.DictReader((tmp_path / "serial" / "volumes.csv").open()))
    spread = list(csv.DictReader((tmp_path / "spread" / "volumes.csv").open()))
    assert serial == spread and [r["subject"] for r in spread] == ["sub01", "sub02"]
    for r in serial:
        a = np.asarray(nib.load(str(tmp_path / "serial" / r["labels_file"])).dataobj)
        b = np.asarray(nib.load(str(tmp_path / "spread" / r["labels_file"])).dataobj)
        np.testing.assert_array_equal(a, b)


def test_bad_batches_fail_before_anything_is_written(folders, tmp_path, monkeypatch, capsys):
    from napari_medseg import cli

    root, _ = folders
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    orphan = tmp_path / "flair_only"
    orphan.mkdir()
    (orphan / "sub09_FLAIR.nii.gz").write_bytes((root / "flair" / "sub01_FLAIR.nii.gz").read_bytes())
    out = tmp_path / "o"
    assert cli.main(["predict", "joint", "--t1", str(root / "t1"), "--flair", str(orphan), "--out", str(out)]) == 2
    assert "without a T1" in capsys.readouterr().err and not any(out.glob("*"))
    assert cli.main(["predict", "joint", "--t1", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sub05_T1.nii.gz").write_bytes(b"not a nifti")
    assert cli.main(["predict", "joint", "--t1", str(broken), "--out", str(tmp_path / "o2")]) == 1
    rows = list(csv.DictReader((tmp_path / "o2" / "volumes.csv").open()))
    assert rows[0]["subject"] == "sub05" and rows[0]["error"]  # reported per subject, not a crash


def test_any_orientation_gives_the_same_labels(folders, tmp_path, monkeypatch, one_thread):
    """A scan stored LPS with its axes permuted is reoriented to RAS before the network."""
    from napari_medseg.core.registry import Registry
    from napari_medseg.methods.joint_lesion_tissue.inference import segment_scan
    from napari_medseg.methods.joint_lesion_tissue.models import label_set_of

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    _, subjects = folders
    ph = subjects["sub01"]
    model, meta = Registry().get("joint_lesion_tissue").load()
    ls = label_set_of(meta)
    ras = segment_scan(model, meta, ls, {"T1": ph.t1}, ph.affine).labels
    # flip the first two axes (LPS-like) and swap axes 0 and 2, with the affine that says so
    data = np.transpose(ph.t1[::-1, ::-1, :], (2, 1, 0))
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(ph.t1.shape[:2]) - 1
    perm = np.eye(4)[[2, 1, 0, 3]]
    affine = ph.affine @ flip @ perm
    other = segment_scan(model, meta, ls, {"T1": data}, affine).labels
    back = np.transpose(other, (2, 1, 0))[::-1, ::-1, :]
    assert back.shape == ras.shape and (back == ras).mean() > 0.99
