"""``napari-medseg train|predict`` for the three adversarial methods (issue 18)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_medseg.cli import main
from napari_medseg.core.registry import Registry
from napari_medseg.methods.adversarial_segmentation.cardiac import cardiac_patient

SLUGS = ("adversarial_segmentation", "modality_transfer", "site_normalization")
NAMES = {"adversarial_segmentation": "chen_cardiac", "modality_transfer": "segan_tumour",
         "site_normalization": "delisle_normalization"}


@pytest.mark.parametrize("slug", SLUGS)
def test_train_saves_a_validated_version_and_predict_writes_one_file_per_input(slug, tmp_path, capsys):
    assert main(["train", slug, "--steps", "3", "--phantoms", "3" if slug != "site_normalization" else "2",
                 "--batch-size", "2"]) == 0
    shipped = [e.version for e in Registry().list(NAMES[slug]) if e.source == "shipped"]
    entry = Registry().get(NAMES[slug])
    assert entry.source == "user" and entry.version == max(shipped, default=0) + 1  # a new version, nothing replaced
    assert entry.meta["metrics"]  # validated on held-out phantoms
    stack = cardiac_patient(3, size=(64, 64)).images["LGE"].astype(np.float32)  # (slices, H, W)
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", stack)
    nib.save(nib.Nifti1Image(np.moveaxis(stack, 0, -1), np.diag([1.2, 1.2, 8.0, 1.0])), src / "b.nii.gz")
    out = tmp_path / "out"
    assert main(["predict", slug, str(src), "--out", str(out)]) == 0
    a = tifffile.imread(out / "a_labels.tif")
    img = nib.load(out / "b_labels.nii.gz")
    b = np.asarray(img.dataobj)
    assert a.shape == stack.shape and a.dtype == np.uint8
    assert np.allclose(img.affine, np.diag([1.2, 1.2, 8.0, 1.0]))  # the input's grid
    assert np.array_equal(np.moveaxis(b, -1, 0), a)  # NIfTI slices are its last axis, TIFF's its first
    before = (out / "a_labels.tif").read_bytes()
    assert main(["predict", slug, str(src), "--out", str(out)]) == 2  # outputs are never replaced
    assert "never replaced" in capsys.readouterr().err
    assert (out / "a_labels.tif").read_bytes() == before


def test_bad_arguments_are_one_clear_error(tmp_path, capsys):
    assert main(["train", "adversarial_segmentation", "--variant", "concat", "--steps", "1"]) == 2
    assert "--variant 'concat' is not one of" in capsys.readouterr().err
    assert main(["train", "modality_transfer", "--modality", "PD", "--steps", "1"]) == 2
    assert "--modality 'PD'" in capsys.readouterr().err
    assert main(["train", "site_normalization", "--domain", "nofolder", "--domain", "b=x", "--steps", "1"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    assert main(["predict", "modality_transfer", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o")]) == 2
    assert "neither an image file nor a folder" in capsys.readouterr().err
    assert [e for e in Registry().list("segan_tumour") if e.source == "user"] == []  # nothing was trained


def test_site_normalization_trains_on_the_users_domain_folders(tmp_path):
    rng = np.random.default_rng(0)
    specs = []
    for site, gain in (("scanner_a", 1.0), ("scanner_b", 300.0)):
        d = tmp_path / site
        d.mkdir()
        for i in range(2):
            lab = np.zeros((6, 32, 32), np.uint8)
            lab[:, 6:26, 6:26] = 1
            lab[:, 10:22, 10:22] = 2
            lab[:, 13:19, 13:19] = 3
            img = (gain * (lab * 0.3 + 0.05 * rng.standard_normal(lab.shape))).astype(np.float32)
            tifffile.imwrite(d / f"s{i}.tif", img)
            tifffile.imwrite(d / f"s{i}_labels.tif", lab)
        specs += ["--domain", f"{site}={d}"]
    assert main(["train", "site_normalization", "--steps", "2", "--batch-size", "2", *specs]) == 0
    entry = Registry().get("delisle_normalization")
    assert entry.source == "user"
    assert entry.meta["sites"] == ["scanner_a", "scanner_b"] and entry.meta["n_classes"] == 4
    assert "scanner_a (2 images)" in entry.meta["config"]["data"]
