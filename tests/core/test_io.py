"""napari_medseg.core.io: NIfTI / TIFF / OME-Zarr round trips, pyramids, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_medseg.core import io as mio
from napari_medseg.core.errors import InputError
from napari_medseg.core.io import write_labels
from napari_medseg.core.io.omezarr import write_ome_zarr

DIAG_AFFINE = np.array(
    [[0.5, 0, 0, -10.5], [0, 0.75, 0, 20.25], [0, 0, 2.0, 3.0], [0, 0, 0, 1.0]]
)
# axes swapped and one flipped: napari cannot take this as scale + translate
ROT_AFFINE = np.array(
    [[0, -1.5, 0, 12.0], [0.5, 0, 0, -4.0], [0, 0, -2.0, 7.0], [0, 0, 0, 1.0]]
)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))


def _labels(shape=(20, 30, 10)):
    lab = np.zeros(shape, np.int32)
    lab[5:10, 5:15, 2:6] = 3
    lab[12:18, 1:4, 7:9] = 1
    return lab


# --------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_diagonal_affine(tmp_path, suffix):
    lab = _labels()
    path = mio.write_nifti(tmp_path / f"lab{suffix}", lab, DIAG_AFFINE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    levels, meta = mio.read_image(path)
    assert len(levels) == 1 and isinstance(levels[0], da.Array)
    assert levels[0].dtype == np.uint8
    np.testing.assert_array_equal(levels[0].compute(), lab)
    np.testing.assert_array_equal(np.array(meta["affine"]), DIAG_AFFINE)
    assert meta["scale"] == [0.5, 0.75, 2.0]
    assert meta["translate"] == [-10.5, 20.25, 3.0]
    assert meta["napari_affine"] is None
    assert meta["zooms"] == [0.5, 0.75, 2.0]
    assert meta["source_path"] == str(path)
    assert mio.napari_placement(meta) == {"scale": [0.5, 0.75, 2.0], "translate": [-10.5, 20.25, 3.0]}


def test_nifti_rotated_affine_goes_to_napari_whole(tmp_path):
    lab = _labels()
    path = mio.write_nifti(tmp_path / "rot.nii.gz", lab, ROT_AFFINE)
    (arr,), meta = mio.read_image(path)
    np.testing.assert_array_equal(np.array(meta["affine"]), ROT_AFFINE)
    assert meta["scale"] is None and meta["translate"] is None
    np.testing.assert_array_equal(np.array(meta["napari_affine"]), ROT_AFFINE)
    np.testing.assert_array_equal(arr.compute(), lab)
    # saving labels for this image keeps the affine
    out = mio.write_labels(tmp_path / "seg.nii.gz", lab > 0, meta)
    (back,), meta2 = mio.read_image(out)
    np.testing.assert_array_equal(np.array(meta2["affine"]), ROT_AFFINE)
    np.testing.assert_array_equal(back.compute(), (lab > 0).astype(np.uint8))


def test_nifti_label_dtypes_and_4d(tmp_path):
    import nibabel as nib

    lab = _labels()
    lab[0, 0, 0] = 300
    mio.write_nifti(tmp_path / "a.nii", lab, np.eye(4))
    assert nib.load(tmp_path / "a.nii").get_data_dtype() == np.int16
    lab[0, 0, 0] = 70000
    mio.write_nifti(tmp_path / "b.nii", lab, np.eye(4))
    assert nib.load(tmp_path / "b.nii").get_data_dtype() == np.int32
    with pytest.raises(InputError, match="whole numbers"):
        mio.write_nifti(tmp_path / "c.nii", lab + 0.5, np.eye(4))

    vol = np.random.default_rng(0).random((8, 9, 10, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, DIAG_AFFINE), tmp_path / "mm.nii.gz")
    (arr,), meta = mio.read_image(tmp_path / "mm.nii.gz")
    assert arr.shape == (3, 8, 9, 10) and meta["channel_axis"] == 0
    assert meta["axis_names"][1:] == ["x", "y", "z"]
    np.testing.assert_array_equal(arr.compute(), np.moveaxis(vol, 3, 0))


# --------------------------------------------------------------------------- TIFF


def test_tiff_pyramid_is_cached_once(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5000, 3000), dtype=np.uint8)
    path = mio.write_tiled_tiff(tmp_path / "big.tif", img)
    del img
    levels, meta = mio.read_tiff(path)
    assert len(levels) >= 3 and meta["pyramid"] == "cache"
    assert all(isinstance(lv, da.Array) for lv in levels)
    for big, small in zip(levels, levels[1:]):
        assert small.shape == (big.shape[0] // 2, big.shape[1] // 2)
    cache = Path(meta["pyramid_cache"])
    assert cache.parent == Path(os.environ["NAPARI_MEDSEG_HOME"]) / "cache" / "pyramids"
    assert cache.is_dir() and not list(cache.parent.glob("*.tmp-*"))
    stamps = {p: p.stat().st_mtime_ns for p in [cache, *cache.iterdir()]}

    window = levels[0][1000:1016, 2000:2016].compute().astype(np.float64)
    mean = np.rint(window.reshape(8, 2, 8, 2).mean(axis=(1, 3))).astype(np.uint8)
    np.testing.assert_array_equal(levels[1][500:508, 1000:1008].compute(), mean)

    levels2, meta2 = mio.read_tiff(path)
    assert meta2["pyramid_cache"] == str(cache)
    assert [lv.shape for lv in levels2] == [lv.shape for lv in levels]
    assert {p: p.stat().st_mtime_ns for p in [cache, *cache.iterdir()]} == stamps


def test_interrupted_pyramid_build_is_redone(tmp_path, monkeypatch):
    from napari_medseg.core.io import pyramid

    img = np.random.default_rng(1).integers(0, 60000, (2100, 300), dtype=np.uint16)
    path = mio.write_tiled_tiff(tmp_path / "tall.tif", img)

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyramid.os, "rename", boom)
    with pytest.raises(KeyboardInterrupt):
        mio.read_tiff(path, pyramid_min_size=2048)
    root = Path(os.environ["NAPARI_MEDSEG_HOME"]) / "cache" / "pyramids"
    assert list(root.iterdir()) == []  # neither a half pyramid nor a temp folder
    monkeypatch.undo()
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    levels, meta = mio.read_tiff(path, pyramid_min_size=2048)
    assert meta["pyramid"] == "cache" and [lv.shape for lv in levels] == [(2100, 300), (1050, 150), (525, 75)]
    assert levels[1].dtype == np.uint16


def test_ome_tiff_with_subifd_pyramid(tmp_path):
    img = np.random.default_rng(2).integers(0, 4000, (1200, 700), dtype=np.uint16)
    path = mio.write_ome_tiff(tmp_path / "p.ome.tif", da.from_array(img, chunks=300),
                              pyramid_levels=2, scale=[0.5, 0.25])
    levels, meta = mio.read_image(path)
    assert [lv.shape for lv in levels] == [(1200, 700), (600, 350), (300, 175)]
    assert meta["pyramid"] == "file" and meta["axes"] == "YX" and meta["scale"] == [0.5, 0.25]
    np.testing.assert_array_equal(levels[0].compute(), img)
    assert not meta["rgb"]


def test_ome_zarr_round_trip(tmp_path):
    import json

    img = np.random.default_rng(3).random((300, 200)).astype(np.float32)
    path = mio.write_ome_zarr(tmp_path / "img.ome.zarr", img, axes="yx", scale=[0.5, 2.0], levels=3)
    assert json.loads((path / ".zattrs").read_text())["multiscales"][0]["version"] == "0.4"
    assert (path / ".zgroup").is_file()  # zarr format 2
    levels, meta = mio.read_image(path)
    assert [lv.shape for lv in levels] == [(300, 200), (150, 100), (75, 50)]
    assert meta["axes"] == "yx" and meta["scale"] == [0.5, 2.0]
    np.testing.assert_array_equal(levels[0].compute(), img)
    np.testing.assert_allclose(levels[1][:2, :2].compute(), img[:4, :4].reshape(2, 2, 2, 2).mean(axis=(1, 3)), rtol=1e-6)

    lab = (img > 0.5).astype(np.int64) * 7
    out = mio.write_labels(tmp_path / "lab.zarr", lab, meta)
    (back,), meta2 = mio.read_image(out)
    assert back.dtype == np.uint8 and meta2["scale"] == [0.5, 2.0]
    np.testing.assert_array_equal(back.compute(), lab)


# --------------------------------------------------------------------------- bad input


def _fails(path, *words):
    before = Path(path).read_bytes()
    with pytest.raises(InputError) as info:
        mio.read_image(path)
    msg = str(info.value)
    assert str(path) in msg
    for word in words:
        assert word in msg, msg
    assert Path(path).read_bytes() == before


def test_bad_files_raise_input_error(tmp_path):
    img = np.random.default_rng(4).integers(0, 256, (1024, 512), dtype=np.uint8)
    good = mio.write_tiled_tiff(tmp_path / "good.tif", img)
    data = good.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    _fails(tmp_path / "cut.tif", "truncated")

    (tmp_path / "noise.tif").write_bytes(np.random.default_rng(5).bytes(4096))
    _fails(tmp_path / "noise.tif", "not a readable TIFF", "not a TIFF")

    (tmp_path / "notes.nii.gz").write_text("these are my notes\n" * 20)
    _fails(tmp_path / "notes.nii.gz", "not a readable NIfTI", "gzip")

    vol = np.random.default_rng(6).normal(size=(48, 48, 48)).astype(np.float32)
    import nibabel as nib

    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    raw = (tmp_path / "vol.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    _fails(tmp_path / "cut.nii.gz", "truncated")

    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    _fails(tmp_path / "pic.png", "unsupported file type")
    with pytest.raises(InputError, match="file not found"):
        mio.read_image(tmp_path / "missing.nii")


def test_check_array():
    ok = np.ones((4, 5), np.float32)
    assert mio.check_array(ok, "a.tif", ndim=(2, 3)) is ok
    with pytest.raises(InputError, match=r"a\.tif is empty"):
        mio.check_array(np.zeros((0, 5)), "a.tif")
    with pytest.raises(InputError, match=r"must be a 2-D or 3-D image, but it is 4-D"):
        mio.check_array(np.zeros((2, 2, 2, 2)), "a.tif", ndim=(2, 3))
    bad = ok.copy()
    bad[1, 1], bad[2, 2] = np.nan, np.inf
    with pytest.raises(InputError, match=r"a\.tif contains NaN or infinite values \(1 NaN, 1 infinite\)"):
        mio.check_array(bad, "a.tif")
    with pytest.raises(InputError, match="NaN"):
        mio.check_array(da.from_array(bad, chunks=2), "b.zarr")
    assert mio.check_array(bad, "a.tif", check_finite=False) is bad
    with pytest.raises(InputError, match="tile 3"):
        mio.assert_finite(bad, "c.tif tile 3")


def test_io_imports_no_gui():
    code = (
        "import sys, napari_medseg.core.io; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_labels_layer_keeps_its_scale_in_every_format_even_when_we_did_not_open_it(tmp_path):
    """A 0.5 x 0.25 um labels layer (made in napari, or opened from a file without a scale)
    is saved with that pixel size: NIfTI, OME-TIFF and OME-Zarr (read back by ome-zarr-py too)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from napari_medseg._writer import write_labels_layer

    lab = np.zeros((64, 48), np.uint8)
    lab[10:20, 5:30] = 3
    for i, medseg_io in enumerate(({}, {"scale": None, "axes": None})):
        for name in ("l.ome.zarr", "l.ome.tif", "l.nii.gz"):
            attrs = {"scale": [0.5, 0.25], "translate": [0.0, 0.0], "metadata": {"medseg_io": medseg_io}}
            out = write_labels_layer(str(tmp_path / f"{i}{name}"), lab, attrs)[0]
            levels, meta = mio.read_image(out)
            assert meta["scale"] == pytest.approx([0.5, 0.25]), (name, meta["scale"])
            np.testing.assert_array_equal(np.asarray(levels[0]).squeeze(), lab)
    [node] = list(Reader(parse_url(str(tmp_path / "0l.ome.zarr")))())
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [0.5, 0.25]


# ----------------------------------------------------------------- a polite reader (issue 19)
def test_reader_takes_only_files_it_reads_well_and_leaves_the_rest_to_napari(tmp_path):
    import tifffile
    import zarr

    from napari_medseg._reader import napari_get_reader

    img = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251).astype(np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", img)  # strips, no OME: napari's own reader opens it
    tifffile.imwrite(tmp_path / "tiled.tif", img, tile=(32, 32))
    tifffile.imwrite(tmp_path / "ome.ome.tif", img, ome=True)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    zarr.open_array(str(tmp_path / "bare.zarr"), mode="w", shape=(8, 8), dtype="u1")
    write_ome_zarr(tmp_path / "image.ome.zarr", img, axes="yx")
    assert napari_get_reader(str(tmp_path / "plain.tif")) is None
    assert napari_get_reader(str(tmp_path / "bare.zarr")) is None
    assert napari_get_reader(str(tmp_path / "missing.ome.zarr")) is None
    for name in ("tiled.tif", "ome.ome.tif", "broken.tif", "image.ome.zarr"):
        assert napari_get_reader(str(tmp_path / name)) is not None, name
    with pytest.raises(InputError):  # the unparsable file gets our one clear message
        napari_get_reader(str(tmp_path / "broken.tif"))(str(tmp_path / "broken.tif"))


def test_labels_are_recognised_by_metadata_never_by_name(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    from napari_medseg._reader import napari_get_reader

    lab = np.zeros((64, 64), np.uint8)
    lab[10:30, 10:30] = 2
    meta = {"scale": (0.5, 0.5)}
    for name in ("result.ome.tif", "result.ome.zarr"):  # no hint in the name
        write_labels(tmp_path / name, lab, meta)
        [(data, kwargs, kind)] = napari_get_reader(str(tmp_path / name))(str(tmp_path / name))
        assert kind == "labels" and np.array_equal(np.asarray(data), lab), name
    nodes = list(Reader(parse_url(str(tmp_path / "result.ome.zarr")))())
    assert any(isinstance(spec, Label) for n in nodes for spec in n.specs)  # ome-zarr-py agrees: a label image
    write_ome_zarr(tmp_path / "mask.ome.zarr", lab, axes="yx")  # an image called "mask": still an image
    [(_, _, kind)] = napari_get_reader(str(tmp_path / "mask.ome.zarr"))(str(tmp_path / "mask.ome.zarr"))
    assert kind == "image"


def test_a_labels_layer_saved_as_ome_zarr_keeps_units_names_and_colours(tmp_path):
    """OME-NGFF image-label metadata from the layer: class names (features), colours
    (colormap), physical scale and units, as ome-zarr-py reads them."""
    from napari.layers import Labels
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from napari_medseg._writer import write_labels_layer

    data = np.zeros((40, 50), np.uint8)
    data[5:15, 5:15], data[20:30, 20:40] = 1, 2
    layer = Labels(data, scale=(0.5, 0.25), units=("micrometer", "micrometer"),
                   features={"index": [0, 1, 2], "class": ["background", "nucleus", "gland"]})
    [out] = write_labels_layer(str(tmp_path / "cells.zarr"), layer.data, layer._get_state())
    [node] = list(Reader(parse_url(out))())
    axes = node.metadata["axes"]
    assert [a.get("unit") for a in axes] == ["micrometer", "micrometer"]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [0.5, 0.25]
    import zarr

    label = zarr.open_group(out, mode="r").attrs["image-label"]
    assert [(p["label-value"], p["class"]) for p in label["properties"]] == [(1, "nucleus"), (2, "gland")]
    colours = {c["label-value"]: c["rgba"] for c in label["colors"]}
    expected = np.round(np.asarray(layer.colormap.map(np.array([1, 2]))) * 255).astype(int)
    assert [colours[1], colours[2]] == expected.tolist()
    np.testing.assert_array_equal(np.asarray(node.data[0]), data)
    # ... and napari-medseg's reader gives them back to napari
    from napari_medseg._reader import read_layers

    [(back, kwargs, kind)] = read_layers(out)
    again = Labels(back, **{k: v for k, v in kwargs.items() if k != "metadata"})
    assert kind == "labels" and list(again.features["class"]) == ["background", "nucleus", "gland"]
    assert [str(u) for u in again.units] == ["micrometer", "micrometer"] and tuple(again.scale) == (0.5, 0.25)
    np.testing.assert_allclose(again.colormap.map(np.array([1, 2])), layer.colormap.map(np.array([1, 2])), atol=0.003)


def test_labels_saved_onto_an_ome_zarr_image_go_into_its_labels_group_and_keep_the_image(tmp_path):
    """OME-NGFF keeps an image's segmentations in ``image/labels/NAME``: saving a Labels layer
    onto an existing OME-Zarr image adds it there (ome-zarr-py finds it with the image, with
    the image's scale and the layer's class names), never rewrites the image, never replaces
    a label image of the same name, and our reader opens the labels with the image."""
    import pandas as pd
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    from napari_medseg._reader import napari_get_reader
    from napari_medseg._writer import write_labels_layer

    rng = np.random.default_rng(3)
    img = rng.integers(0, 4000, (2, 96, 80), dtype=np.uint16)
    image = write_ome_zarr(tmp_path / "cells.ome.zarr", img, axes="cyx", scale=[1.0, 0.5, 0.5], levels=2,
                           units=[None, "micrometer", "micrometer"])
    before = {p.relative_to(image): p.read_bytes() for p in image.rglob("*") if p.is_file()}
    lab = np.zeros((96, 80), np.uint8)
    lab[10:30, 20:50], lab[50:90, 5:25] = 1, 2
    attrs = {"name": "nuclei", "scale": [0.5, 0.5], "translate": [0.0, 0.0], "metadata": {},
             "features": pd.DataFrame({"index": [0, 1, 2], "class": ["background", "nucleus", "gland"]})}
    [out] = write_labels_layer(str(image), lab, attrs)
    assert Path(out) == image / "labels" / "nuclei"
    [out2] = write_labels_layer(str(image), (lab > 0).astype(np.uint8), attrs)  # same name again: a new one
    assert Path(out2) == image / "labels" / "nuclei-2"
    after = {p.relative_to(image): p.read_bytes() for p in image.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.parts[0] != "labels"} == before  # the image is untouched

    nodes = list(Reader(parse_url(str(image)))())
    label_nodes = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(label_nodes) == 2
    first = next(n for n in label_nodes if str(n.zarr.path).rstrip("/").endswith("nuclei"))
    np.testing.assert_array_equal(np.asarray(first.data[0]).squeeze(), lab)
    assert first.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 0.5, 0.5]
    assert zarr.open_group(str(image / "labels"), mode="r").attrs["labels"] == ["nuclei", "nuclei-2"]
    label_attrs = zarr.open_group(out, mode="r").attrs["image-label"]
    assert label_attrs["source"] == {"image": "../../"}
    assert [(p["label-value"], p["class"]) for p in label_attrs["properties"]] == [(1, "nucleus"), (2, "gland")]

    layers = napari_get_reader(str(image))(str(image))
    kinds = [(kw["name"], kind) for _, kw, kind in layers]
    assert kinds == [("cells", "image"), ("nuclei", "labels"), ("nuclei-2", "labels")]
    data, kwargs, _ = layers[1]
    np.testing.assert_array_equal(np.asarray(data[0] if kwargs.get("multiscale") else data), lab)
    assert list(kwargs["scale"]) == [0.5, 0.5]
    assert kwargs["features"]["class"] == ["background", "nucleus", "gland"]

    listed = sorted(p.name for p in (image / "labels").iterdir())
    with pytest.raises(InputError, match="shape"):  # labels that do not cover the image: refused, nothing written
        write_labels_layer(str(image), lab[:50], attrs)
    assert sorted(p.name for p in (image / "labels").iterdir()) == listed
