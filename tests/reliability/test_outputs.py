"""Outputs never destroy what the user has, and an unfinished result never passes for a finished one."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_medseg.bench.probe import snapshot
from napari_medseg.core.errors import InputError
from napari_medseg.core.outputs import check_output_path, is_complete_result


def test_out_on_a_folder_of_user_files_is_refused_even_with_overwrite(rgb_tif, tmp_path, run_cli):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("keep\n")
    for extra in ((), ("--overwrite",)):
        code, _, err = run_cli("segment", rgb_tif, "--tile", "256", "--out", d, *extra)
        assert code == 2 and err.count("error:") == 1 and "not a napari-medseg result" in err
        assert (d / "notes.txt").read_text() == "keep\n" and sorted(os.listdir(d)) == ["notes.txt"]


def test_out_equal_to_the_input_or_in_a_missing_folder_is_refused(rgb_tif, tmp_path, run_cli):
    before = snapshot(rgb_tif)
    code, _, err = run_cli("segment", rgb_tif, "--tile", "256", "--out", rgb_tif, "--overwrite")
    assert code == 2 and "is the input" in err
    assert snapshot(rgb_tif) == before
    code, _, err = run_cli("segment", rgb_tif, "--out", tmp_path / "no" / "r.zarr")
    assert code == 2 and "does not exist" in err and not (tmp_path / "no").exists()
    with pytest.raises(InputError, match="is the input"):
        check_output_path(tmp_path / "in.zarr" / "inner", inputs=[tmp_path / "in.zarr"])


@pytest.mark.parametrize("flag", ["--batch-size", "--tile"])
def test_zero_batch_or_tile_is_refused(rgb_tif, tmp_path, run_cli, flag):
    code, _, err = run_cli("segment", rgb_tif, flag, "0", "--out", tmp_path / "r.zarr")
    assert code == 2 and "must be at least 1" in err and not (tmp_path / "r.zarr").exists()


def test_memory_preflight_refuses_batch_zero():
    import torch

    from napari_medseg.core.device import preflight

    with pytest.raises(InputError, match="at least 1"):
        preflight(torch.nn.Conv2d(1, 1, 3), torch.device("cpu"), (3072, 3072), 0)


def test_a_finished_result_is_replaced_only_with_overwrite(rgb_tif, tmp_path, run_cli):
    out = tmp_path / "r.zarr"
    assert run_cli("segment", rgb_tif, "--tile", "256", "--out", out)[0] == 0
    assert is_complete_result(out)
    first = snapshot(out)
    code, _, err = run_cli("segment", rgb_tif, "--tile", "256", "--out", out)
    assert code == 2 and "finished napari-medseg result" in err and snapshot(out) == first
    code, _, _ = run_cli("segment", rgb_tif, "--tile", "256", "--out", out, "--overwrite")
    assert code == 0 and is_complete_result(out)
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_a_2d_model_on_a_3d_volume_is_refused_in_one_line(tmp_path, run_cli):
    import nibabel as nib

    from napari_medseg.core import nets
    from napari_medseg.core.registry import Registry

    arch = nets.bench_unet_arch(spatial_dims=2, in_channels=1)
    Registry().save_new_version("gray2d", nets.build(arch).state_dict(), arch=arch,
                                extra={"io": {"input": "gray", "postprocess": "softmax", "stride": 8, "margin": 48,
                                              "classes": ["bg", "fg"]}})
    vol = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 24, 24)).astype(np.float32), np.eye(4)), vol)
    code, _, err = run_cli("segment", vol, "--model", "gray2d", "--out", tmp_path / "v.zarr")
    assert code == 2 and "2-D model and the image is 3-D" in err and "Traceback" not in err


def test_track_never_overwrites_a_file(rgb_tif, tmp_path, run_cli):
    notes = tmp_path / "notes.swc"
    notes.write_text("# my corrected traces\n")
    code, _, err = run_cli("track", rgb_tif, "--starts", "128,128", "--out", notes)
    assert code == 2 and "left alone" in err and notes.read_text() == "# my corrected traces\n"
    code, _, err = run_cli("track", rgb_tif, "--starts", "128,128", "--out", rgb_tif, "--overwrite")
    assert code == 2 and "is the input" in err


def test_kill_9_during_segment_loses_nothing_and_is_never_taken_as_complete(rgb_tif, tmp_path, run_cli):
    from napari_medseg._reader import read_layers
    from napari_medseg.bench.reliability import _rgb_tiff
    from napari_medseg.bench.reliability import segment_and_kill as _segment_and_kill
    from napari_medseg.core.tiling import open_pyramid_output

    big = _rgb_tiff(tmp_path / "big.tif", 3072, seed=1)
    done = tmp_path / "done.zarr"
    assert run_cli("segment", rgb_tif, "--tile", "256", "--out", done)[0] == 0
    before = snapshot(done)
    # replacing a finished result: killed midway, the old one is untouched and still opens
    assert _segment_and_kill(big, done, "--overwrite")
    assert snapshot(done) == before and len(open_pyramid_output(done)) == 1
    # a fresh path: what is left says it is incomplete, and every reader refuses it
    fresh = tmp_path / "fresh.zarr"
    assert _segment_and_kill(big, fresh)
    assert fresh.exists() and not is_complete_result(fresh)
    with pytest.raises(InputError, match="incomplete result"):
        open_pyramid_output(fresh)
    with pytest.raises(InputError, match="incomplete result"):
        read_layers(str(fresh))
    code, _, err = run_cli("segment", rgb_tif, "--tile", "256", "--out", fresh)
    assert code == 2 and "incomplete napari-medseg result" in err
    # the next write to the same path clears the dead run's temp folder
    assert run_cli("segment", rgb_tif, "--tile", "256", "--out", done, "--overwrite")[0] == 0
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_out_with_a_file_suffix_is_refused_before_anything_runs(rgb_tif, tmp_path, run_cli):
    for name in ("x.tif", "x.ome.tiff", "x.png", "noext"):
        code, _, err = run_cli("segment", rgb_tif, "--tile", "256", "--out", tmp_path / name)
        assert code == 2 and err.count("error:") == 1 and ".zarr" in err
        assert not (tmp_path / name).exists()


def test_atomic_writes_get_the_permissions_a_plain_open_gives(tmp_path):
    from napari_medseg.core.atomic import atomic_write_bytes

    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", lambda fh: fh.write(b"x"))
        with open(tmp_path / "plain.bin", "wb") as fh:
            fh.write(b"x")
    finally:
        os.umask(old)
    mode = (tmp_path / "a.bin").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.bin").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    assert (tmp_path / "a.bin").read_bytes() == b"x"
