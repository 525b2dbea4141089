"""Tiles on a two-worker dask.distributed cluster give the same result as one machine."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_medseg.core import tiling
from napari_medseg.core.jobs import collect
from napari_medseg.core.sources import PathSource

distributed = pytest.importorskip("distributed")


def softmax(y):
    return torch.softmax(y, 1)


@pytest.mark.slow
def test_two_worker_cluster_matches_local(unet2d, rng, tmp_path):
    img = (rng.random((700, 520)) * 255).astype(np.uint8)
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, img, tile=(128, 128))
    cfg = tiling.TileConfig(tile=256, margin=48, blend=16, batch_size=2)
    local = tiling.create_output(tmp_path / "local.zarr", img.shape, 2, cfg)
    collect(tiling.tiled_inference(unet2d, img, local, cfg, postprocess=softmax))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = tiling.create_output(tmp_path / "remote.zarr", img.shape, 2, cfg)
            source = PathSource(path)  # workers open the file themselves
            reports, _ = collect(tiling.tiled_inference(unet2d, source, remote, cfg, postprocess=softmax, client=client))
            workers_used = {w for w, info in client.scheduler_info()["workers"].items()}
    assert len(workers_used) == 2 and reports[-1].step == cfg.plan(img.shape).n_tiles
    np.testing.assert_allclose(remote[...], local[...], atol=1e-5)
    whole = tiling.predict_whole(unet2d, img, postprocess=softmax)
    assert np.abs(remote[...] - whole).max() <= 1e-5


@pytest.mark.slow
def test_predict_despeckle_folder_on_two_workers_matches_the_serial_run(tmp_path, monkeypatch, capsys):
    """One image per task on a two-worker LocalCluster: the same files, bit for bit, as the
    serial run; a bad image fails alone and the rest are written."""
    from napari_medseg.cli import main

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        clean = 0.3 + 0.4 * rng.random((90 + 10 * i, 110))
        tifffile.imwrite(src / f"im{i}.tif", (3000 * clean * (1 + 0.2 * rng.standard_normal(clean.shape)))
                         .clip(0, 65535).astype(np.uint16))
    tifffile.imwrite(src / "bad.tif", np.zeros((30, 30, 3), np.uint8))
    serial, spread = tmp_path / "serial", tmp_path / "spread"
    assert main(["predict", "despeckle", str(src), "--out", str(serial), "--tile", "64"]) == 1
    capsys.readouterr()
    assert main(["predict", "despeckle", str(src), "--out", str(spread), "--tile", "64",
                 "--scheduler", "local:2"]) == 1
    out = capsys.readouterr()
    assert "4 of 5 images despeckled" in out.out and "bad.tif" in out.err and "RGB" in out.err
    for i in range(4):
        a = tifffile.imread(serial / f"im{i}_despeckled.tif")
        b = tifffile.imread(spread / f"im{i}_despeckled.tif")
        assert a.shape == (90 + 10 * i, 110)
        np.testing.assert_array_equal(a, b)
    assert not (spread / "bad_despeckled.tif").exists()
    assert main(["predict", "despeckle", str(src), "--out", str(tmp_path / "x"), "--scheduler", "local:zero"]) == 2
    assert "local:N" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("slug", ["modality_transfer"])
def test_predict_slices_folder_on_two_workers_matches_the_serial_run(slug, tmp_path, monkeypatch, capsys):
    """``predict SLUG DIR --scheduler local:2`` for the slice methods: the same labels files
    as the serial run, and a bad image fails alone."""
    from napari_medseg.methods.modality_transfer.sample import tumour_sample
    from napari_medseg.cli import main

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    layers = {meta["name"]: data for data, meta, _k in tumour_sample()}
    src = tmp_path / "in"
    src.mkdir()
    for i, sub in enumerate(("sub-01", "sub-02", "sub-03", "sub-04")):
        tifffile.imwrite(src / f"s{i}.tif", np.asarray(layers[f"{sub} FLAIR"][20 + 5 * i: 30 + 5 * i], np.float32))
    tifffile.imwrite(src / "bad.tif", np.full((4, 32, 32), np.nan, np.float32), photometric="minisblack")
    serial, spread = tmp_path / "serial", tmp_path / "spread"
    assert main(["predict", slug, str(src), "--out", str(serial)]) == 1
    assert "bad.tif" in capsys.readouterr().err
    assert main(["predict", slug, str(src), "--out", str(spread), "--scheduler", "local:2"]) == 1
    out = capsys.readouterr()
    assert "wrote 4 labels file(s)" in out.out and "bad.tif" in out.err and "NaN" in out.err
    for i in range(4):
        a, b = tifffile.imread(serial / f"s{i}_labels.tif"), tifffile.imread(spread / f"s{i}_labels.tif")
        assert a.shape == (10, 72, 64) and a.any()
        np.testing.assert_array_equal(a, b)
    assert not (spread / "bad_labels.tif").exists()


@pytest.mark.slow
def test_predict_box_iterative_folder_on_two_workers_matches_the_serial_run(tmp_path, monkeypatch, capsys):
    """A folder of slides: one result per slide, the same labels with one image per task on
    a two-worker cluster as in the serial run; a broken file fails alone (issue 21)."""
    import zarr

    from napari_medseg.cli import main
    from napari_medseg.methods.box_iterative.synthetic import HARD, synthetic_kidney

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    src = tmp_path / "slides"
    src.mkdir()
    for i in range(3):
        tifffile.imwrite(src / f"slide{i}.tif", synthetic_kidney((256, 320), 80 + i, **HARD).rgb, photometric="rgb")
    (src / "broken.tif").write_bytes(b"not a tiff")
    serial, spread = tmp_path / "serial", tmp_path / "spread"
    assert main(["predict", "box_iterative", str(src), "--out", str(serial), "--tile", "256"]) == 1
    assert "broken.tif" in capsys.readouterr().err
    assert main(["predict", "box_iterative", str(src), "--out", str(spread), "--tile", "256",
                 "--scheduler", "local:2"]) == 1
    out = capsys.readouterr()
    assert "3 of 4 images segmented" in out.out and "broken.tif" in out.err
    for i in range(3):
        a = np.asarray(zarr.open_group(str(serial / f"slide{i}_labels.zarr"), mode="r")["0"])
        b = np.asarray(zarr.open_group(str(spread / f"slide{i}_labels.zarr"), mode="r")["0"])
        assert a.shape == (256, 320) and a.any()
        np.testing.assert_array_equal(a, b)
    assert not (spread / "broken_labels.zarr").exists()
    assert main(["predict", "box_iterative", str(src), "--out", str(serial)]) == 2  # never over a result
    assert "never replaced" in capsys.readouterr().err


def test_staining_pairs_are_matched_by_name_and_a_lonely_file_is_named(tmp_path):
    from napari_medseg.methods.staining.cli import stain_pairs
    from napari_medseg.core.errors import InputError

    one = tmp_path / "one"  # one folder: NAME_fcm / NAME_rcm
    one.mkdir()
    for name in ("a_fcm.tif", "a_rcm.tif", "b-FCM.tif", "b-RCM.tif", "notes.txt"):
        (one / name).write_bytes(b"")
    assert [(k, f.name, r.name) for k, f, r in stain_pairs(str(one), str(one))] == [
        ("a", "a_fcm.tif", "a_rcm.tif"), ("b", "b-FCM.tif", "b-RCM.tif")]
    fcm, rcm = tmp_path / "fcm", tmp_path / "rcm"  # two folders: the same names
    fcm.mkdir(), rcm.mkdir()
    for name in ("s1.tif", "s2.tif"):
        (fcm / name).write_bytes(b""), (rcm / name).write_bytes(b"")
    assert [k for k, _f, _r in stain_pairs(str(fcm), str(rcm))] == ["s1", "s2"]
    (fcm / "s3.tif").write_bytes(b"")
    with pytest.raises(InputError, match="none for s3.tif"):
        stain_pairs(str(fcm), str(rcm))
    with pytest.raises(InputError, match="not a file and a folder"):
        stain_pairs(str(fcm), str(rcm / "s1.tif"))
    (one / "a_fcm.png").write_bytes(b"")
    with pytest.raises(InputError, match="two FCM images for slide 'a'"):
        stain_pairs(str(one), str(one))


@pytest.mark.slow
def test_predict_staining_folders_on_two_workers_match_the_serial_run(tmp_path, monkeypatch, capsys):
    """Two folders of FCM/RCM pairs: one NAME_stained.zarr per slide, the same pixels with
    one slide per task on a two-worker cluster as in the serial run; a pair whose shapes
    differ fails alone; results are never replaced (issue 21)."""
    import zarr

    from napari_medseg.methods.staining.sample import confocal_sample
    from napari_medseg.cli import main

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    layers = {meta["name"]: np.asarray(data) for data, meta, _k in confocal_sample(seed=2019)}
    fcm_dir, rcm_dir = tmp_path / "fcm", tmp_path / "rcm"
    fcm_dir.mkdir(), rcm_dir.mkdir()
    for i, (r, c) in enumerate(((300, 300), (500, 420))):
        sl = (slice(r, r + 160), slice(c, c + 192))
        tifffile.imwrite(fcm_dir / f"slide{i}.tif", layers["FCM (nuclei)"][sl])
        tifffile.imwrite(rcm_dir / f"slide{i}.tif", layers["RCM (reflectance)"][sl])
    tifffile.imwrite(fcm_dir / "odd.tif", layers["FCM (nuclei)"][:64, :64])
    tifffile.imwrite(rcm_dir / "odd.tif", layers["RCM (reflectance)"][:64, :80])
    serial, spread = tmp_path / "serial", tmp_path / "spread"
    common = ["predict", "staining", "--fcm", str(fcm_dir), "--rcm", str(rcm_dir), "--tile", "128",
              "--stain", "gareau"]
    assert main([*common, "--out", str(serial)]) == 1
    assert "odd: FCM (64, 64) and RCM (64, 80) differ in shape" in capsys.readouterr().err
    assert main([*common, "--out", str(spread), "--scheduler", "local:2"]) == 1
    out = capsys.readouterr()
    assert "2 of 3 slides stained" in out.out and "odd" in out.err
    for i in range(2):
        a = np.asarray(zarr.open_group(str(serial / f"slide{i}_stained.zarr"), mode="r")["0"])
        b = np.asarray(zarr.open_group(str(spread / f"slide{i}_stained.zarr"), mode="r")["0"])
        assert a.shape == (3, 160, 192) and a.dtype == np.uint8 and a.std() > 5
        np.testing.assert_array_equal(a, b)
    assert not (spread / "odd_stained.zarr").exists()
    assert main([*common, "--out", str(serial)]) == 2  # the slides' results are there: nothing runs or is replaced
    assert "already holds slide0_stained.zarr, slide1_stained.zarr; results are never replaced" in \
        capsys.readouterr().err
