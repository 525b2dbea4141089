"""The bad-input corpus: every damaged file refused in one line naming it, every good one read, none hangs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_medseg.bench.probe import CLEAR, OK, run_probe, snapshot
from napari_medseg.bench.reliability import _exit_code, _read, _read_swc
from napari_medseg.bench.reliability_corpus import make_input_corpus
from napari_medseg.core.errors import InputError, MedsegError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_input_corpus(tmp_path_factory.mktemp("corpus"), bomb_mib=64)


def _item(corpus, name):
    return next(i for i in corpus if i["name"] == name)


def _read_layers(path: str) -> int:
    """The napari reader, as napari calls it, then the first tile of the first layer."""
    from napari_medseg._reader import napari_get_reader

    def read():
        reader = napari_get_reader(path)
        if reader is None:  # a healthy plain file: ours leaves it to napari's own reader (issue 19)
            from napari_builtins.io import napari_get_reader as napari_builtin_reader

            reader = napari_builtin_reader(path)
        assert reader is not None, "neither our reader nor napari's takes this file"
        layer = reader(path)[0]  # (data, kwargs, kind); napari's may give (data,)
        data, kwargs = layer[0], (layer[1] if len(layer) > 1 else {})
        first = data[0] if kwargs.get("multiscale") else data
        np.asarray(first[tuple(slice(0, 64) for _ in first.shape)])

    return _exit_code(read)


def test_every_corpus_file_is_refused_in_one_line_or_read_and_none_hangs(corpus, tmp_path):
    wrong = []
    for item in corpus:
        readers = [_read, _read_layers] if item["kind"] == "image" else [_read_swc]
        for reader in readers:
            before = snapshot(item["path"])
            out = run_probe(reader, str(item["path"]), timeout=10, workdir=tmp_path)
            want = CLEAR if item["expect"] == "error" else OK
            where = f"{item['name']} / {reader.__name__}"
            if out.kind != want or snapshot(item["path"]) != before:
                wrong.append((where, out.kind, out.message))
            elif want == CLEAR and item["path"].name not in out.message:
                wrong.append((where, "message does not name the file", out.message))
            elif want == CLEAR and not re.search(item["why"], out.message):
                wrong.append((where, f"message does not say {item['why']!r}", out.message))
    assert wrong == []
    assert sum(i["expect"] == "error" for i in corpus) >= 60


def test_good_files_read_with_their_true_shape_largest_level_first(corpus):
    from napari_medseg._reader import read_layers
    from napari_medseg.core.io import read_image

    for item in corpus:
        if item["kind"] != "image" or item["expect"] != "ok":
            continue
        levels, _ = read_image(item["path"])
        sizes = [int(np.prod(lv.shape)) for lv in levels]
        assert tuple(levels[0].shape[-len(item["shape"]):]) == tuple(item["shape"]), item["name"]
        assert sizes == sorted(sizes, reverse=True), item["name"]
        layer = read_layers(str(item["path"]))[0]
        data = layer[0][0] if layer[1].get("multiscale") else layer[0]
        block = np.asarray(data[(slice(0, 4),) * data.ndim], dtype=np.float64)
        assert np.isfinite(block).all() or "NaN" in item["name"], item["name"]


def test_coarse_first_levels_are_reordered_with_the_full_resolution_scale(corpus):
    from napari_medseg.core.io import read_image

    levels, meta = read_image(_item(corpus, "OME-Zarr listing the coarsest level first")["path"])
    assert [lv.shape for lv in levels] == [(256, 256), (128, 128), (64, 64)]
    assert meta["reordered_levels"] is True and meta["scale"] == [1.0, 1.0]


def test_the_zeros_bomb_reads_from_one_decompressed_copy(corpus):
    from napari_medseg.core.io import read_image
    from napari_medseg.core.paths import cache_dir

    item = next(i for i in corpus if "of zeros" in i["name"])
    levels, meta = read_image(item["path"])
    assert meta["source_path"] == str(item["path"])
    assert float(levels[0][:, :, -3:].max().compute()) == 0.0  # the last slab: no decompression from the start
    copies = list((cache_dir() / "nifti").glob("*.nii"))
    assert len(copies) == 1
    read_image(item["path"])  # opened again: the same copy, nothing decompressed twice
    assert list((cache_dir() / "nifti").glob("*.nii")) == copies
    assert list((cache_dir() / "nifti").glob(".*tmp*")) == []


def test_a_decompressed_copy_that_vanishes_is_one_line_naming_the_file(corpus):
    from napari_medseg.core.io import read_image
    from napari_medseg.core.paths import cache_dir

    item = _item(corpus, "good.nii.gz")
    levels, _ = read_image(item["path"])
    for f in (cache_dir() / "nifti").glob("*.nii"):
        f.unlink()
    with pytest.raises(InputError, match=re.escape(str(item["path"])) + ".*open it again") as exc:
        levels[0].compute()
    assert "\n" not in str(exc.value)


def test_a_valid_qform_stands_in_for_a_broken_sform_and_says_so(corpus):
    from napari_medseg.core.io import read_image

    _, meta = read_image(_item(corpus, "zero sform, valid qform")["path"])
    assert meta["affine_source"].startswith("qform") and meta["scale"] == [2.0, 2.0, 2.0]


def test_the_size_caps_are_settings_that_can_be_lifted(corpus, monkeypatch):
    from napari_medseg.core.io import guard, read_image

    bomb = _item(corpus, "TIFF declaring 1,000,000² px")["path"]
    with pytest.raises(InputError, match="NAPARI_MEDSEG_MAX_RATIO=0"):
        guard.check_declared_size(bomb, (10**6, 10**6), np.uint8)
    monkeypatch.setattr(guard, "MAX_RATIO", 0.0)  # the module-level setting
    guard.check_declared_size(bomb, (10**6, 10**6), np.uint8)
    monkeypatch.setattr(guard, "MAX_RATIO", 2000.0)
    monkeypatch.setenv("NAPARI_MEDSEG_MAX_RATIO", "0")  # the environment overrides it
    guard.check_declared_size(bomb, (10**6, 10**6), np.uint8)

    good = _item(corpus, "good tiled TIFF")["path"]  # 512 x 512
    monkeypatch.setenv("NAPARI_MEDSEG_MAX_PIXELS", "100000")
    with pytest.raises(InputError, match=r"262,144 pixels .*NAPARI_MEDSEG_MAX_PIXELS"):
        read_image(good)
    monkeypatch.setenv("NAPARI_MEDSEG_MAX_PIXELS", "0")  # no limit
    assert read_image(good)[0][0].shape == (512, 512)
    monkeypatch.setenv("NAPARI_MEDSEG_MAX_PIXELS", "lots")
    with pytest.raises(MedsegError, match="NAPARI_MEDSEG_MAX_PIXELS='lots' is not a usable limit"):
        read_image(good)


def test_gzip_streams_have_their_own_lower_ratio(tmp_path):
    from napari_medseg.core.io import guard

    f = tmp_path / "v.nii.gz"
    f.write_bytes(b"\0" * 4 * 2**20)  # 4 MiB on disk
    guard.check_declared_size(f, (1024, 1024, 1024, 2), np.uint8)  # 2 GiB: 512x, a JPEG slide could
    with pytest.raises(InputError, match="more than the 500x allowed"):
        guard.check_declared_size(f, (1024, 1024, 1024, 2), np.uint8, gzip=True)


def test_stale_cache_debris_of_dead_processes_goes_at_the_next_open(corpus):
    from napari_medseg.core.io import read_image
    from napari_medseg.core.paths import cache_dir

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pyramids, nifti = cache_dir() / "pyramids", cache_dir() / "nifti"
    for folder in (pyramids / f"aaaa.zarr.tmp-{gone.pid}-0001", pyramids / f"bbbb.zarr.tmp-{os.getpid()}-0002"):
        (folder / "1").mkdir(parents=True)
        (folder / "1" / "0.0").write_bytes(b"x" * 100)
    nifti.mkdir()
    (nifti / f".cccc.nii.tmp-{gone.pid}-0003").write_bytes(b"x" * 100)
    (nifti / f".dddd.nii.tmp-{os.getpid()}-0004").write_bytes(b"x" * 100)

    read_image(_item(corpus, "good tiled TIFF")["path"])  # a small file of another key: no pyramid of its own

    assert sorted(p.name for p in pyramids.iterdir()) == [f"bbbb.zarr.tmp-{os.getpid()}-0002"]
    assert sorted(p.name for p in nifti.iterdir()) == [f".dddd.nii.tmp-{os.getpid()}-0004"]


def test_a_corrupt_chunk_inside_a_command_is_one_line(corpus, tmp_path, run_cli):
    item = _item(corpus, "OME-Zarr with a corrupt chunk")
    code, _, err = run_cli("track", item["path"], "--starts", "8,8", "--max-steps", "5", "--out", tmp_path / "t.swc")
    assert code == 2 and "cannot be decoded" in err and str(item["path"]) in err and "Traceback" not in err


def test_a_corrupt_tile_inside_segment_is_one_line(tmp_path, run_cli):
    import tifffile

    from napari_medseg.bench.reliability_corpus import _flip

    p = tmp_path / "slide.tif"
    rgb = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(p, rgb, tile=(128, 128), compression="zlib", photometric="rgb")
    _flip(p, 0.5, 256)
    code, _, err = run_cli("segment", p, "--model", "tissue", "--tile", "256", "--out", tmp_path / "r.zarr")
    assert code == 2 and "cannot be decoded" in err and str(p) in err and "Traceback" not in err
    if (tmp_path / "r.zarr").exists():  # what the stopped run left is never presented as a result
        from napari_medseg.core.io import read_image

        with pytest.raises(InputError, match="incomplete result"):
            read_image(tmp_path / "r.zarr")


def test_a_corrupt_nii_gz_is_one_line_in_finetune(corpus, run_cli):
    item = _item(corpus, "corrupt gzip stream")
    swc = _item(corpus, "SWC: good.swc")["path"]
    code, _, err = run_cli("finetune", "--image", item["path"], "--swc", swc, "--updates", "1")
    assert code == 2 and "truncated or corrupt" in err and str(item["path"]) in err and "Traceback" not in err


def test_an_all_nan_image_is_shown_but_refused_by_a_command(tmp_path, run_cli):
    import tifffile

    p = tmp_path / "nan.tif"
    tifffile.imwrite(p, np.full((64, 64), np.nan, np.float32))
    code, _, err = run_cli("track", p, "--starts", "8,8", "--max-steps", "5", "--out", tmp_path / "t.swc")
    assert code == 2 and "NaN" in err and "Traceback" not in err
    assert not (tmp_path / "t.swc").exists()


# ---------------------------------------------------------------- fuzzing

_swc_line = st.tuples(
    st.integers(-3, 8), st.integers(-2, 9),
    *[st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False), st.integers(-10, 10)) for _ in range(4)],
    st.integers(-2, 8),
).map(lambda t: " ".join(str(v) for v in t))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(_swc_line, st.text(max_size=30)), min_size=0, max_size=8))
def test_swc_fuzz_parses_to_finite_traces_or_one_clear_error(tmp_path, lines):
    from napari_medseg.methods.tracking.swc import read_swc

    p = tmp_path / "f.swc"
    p.write_bytes("\n".join(lines).encode("utf-8", "replace"))
    try:
        forest = read_swc(p)
    except InputError as exc:
        assert "\n" not in str(exc) and "f.swc" in str(exc)
        return
    assert all(np.isfinite(t).all() and np.abs(t).max() <= 1e7 for t in forest.traces)
    assert all(np.isfinite(r).all() and (r >= 0).all() for r in forest.radii)


def test_a_long_swc_parses_exactly(tmp_path):
    from napari_medseg.methods.tracking.swc import read_swc

    n = 20000
    rows = ["# a long trace"]
    rows += [f"{i} 2 {i * 0.5} {i * 0.25} 0 1.5 {i - 1 if i > 1 else -1}" for i in range(1, n + 1)]
    (tmp_path / "long.swc").write_text("\n".join(rows) + "\n")
    forest = read_swc(tmp_path / "long.swc")
    assert len(forest.traces) == 1 and forest.parents == [None]
    np.testing.assert_array_equal(forest.traces[0], np.c_[np.arange(1, n + 1) * 0.25, np.arange(1, n + 1) * 0.5])
    rows[n // 2] = rows[n // 2].replace(" 1.5 ", " -1.5 ")
    (tmp_path / "long.swc").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=f"long.swc, line {n // 2 + 1}: .*radius"):
        read_swc(tmp_path / "long.swc")


# a library loaded earlier in the suite can switch on flush-to-zero; subnormals are not what these tests probe
_f32 = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32, allow_subnormal=False),
                 st.floats(-5, 5, width=32, allow_subnormal=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dims=st.lists(st.integers(-2, 40), min_size=1, max_size=5),
    pixdim=st.lists(_f32, min_size=3, max_size=3),
    codes=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    srow=st.lists(_f32, min_size=12, max_size=12),
    scaling=st.tuples(_f32, _f32),
    datatype=st.sampled_from([2, 4, 8, 16, 32, 64, 128, 512, 768, 1792, 9999]),
    vox_offset=st.sampled_from([0.0, 352.0, 348.0, 1e9, -4.0]),
    gz=st.booleans(),
)
def test_nifti_header_fuzz_gives_sane_metadata_or_one_clear_error(tmp_path, dims, pixdim, codes, srow, scaling,
                                                                  datatype, vox_offset, gz):
    import gzip
    import json

    import nibabel as nib

    from napari_medseg.core.io import read_image

    hdr = nib.Nifti1Header()
    fields = np.frombuffer(bytearray(hdr.binaryblock), dtype=hdr.structarr.dtype)[0].copy()
    fields["dim"][:] = [len(dims), *dims, *[1] * (7 - len(dims))]
    with np.errstate(over="ignore"):  # float32 header fields: huge values become inf, as in a real header
        fields["pixdim"][1:4] = pixdim
    fields["datatype"] = datatype
    fields["bitpix"] = 8
    fields["vox_offset"] = vox_offset
    fields["qform_code"], fields["sform_code"] = codes
    fields["srow_x"], fields["srow_y"], fields["srow_z"] = srow[:4], srow[4:8], srow[8:]
    fields["scl_slope"], fields["scl_inter"] = scaling
    raw = fields.tobytes() + b"\0" * 4 + bytes(range(256)) * 40
    p = tmp_path / ("fuzz.nii.gz" if gz else "fuzz.nii")
    p.write_bytes(gzip.compress(raw) if gz else raw)
    try:
        levels, meta = read_image(p)
        corner = np.asarray(levels[0][tuple(slice(0, 2) for _ in levels[0].shape)])
    except InputError as exc:
        assert "\n" not in str(exc) and str(p) in str(exc)
        return
    affine = np.asarray(meta["affine"])
    assert np.isfinite(affine).all() and abs(np.linalg.det(affine[:3, :3])) > 0
    assert all(s > 0 for s in levels[0].shape) and corner.dtype.kind in "biuf"
    json.dumps(meta, allow_nan=False)  # JSON-friendly: no NaN or inf anywhere in the metadata
