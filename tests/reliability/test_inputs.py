"""The bad-input corpus: every damaged file refused in one line naming it, every good one read, none hangs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_medseg.bench.probe import CLEAR, OK, run_probe, snapshot
from napari_medseg.bench.reliability import _read, _read_swc
from napari_medseg.bench.reliability_corpus import make_input_corpus
from napari_medseg.core.errors import InputError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_input_corpus(tmp_path_factory.mktemp("corpus"), bomb_mib=64)


def test_every_corpus_file_is_refused_in_one_line_or_read_and_none_hangs(corpus, tmp_path):
    wrong = []
    for item in corpus:
        reader = _read if item["kind"] == "image" else _read_swc
        before = snapshot(item["path"])
        out = run_probe(reader, str(item["path"]), timeout=10, workdir=tmp_path)
        want = CLEAR if item["expect"] == "error" else OK
        if out.kind != want or snapshot(item["path"]) != before:
            wrong.append((item["name"], out.kind, out.message))
        elif want == CLEAR and item["path"].name not in out.message:
            wrong.append((item["name"], "message does not name the file", out.message))
    assert wrong == []
    assert sum(i["expect"] == "error" for i in corpus) >= 30


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
        assert np.isfinite(np.asarray(data[(slice(0, 4),) * data.ndim], dtype=np.float64)).all()


def test_the_zeros_bomb_reads_from_one_decompressed_copy(corpus):
    from napari_medseg.core.io import read_image
    from napari_medseg.core.paths import cache_dir

    item = next(i for i in corpus if "of zeros" in i["name"])
    levels, meta = read_image(item["path"])
    assert meta["source_path"] == str(item["path"])
    assert float(levels[0][:, :, -3:].max().compute()) == 0.0  # the last slab: no decompression from the start
    assert len(list((cache_dir() / "nifti").glob("*.nii"))) >= 1


def test_a_valid_qform_stands_in_for_a_broken_sform_and_says_so(corpus):
    from napari_medseg.core.io import read_image

    item = next(i for i in corpus if i["name"] == "zero sform, valid qform")
    _, meta = read_image(item["path"])
    assert meta["affine_source"].startswith("qform") and meta["scale"] == [2.0, 2.0, 2.0]


def test_the_size_cap_can_be_lifted_for_real_giants(corpus, monkeypatch):
    from napari_medseg.core.io.guard import check_declared_size

    item = next(i for i in corpus if i["name"] == "TIFF declaring 1,000,000² px")
    with pytest.raises(InputError, match="NAPARI_MEDSEG_MAX_RATIO=0"):
        check_declared_size(item["path"], (10**6, 10**6), np.uint8)
    monkeypatch.setenv("NAPARI_MEDSEG_MAX_RATIO", "0")
    check_declared_size(item["path"], (10**6, 10**6), np.uint8)  # allowed now: no error


def test_a_corrupt_chunk_inside_a_segment_run_is_one_line(corpus, tmp_path, run_cli):
    item = next(i for i in corpus if i["name"] == "OME-Zarr with a corrupt chunk")
    code, _, err = run_cli("track", item["path"], "--starts", "8,8", "--max-steps", "5", "--out", tmp_path / "t.swc")
    assert code == 2 and "cannot be decoded" in err and "Traceback" not in err


# ---------------------------------------------------------------- fuzzing

_swc_line = st.tuples(
    st.integers(-3, 8), st.integers(-2, 9),
    *[st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10)) for _ in range(4)],
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
        assert "\n" not in str(exc)
        return
    assert all(np.isfinite(t).all() and np.abs(t).max() <= 1e7 for t in forest.traces)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dims=st.lists(st.integers(-2, 40), min_size=1, max_size=5),
    pixdim=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-5, 5)), min_size=3,
                    max_size=3),
    codes=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    srow=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=12, max_size=12),
    datatype=st.sampled_from([2, 4, 8, 16, 32, 64, 512, 768, 1792, 9999]),
    vox_offset=st.sampled_from([0.0, 352.0, 348.0, 1e9, -4.0]),
)
def test_nifti_header_fuzz_gives_sane_metadata_or_one_clear_error(tmp_path, dims, pixdim, codes, srow, datatype,
                                                                  vox_offset):
    import nibabel as nib

    from napari_medseg.core.io import read_image

    hdr = nib.Nifti1Header()
    raw = bytearray(hdr.binaryblock)
    fields = np.frombuffer(raw, dtype=hdr.structarr.dtype)[0].copy()
    fields["dim"][:] = [len(dims), *dims, *[1] * (7 - len(dims))]
    with np.errstate(over="ignore"):  # float32 header fields: huge values become inf, as in a real header
        fields["pixdim"][1:4] = pixdim
    fields["datatype"] = datatype
    fields["bitpix"] = 8
    fields["vox_offset"] = vox_offset
    fields["qform_code"], fields["sform_code"] = codes
    fields["srow_x"], fields["srow_y"], fields["srow_z"] = srow[:4], srow[4:8], srow[8:]
    p = tmp_path / "fuzz.nii"
    p.write_bytes(fields.tobytes() + b"\0" * 4 + bytes(range(256)) * 40)
    try:
        levels, meta = read_image(p)
    except InputError as exc:
        assert "\n" not in str(exc) and str(p) in str(exc)
        return
    affine = np.asarray(meta["affine"])
    assert np.isfinite(affine).all() and abs(np.linalg.det(affine[:3, :3])) > 0
    assert all(s > 0 for s in levels[0].shape)
