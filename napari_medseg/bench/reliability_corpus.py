"""A bad-input corpus made at run time: every way an image or SWC file can be wrong.

:func:`make_input_corpus` writes the files into a folder and returns one row per file:
``{"name", "path", "kind", "expect", "shape", "why"}`` where ``kind`` is ``"image"`` or
``"swc"``, ``expect`` is ``"error"`` (must be refused in one line) or ``"ok"`` (must
read, as ``shape`` when given), and ``why`` (errors only) is a regular expression the
one-line message must match: it says what is wrong. The reliability bench and ``tests/reliability`` share
it. Nothing here needs torch.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np


def _flip(path: Path, at: float = 0.5, n: int = 64) -> None:
    raw = bytearray(path.read_bytes())
    i = int(len(raw) * at)
    for k in range(i, min(len(raw), i + n)):
        raw[k] ^= 0xA5
    path.write_bytes(bytes(raw))


def _truncate(path: Path, keep: float = 0.6) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _nifti(folder: Path, name: str, data, affine=None, edit=None) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if edit is not None:  # without an affine, nibabel saves the edited header's sform/qform as they are
        hdr = img.header.copy()
        edit(hdr)
        img = nib.Nifti1Image(data, None, header=hdr)
    path = folder / name
    nib.save(img, path)
    return path


def _nifti_items(folder: Path, bomb_mib: int) -> list[dict]:
    rng = np.random.default_rng(0)
    vol = rng.random((24, 20, 16)).astype(np.float32)
    rows = [("good.nii.gz", _nifti(folder, "good.nii.gz", vol), "ok", vol.shape),
            ("good.nii", _nifti(folder, "good.nii", vol), "ok", vol.shape)]
    p = _nifti(folder, "truncated.nii.gz", vol)
    _truncate(p)
    rows.append(("truncated .nii.gz", p, "error", None))
    p = _nifti(folder, "corrupt.nii.gz", rng.random((64, 64, 32)).astype(np.float32))
    _flip(p, 0.5)
    rows.append(("corrupt gzip stream", p, "error", None))
    p = _nifti(folder, "truncated.nii", vol)
    _truncate(p)
    rows.append(("truncated .nii", p, "error", None))

    def nan_sform(h):
        h.set_sform(np.full((4, 4), np.nan), code=1)
        h.set_qform(None, code=0)

    def zero_sform(h):
        h.set_sform(np.zeros((4, 4)), code=1)
        h.set_qform(None, code=0)

    def zero_sform_good_qform(h):
        h.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
        h["srow_x"], h["srow_y"], h["srow_z"] = 0, 0, 0
        h["sform_code"] = 1

    rows.append(("NaN sform", _nifti(folder, "nan_sform.nii", vol, edit=nan_sform), "error", None))
    rows.append(("all-zero sform", _nifti(folder, "zero_sform.nii", vol, edit=zero_sform), "error", None))
    rows.append(("zero sform, valid qform", _nifti(folder, "qform.nii", vol, edit=zero_sform_good_qform), "ok",
                 vol.shape))
    rows.append(("complex voxels", _nifti(folder, "complex.nii", (vol + 1j * vol).astype(np.complex64)), "error",
                 None))
    rows.append(("5-D volume", _nifti(folder, "5d.nii", rng.random((4, 4, 4, 2, 2)).astype(np.float32)), "error",
                 None))
    # a header declaring a huge volume over a few bytes of gzip
    p = _nifti(folder, "header_bomb.nii.gz", vol)
    import nibabel as nib

    img = nib.load(p)
    hdr = img.header.copy()
    hdr.set_data_shape((32000, 32000, 2000))
    raw = hdr.binaryblock + b"\0" * 4 + b"\0" * 4096
    with gzip.open(p, "wb") as fh:
        fh.write(raw)
    rows.append(("header declaring 7 TiB", p, "error", None))
    # a real decompression bomb: bomb_mib MiB of zeros in well under 1 MiB of gzip
    shape = (256, 256, bomb_mib * 4)  # float32
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    p = folder / "zeros_bomb.nii.gz"
    with gzip.open(p, "wb", compresslevel=9) as fh:
        fh.write(hdr.binaryblock + b"\0" * 4)
        zeros = bytes(2**20)
        for _ in range(bomb_mib):
            fh.write(zeros)
    rows.append((f"{bomb_mib} MiB of zeros in {p.stat().st_size // 1024} KiB of gzip", p, "ok", shape))
    rgb = np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rows.append(("RGB24 (packed colour) voxels", _nifti(folder, "rgb24.nii", rgb), "error", None))
    nan_vol = np.full((16, 16, 8), np.nan, np.float32)
    rows.append(("all-NaN volume (shown; refused by the commands)", _nifti(folder, "all_nan.nii.gz", nan_vol),
                 "ok", nan_vol.shape))
    p = folder / "empty.nii"
    p.write_bytes(b"")
    rows.append(("empty .nii", p, "error", None))
    p = folder / "garbage.nii.gz"
    p.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    rows.append(("random bytes .nii.gz", p, "error", None))
    return [{"name": n, "path": p, "kind": "image", "expect": e, "shape": s} for n, p, e, s in rows]


def _tiff_items(folder: Path) -> list[dict]:
    import tifffile

    rng = np.random.default_rng(1)
    img = (rng.random((512, 512)) * 255).astype(np.uint8)
    rows = []
    p = folder / "good.tif"
    tifffile.imwrite(p, img, tile=(128, 128), compression="zlib")
    rows.append(("good tiled TIFF", p, "ok", img.shape))
    p = folder / "good_rgb.tif"
    tifffile.imwrite(p, np.stack([img] * 3, -1), photometric="rgb")
    rows.append(("good RGB TIFF", p, "ok", (512, 512, 3)))
    p = folder / "truncated.tif"
    tifffile.imwrite(p, img)
    _truncate(p, 0.5)
    rows.append(("truncated TIFF", p, "error", None))
    p = folder / "corrupt_tile.tif"
    tifffile.imwrite(p, (rng.random((512, 512)) * 255).astype(np.uint8), tile=(128, 128), compression="zlib")
    _flip(p, 0.45, 256)
    rows.append(("TIFF with a corrupt zlib tile", p, "error", None))
    # a small file whose header declares 1,000,000 x 1,000,000 pixels
    p = folder / "header_bomb.tif"
    tifffile.imwrite(p, shape=(1_000_000, 1_000_000), dtype=np.uint8, rowsperstrip=1_000_000)
    rows.append(("TIFF declaring 1,000,000² px", p, "error", None))
    p = folder / "nan_size.ome.tif"
    tifffile.imwrite(p, img, metadata={"axes": "YX", "PhysicalSizeX": float("nan"), "PhysicalSizeY": -2.0})
    rows.append(("OME-TIFF pixel size NaN / -2", p, "error", None))
    p = folder / "complex.tif"
    tifffile.imwrite(p, (img + 1j * img).astype(np.complex64))
    rows.append(("complex TIFF", p, "error", None))
    p = folder / "empty.tif"
    p.write_bytes(b"")
    rows.append(("empty TIFF", p, "error", None))
    p = folder / "garbage.tif"
    p.write_bytes(b"II*\0" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    rows.append(("random bytes after a TIFF signature", p, "error", None))
    return [{"name": n, "path": p, "kind": "image", "expect": e, "shape": s} for n, p, e, s in rows]


def _edit_zattrs(path: Path, edit) -> None:
    f = path / ".zattrs"
    attrs = json.loads(f.read_text())
    edit(attrs["multiscales"][0])
    f.write_text(json.dumps(attrs))


def _zarr_items(folder: Path) -> list[dict]:
    import zarr

    from ..core.io import write_ome_zarr

    rng = np.random.default_rng(2)
    img = (rng.random((256, 256)) * 255).astype(np.uint8)
    rows = []
    p = folder / "good.ome.zarr"
    write_ome_zarr(p, img, axes="yx", levels=3)
    rows.append(("good OME-Zarr", p, "ok", img.shape))

    def variant(name, edit):
        q = folder / name
        shutil.copytree(p, q)
        _edit_zattrs(q, edit)
        return q

    def set_scale(value):
        def edit(ms):
            ms["datasets"][0]["coordinateTransformations"][0]["scale"] = value
        return edit

    rows.append(("OME-Zarr scale [NaN, 1]", variant("nan_scale.ome.zarr", set_scale([float("nan"), 1.0])), "error",
                 None))
    rows.append(("OME-Zarr scale [1, -5]", variant("neg_scale.ome.zarr", set_scale([1.0, -5.0])), "error", None))
    rows.append(("OME-Zarr with 3 axes for 2-D data",
                 variant("axes.ome.zarr", lambda ms: ms["axes"].insert(0, {"name": "z", "type": "space"})),
                 "error", None))
    rows.append(("OME-Zarr listing the coarsest level first",
                 variant("coarse_first.ome.zarr", lambda ms: ms["datasets"].reverse()), "ok", img.shape))
    q = folder / "corrupt_chunk.ome.zarr"
    g = zarr.open_group(str(q), mode="w", zarr_format=2)
    arr = g.create_array("0", shape=img.shape, chunks=(128, 128), dtype=img.dtype)
    arr[:] = (rng.random(img.shape) * 255).astype(np.uint8)
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y", "type": "space"}, {"name": "x", "type":
                                                                                              "space"}],
                               "datasets": [{"path": "0", "coordinateTransformations": [
                                   {"type": "scale", "scale": [1.0, 1.0]}]}]}]
    chunk = next(f for f in sorted((q / "0").rglob("*")) if f.is_file() and not f.name.startswith("."))
    _flip(chunk, 0.0, 16)  # the blosc header: decoding fails (blosc has no checksum for the data)
    rows.append(("OME-Zarr with a corrupt chunk", q, "error", None))
    rows.append(("OME-Zarr listing no datasets",
                 variant("no_datasets.ome.zarr", lambda ms: ms["datasets"].clear()), "error", None))

    def same_axis_twice(ms):
        ms["axes"][1] = {"name": "y", "type": "space"}

    rows.append(("OME-Zarr naming one axis twice", variant("dup_axes.ome.zarr", same_axis_twice), "error", None))
    for name, shape, chunks in (("huge_shape.zarr", (10**7, 10**7), (1024, 1024)),
                                ("huge_chunk.zarr", (2**17, 2**17), (2**17, 2**17))):
        q = folder / name
        g = zarr.open_group(str(q), mode="w", zarr_format=2)
        g.create_array("0", shape=shape, chunks=chunks, dtype="f8")  # metadata only: no chunk is written
        g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y", "type": "space"},
                                                              {"name": "x", "type": "space"}],
                                   "datasets": [{"path": "0"}]}]
    rows.append(("zarr declaring 10^14 float64 pixels", folder / "huge_shape.zarr", "error", None))
    rows.append(("zarr with one 128 GiB chunk", folder / "huge_chunk.zarr", "error", None))
    q = folder / "garbage_meta.zarr"
    q.mkdir()
    (q / ".zgroup").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    rows.append(("zarr folder with random bytes as metadata", q, "error", None))
    q = folder / "empty_dir.zarr"
    q.mkdir()
    rows.append(("empty folder named .zarr", q, "error", None))
    q = folder / "incomplete_result.zarr"
    shutil.copytree(p, q)
    g = zarr.open_group(str(q), mode="r+")
    g.attrs["napari_medseg"] = {"levels": 1, "complete": False}
    rows.append(("napari-medseg result whose run was killed", q, "error", None))
    q = folder / "file.ome.zarr"
    q.write_bytes(b"not a folder")
    rows.append(("a file named .ome.zarr", q, "error", None))
    return [{"name": n, "path": p, "kind": "image", "expect": e, "shape": s} for n, p, e, s in rows]


SWC_CASES = {
    "good.swc": ("1 2 10 10 0 1 -1\n2 2 11 10 0 1 1\n3 2 12 11 0 1 2\n", "ok"),
    "huge_coordinates.swc": ("1 2 1e308 10 0 1 -1\n2 2 11 10 0 1 1\n", "error"),
    "nan.swc": ("1 2 nan 10 0 1 -1\n", "error"),
    "negative_radius.swc": ("1 2 10 10 0 -3 -1\n", "error"),
    "missing_parent.swc": ("1 2 10 10 0 1 -1\n2 2 11 10 0 1 7\n", "error"),
    "cycle.swc": ("1 2 10 10 0 1 2\n2 2 11 10 0 1 1\n", "error"),
    "six_columns.swc": ("1 2 10 10 0 -1\n", "error"),
    "only_comments.swc": ("# nothing here\n", "error"),
    "binary.swc": (None, "error"),
    "infinite.swc": ("1 2 10 inf 0 1 -1\n", "error"),
    "duplicate_id.swc": ("1 2 10 10 0 1 -1\n1 2 11 10 0 1 -1\n", "error"),
    "self_parent.swc": ("1 2 10 10 0 1 1\n", "error"),
    "fractional_id.swc": ("1.5 2 10 10 0 1 -1\n", "error"),
    "huge_radius.swc": ("1 2 10 10 0 1e300 -1\n", "error"),
    "empty.swc": ("", "error"),
}


def _swc_items(folder: Path) -> list[dict]:
    rows = []
    for name, (text, expect) in SWC_CASES.items():
        p = folder / name
        if text is None:
            p.write_bytes(bytes(range(256)) * 8)
        else:
            p.write_text(text)
        rows.append({"name": f"SWC: {name}", "path": p, "kind": "swc", "expect": expect, "shape": None})
    from ..methods.tracking.swc import MAX_SWC_BYTES

    p = folder / "huge.swc"
    p.write_text(SWC_CASES["good.swc"][0])
    with open(p, "r+b") as fh:
        fh.truncate(MAX_SWC_BYTES + 1)  # a hole: no disk used
    rows.append({"name": "SWC: above the size limit", "path": p, "kind": "swc", "expect": "error", "shape": None})
    return rows


def _any_suffix_items(folder: Path) -> list[dict]:
    """An empty file and one of random bytes for every suffix the reader takes."""
    from ..core.io import SUFFIXES

    rng = np.random.default_rng(3)
    rows = []
    for suffix in SUFFIXES:
        for what, data in (("empty", b""), ("random", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())):
            p = folder / f"any_{what}{suffix}"
            p.write_bytes(data)
            rows.append({"name": f"{what} file named *{suffix}", "path": p, "kind": "image", "expect": "error",
                         "shape": None})
    return rows


#: what the message for each refused file must say (a regular expression), by file name
WHY = {
    "truncated.nii.gz": "truncated", "corrupt.nii.gz": "corrupt", "truncated.nii": "truncated",
    "nan_sform.nii": "sform", "zero_sform.nii": "sform", "complex.nii": "complex", "5d.nii": "5-D",
    "header_bomb.nii.gz": "declares", "rgb24.nii": "colour", "empty.nii": "[Ee]mpty",
    "garbage.nii.gz": "not a gzip|corrupt",
    "truncated.tif": "truncated", "corrupt_tile.tif": "cannot be decoded", "header_bomb.tif": "decompression bomb",
    "nan_size.ome.tif": "pixel size", "complex.tif": "complex", "empty.tif": "not a TIFF",
    "garbage.tif": "no images|not a",
    "nan_scale.ome.zarr": "scale", "neg_scale.ome.zarr": "scale", "axes.ome.zarr": "axes",
    "corrupt_chunk.ome.zarr": "cannot be decoded", "no_datasets.ome.zarr": "no datasets",
    "dup_axes.ome.zarr": "twice", "huge_shape.zarr": "declares", "huge_chunk.zarr": "blocks of",
    "garbage_meta.zarr": "not a readable zarr", "empty_dir.zarr": "no zarr metadata",
    "incomplete_result.zarr": "incomplete", "file.ome.zarr": "is a file",
    "huge_coordinates.swc": "coordinates must lie", "nan.swc": "NaN", "negative_radius.swc": "radius",
    "missing_parent.swc": "does not exist", "cycle.swc": "cycle", "six_columns.swc": "7 numeric columns",
    "only_comments.swc": "no nodes", "binary.swc": "Cannot read", "infinite.swc": "infinite",
    "duplicate_id.swc": "duplicate", "self_parent.swc": "cycle", "fractional_id.swc": "integers",
    "huge_radius.swc": "radius", "empty.swc": "no nodes", "huge.swc": "MiB",
}


def _why(path: Path) -> str:
    if path.name.startswith("any_"):
        return "not a readable NIfTI" if ".nii" in path.name else "is a file" if ".zarr" in path.name else \
            "not a readable TIFF"
    return WHY[path.name]


def make_input_corpus(folder: str | Path, bomb_mib: int = 512) -> list[dict]:
    """Write the corpus into ``folder`` (created) and describe each file (see the module doc)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = (_nifti_items(folder, bomb_mib) + _tiff_items(folder) + _zarr_items(folder) + _any_suffix_items(folder)
            + _swc_items(folder))
    for row in rows:
        row["why"] = _why(row["path"]) if row["expect"] == "error" else None
    return rows
