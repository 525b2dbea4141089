"""``napari-medseg predict SLUG`` for every method, on the method's own sample data, with
the result checked against the sample's truth (issue 18: one method contract)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_medseg.cli import main
from napari_medseg.methods import METHODS


def _dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def _layers(func, *args):
    return {meta["name"]: data for data, meta, _kind in func(*args)}


def _tracking(tmp_path):
    from napari_medseg.methods.tracking.sample import synthetic_axon_sample
    from napari_medseg.methods.tracking.swc import read_swc

    layers = _layers(synthetic_axon_sample)
    tifffile.imwrite(tmp_path / "axon.tif", layers["synthetic axon (SI)"])
    (start,), (end,) = layers["start points"], layers["end points"]
    out = tmp_path / "axon.swc"
    argv = ["predict", "tracking", str(tmp_path / "axon.tif"), "--starts", f"{start[0]},{start[1]}",
            "--ends", f"{end[0]},{end[1]}", "--out", str(out)]
    assert main(argv) == 0
    nodes = np.concatenate(read_swc(out).traces)
    line = np.asarray(layers["ground-truth centreline"][0])
    off = np.min(np.linalg.norm(nodes[:, None] - line[None], axis=-1), axis=1)
    return {"reaches_end": float(np.min(np.linalg.norm(nodes - end, axis=1))), "on_axon": float(np.mean(off < 3))}, argv


def _box_iterative(tmp_path):
    from napari_medseg.methods.box_iterative.sample import kidney_sample
    from napari_medseg.core.io import read_image

    layers = _layers(kidney_sample, 512)
    tifffile.imwrite(tmp_path / "kidney.tif", layers["kidney A"], photometric="rgb")
    argv = ["predict", "box_iterative", str(tmp_path / "kidney.tif"), "--out", str(tmp_path / "kidney.zarr"),
            "--tile", "256"]
    assert main(argv) == 0
    levels, _ = read_image(tmp_path / "kidney.zarr")
    return {"dice": _dice(np.asarray(levels[0]), layers["kidney A true glomeruli"])}, argv


def _crop(seed=2019):
    from napari_medseg.methods.staining.sample import confocal_sample

    layers = _layers(confocal_sample, seed)
    sl = (slice(320, 704), slice(320, 704))
    return layers["FCM (nuclei)"][sl], layers["RCM (reflectance)"][sl], \
        layers["H&E (the truth the pair was derived from)"][sl]


def _staining(tmp_path):
    fcm, rcm, he = _crop()
    tifffile.imwrite(tmp_path / "fcm.tif", fcm)
    tifffile.imwrite(tmp_path / "rcm.tif", rcm)
    argv = ["predict", "staining", "--fcm", str(tmp_path / "fcm.tif"), "--rcm", str(tmp_path / "rcm.tif"),
            "--out", str(tmp_path / "he.zarr"), "--tile", "256"]
    assert main(argv) == 0
    import zarr

    rgb = np.moveaxis(np.asarray(zarr.open(str(tmp_path / "he.zarr"), mode="r")["0"]), 0, -1).astype(float)
    luma = lambda x: x @ [0.299, 0.587, 0.114]  # noqa: E731
    return {"luma_corr": float(np.corrcoef(luma(rgb).ravel(), luma(he.astype(float)).ravel())[0, 1])}, argv


def _despeckle(tmp_path):
    from scipy import ndimage

    _fcm, rcm, _he = _crop()
    tifffile.imwrite(tmp_path / "rcm.tif", rcm)
    argv = ["predict", "despeckle", str(tmp_path / "rcm.tif"), "--out", str(tmp_path / "out"), "--tile", "128"]
    assert main(argv) == 0
    out = tifffile.imread(tmp_path / "out" / "rcm_despeckled.tif")
    rough = lambda x: float(np.std(ndimage.laplace(x.astype(float) / max(float(np.ptp(x)), 1e-9))))  # noqa: E731
    return {"shape_kept": float(out.shape == rcm.shape), "roughness_ratio": rough(out) / rough(rcm)}, argv


def _joint(tmp_path):
    import nibabel as nib

    from napari_medseg.methods.joint_lesion_tissue.sample import brain_phantom_sample

    data = {meta["name"]: (d, meta) for d, meta, _k in brain_phantom_sample()}
    affine = np.asarray(data["T1"][1]["metadata"]["medseg_io"]["affine"])
    for name in ("T1", "FLAIR"):
        (tmp_path / name).mkdir()
        nib.save(nib.Nifti1Image(np.asarray(data[name][0], np.float32), affine), tmp_path / name / "sub1.nii.gz")
    out = tmp_path / "out"
    argv = ["predict", "joint_lesion_tissue", "--t1", str(tmp_path / "T1"), "--flair", str(tmp_path / "FLAIR"),
            "--out", str(out)]
    assert main(argv) == 0
    [written] = sorted(p for p in out.iterdir() if p.name.endswith(".nii.gz"))
    img = nib.load(written)
    pred, truth = np.asarray(img.dataobj), np.asarray(data["true labels"][0])
    assert np.allclose(img.affine, affine)
    return {"tissue_dice": float(np.mean([_dice(pred == c, truth == c) for c in (1, 2, 3)]))}, argv


def _slices(tmp_path, image, truth, slug):
    tifffile.imwrite(tmp_path / "stack.tif", np.asarray(image, np.float32))
    argv = ["predict", slug, str(tmp_path / "stack.tif"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    pred = tifffile.imread(tmp_path / "out" / "stack_labels.tif")
    assert pred.shape == np.shape(image)
    classes = [c for c in np.unique(truth) if c > 0]
    return {"dice": float(np.mean([_dice(pred == c, np.asarray(truth) == c) for c in classes]))}, argv


def _adversarial_segmentation(tmp_path):
    from napari_medseg.methods.adversarial_segmentation.sample import cardiac_sample

    layers = _layers(cardiac_sample)
    return _slices(tmp_path, layers["P1 LGE"], layers["P1 LGE truth (for checking only)"], "adversarial_segmentation")


def _modality_transfer(tmp_path):
    from napari_medseg.methods.modality_transfer.sample import tumour_sample

    layers = _layers(tumour_sample)
    return _slices(tmp_path, layers["sub-01 FLAIR"], layers["sub-01 tumour"], "modality_transfer")


def _site_normalization(tmp_path):
    from napari_medseg.methods.site_normalization.sample import sites_sample

    layers = _layers(sites_sample)
    return _slices(tmp_path, layers["adult 1"], layers["adult 1 labels"], "site_normalization")


RUNS = {"tracking": _tracking, "box_iterative": _box_iterative, "staining": _staining, "despeckle": _despeckle,
        "joint_lesion_tissue": _joint, "adversarial_segmentation": _adversarial_segmentation,
        "modality_transfer": _modality_transfer, "site_normalization": _site_normalization}


def test_every_method_is_covered_here():
    assert {m.slug for m in METHODS} <= set(RUNS)


# what each run must reach on its sample (the shipped models, 2026-12-04, reach about
# 0.35 px / 100 %, 0.87, 0.76, 0.62, 0.85, 0.32, 0.81 and 0.64)
CHECKS = {
    "tracking": lambda r: r["reaches_end"] <= 3.0 and r["on_axon"] >= 0.9,
    "box_iterative": lambda r: r["dice"] >= 0.75,
    "staining": lambda r: r["luma_corr"] >= 0.6,
    "despeckle": lambda r: r["shape_kept"] == 1.0 and r["roughness_ratio"] <= 0.8,
    "joint_lesion_tissue": lambda r: r["tissue_dice"] >= 0.75,
    "adversarial_segmentation": lambda r: r["dice"] >= 0.25,  # LGE, the weakly transferred sequence
    "modality_transfer": lambda r: r["dice"] >= 0.7,
    "site_normalization": lambda r: r["dice"] >= 0.5,
}


@pytest.mark.parametrize("name", list(RUNS))
def test_predict_on_the_sample_data_matches_its_truth_and_never_overwrites(name, tmp_path, capsys):
    result, argv = RUNS[name](tmp_path)
    assert CHECKS[name](result), result
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    # the same command again: its output exists, so it stops (2), or, for a batch, reports the
    # file as failed (1), naming what is in the way
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and any(w in err for w in ("exists", "never replaced", "already"))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before
