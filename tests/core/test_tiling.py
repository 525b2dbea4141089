"""Tiled inference: plan, exactness against whole-image inference, streaming, bad input, Stop."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from napari_medseg.core import nets, tiling, tilestore
from napari_medseg.core.errors import InputError
from napari_medseg.core.jobs import Job, collect

from tests.conftest import randomize_batchnorm


def softmax(y):
    return torch.softmax(y, 1)


@pytest.mark.parametrize("length", [37, 512, 1000, 2049, 5000])
@pytest.mark.parametrize("blend", [0, 16])
def test_plan_is_a_partition_of_unity_on_the_stride_grid(length, blend):
    ax = tiling.plan_axis(length, 512, 112, 8, 48, blend)
    total = np.zeros(ax.padded)
    for s, w in zip(ax.starts, ax.weights):
        assert s % 8 == 0 and s + ax.tile <= ax.padded
        total[s : s + ax.tile] += w
        # a tile is never trusted within the margin of a cut edge
        if s > 0:
            assert np.all(w[:48] == 0)
        if s + ax.tile < ax.padded:
            assert np.all(w[-48:] == 0)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert ax.padded % 8 == 0 and ax.padded >= length


def _tiled(model, img, cfg, tmp_path, **kw):
    out = tiling.create_output(tmp_path / "out.zarr", img.shape[: img.ndim - (1 if kw.get("channel_axis") == -1 else 0)],
                               2, cfg)
    reports, result = collect(tiling.tiled_inference(model, img, out, cfg, postprocess=softmax, **kw))
    return reports, result


@pytest.mark.parametrize("blend", [0, 16])
def test_tiled_equals_whole_image_2d(unet2d, rng, tmp_path, blend):
    img = (rng.random((601, 457)) * 255).astype(np.uint8)
    whole = tiling.predict_whole(unet2d, img, postprocess=softmax)
    cfg = tiling.TileConfig(tile=256, margin=48, blend=blend, batch_size=2)
    reports, out = _tiled(unet2d, img, cfg, tmp_path)
    assert cfg.plan(img.shape).n_tiles > 4 and reports[-1].step == reports[-1].total
    assert np.abs(out[...] - whole).max() <= 1e-5


def test_too_small_margin_shows_seams(unet2d, rng, tmp_path):
    """The same check fails when the overlap ignores the receptive field."""
    img = (rng.random((601, 457)) * 255).astype(np.uint8)
    whole = tiling.predict_whole(unet2d, img, postprocess=softmax)
    cfg = tiling.TileConfig(tile=256, margin=0, blend=0, overlap=16)
    _, out = _tiled(unet2d, img, cfg, tmp_path)
    assert np.abs(out[...] - whole).max() > 1e-3


def test_tiled_equals_whole_image_3d(rng, tmp_path):
    torch.manual_seed(0)
    arch = {"name": "monai.UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                            "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1,
                                            "norm": "batch"}}
    model = randomize_batchnorm(nets.build(arch))
    vol = rng.random((50, 70, 45)).astype(np.float32)
    whole = tiling.predict_whole(model, vol, stride=4, postprocess=softmax)
    cfg = tiling.TileConfig(tile=32, stride=4, margin=12, blend=4)
    _, out = _tiled(model, vol, cfg, tmp_path)
    assert cfg.plan(vol.shape).n_tiles >= 8
    assert np.abs(out[...] - whole).max() <= 1e-5


def test_rgb_channel_axis_and_label_output(rng, tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorm(nets.build(nets.bench_unet_arch(in_channels=3)))
    img = (rng.random((300, 260, 3)) * 255).astype(np.uint8)
    whole = tiling.predict_whole(model, img, channel_axis=-1, postprocess=softmax)
    cfg = tiling.TileConfig(tile=160, margin=48, blend=8, output="labels")
    out = tiling.create_output(tmp_path / "l.zarr", img.shape[:2], 2, cfg)
    collect(tiling.tiled_inference(model, img, out, cfg, postprocess=softmax, channel_axis=-1))
    assert out.dtype == np.uint8 and out.shape == img.shape[:2]
    ambiguous = np.abs(whole[1] - whole[0]) < 1e-4
    assert np.array_equal(out[...][~ambiguous], whole.argmax(0)[~ambiguous])


def test_nan_and_empty_input_are_clear_errors(unet2d, tmp_path):
    img = np.zeros((300, 300), np.float32)
    img[250, 10] = np.nan
    cfg = tiling.TileConfig(tile=128, margin=48, blend=0)
    with pytest.raises(InputError, match="NaN"):
        _tiled(unet2d, img, cfg, tmp_path)
    assert np.isnan(img[250, 10])  # the input is left as it was
    with pytest.raises(InputError, match="empty"):
        _tiled(unet2d, np.zeros((0, 5), np.float32), cfg, tmp_path)
    with pytest.raises(InputError, match="2D or 3D"):
        _tiled(unet2d, np.zeros((2, 3, 4, 5), np.float32), cfg, tmp_path)


def test_instance_norm_models_get_a_warning(rng, tmp_path):
    model = nets.build({"name": "monai.UNet", "kwargs": {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                                                         "channels": [4, 8], "strides": [2], "norm": "instance"}})
    cfg = tiling.TileConfig(tile=64, stride=2, margin=8, blend=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tiled(model.eval(), rng.random((100, 100)).astype(np.float32), cfg, tmp_path)
    assert any("instance normalisation" in str(w.message) for w in caught)


def test_stop_during_inference_ends_threads(unet2d, rng, tmp_path):
    img = (rng.random((1200, 1200)) * 255).astype(np.uint8)
    cfg = tiling.TileConfig(tile=256, margin=48, blend=0)
    out = tiling.create_output(tmp_path / "s.zarr", img.shape, 2, cfg)
    job = Job(tiling.tiled_inference(unet2d, img, out, cfg, postprocess=softmax))
    seen = 0
    for p in job:
        seen = p.step
        if p.step >= 2:
            job.stop()
    assert job.stopped and seen == 2 and cfg.plan(img.shape).n_tiles > 2
    names = {t.name for t in threading.enumerate()}
    assert "medseg-tile-reader" not in names and "medseg-tile-writer" not in names


def test_output_store_is_readable_while_filling(unet2d, rng, tmp_path):
    """napari shows the zarr store during the run: rows appear as tile rows finish."""
    import zarr

    img = (rng.random((900, 300)) * 255).astype(np.uint8)
    cfg = tiling.TileConfig(tile=256, margin=48, blend=0)
    out = tiling.create_output(tmp_path / "f.zarr", img.shape, 2, cfg)
    filled = []
    for p in tiling.tiled_inference(unet2d, img, out, cfg, postprocess=softmax):
        view = zarr.open_array(str(tmp_path / "f.zarr"), mode="r")
        filled.append(int((view[0].sum(axis=1) > 0).sum()))
    assert filled[0] < img.shape[0]
    assert zarr.open_array(str(tmp_path / "f.zarr"), mode="r")[...].sum(axis=0).min() > 0.99


def test_large_results_stream_into_a_stride_pyramid(rng, tmp_path, monkeypatch):
    monkeypatch.setattr(tilestore, "PYRAMID_FROM", 1000)
    monkeypatch.setattr(tilestore, "PYRAMID_DOWN_TO", 200)
    model = torch.nn.Conv2d(1, 2, 1).eval()
    with torch.no_grad():  # class 1 where the pixel is darker than a quarter
        model.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
        model.bias.copy_(torch.tensor([-0.5, 0.0]))
    img = (rng.random((1500, 700)) * 255).astype(np.uint8)
    cfg = tiling.TileConfig(tile=256, stride=1, margin=0, blend=0, overlap=0, output="labels")
    levels = tiling.create_pyramid_output(tmp_path / "p.zarr", img.shape, 2, cfg)
    assert [lv.shape for lv in levels] == [(1500, 700), (750, 350), (375, 175)]
    reports, result = collect(tiling.tiled_inference(model, img, levels, cfg, postprocess=softmax))
    assert result is levels and reports[-1].step == cfg.plan(img.shape).n_tiles
    full = levels[0][...]
    assert 0 < full.mean() < 1
    # filled by tiled_inference alone, the store is not marked complete (into_result does that)
    with pytest.raises(InputError, match="incomplete"):
        tiling.open_pyramid_output(tmp_path / "p.zarr")
    reopened = tiling.open_pyramid_output(tmp_path / "p.zarr", allow_incomplete=True)
    for k, level in enumerate(reopened):
        np.testing.assert_array_equal(level[...], full[:: 2**k, :: 2**k])


@pytest.mark.parametrize("output", ["rgb8", "probabilities"])
def test_column_block_flushing_writes_what_a_whole_band_flush_writes(unet2d, rng, tmp_path, monkeypatch, output):
    """Bands are converted and written a block of columns at a time (memory flat in the
    slide's width); blocks narrower than a tile, ending off the chunk grid, give the same
    full-resolution result and pyramid levels as one block."""
    monkeypatch.setattr(tilestore, "PYRAMID_FROM", 500)
    monkeypatch.setattr(tilestore, "PYRAMID_DOWN_TO", 100)
    img = rng.random((3, 420, 610)).astype(np.float32)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Sigmoid()).eval()
    cfg = tiling.TileConfig(tile=128, stride=1, margin=4, blend=8, output=output)

    def run(name, columns):
        monkeypatch.setattr(tilestore, "FLUSH_COLUMNS", columns)
        levels = tiling.create_pyramid_output(tmp_path / name, img.shape[1:], 3, cfg)
        collect(tiling.tiled_inference(model, img, levels, cfg, channel_axis=0, out_channels=3))
        return [np.asarray(lv[...]) for lv in levels]

    narrow, whole = run("narrow.zarr", 24), run("whole.zarr", 4096)
    assert len(narrow) == 3 and narrow[0].shape == (3, 420, 610)
    for a, b in zip(narrow, whole):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(narrow[2], narrow[0][:, ::4, ::4])
    reference = tiling.predict_whole(model, img, stride=1, channel_axis=0)
    tol = 0.5 / 255 + 1e-6 if output == "rgb8" else 1e-5
    scaled = narrow[0] / 255.0 if output == "rgb8" else narrow[0]
    assert np.abs(scaled - reference).max() <= tol


def test_result_pyramids_carry_ome_ngff_metadata_that_ome_zarr_py_reads(tmp_path):
    """Levels, axes (channel first for probabilities) and per-level scales of 2**k."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from napari_medseg.core.tileplan import TileConfig
    from napari_medseg.core.tilestore import create_pyramid_output

    levels = create_pyramid_output(tmp_path / "p.zarr", (600, 500), 2, TileConfig(output="probabilities"),
                                   smallest=128, largest=512)
    for k, lev in enumerate(levels):
        lev[...] = k + 1  # something to read back
    [node] = list(Reader(parse_url(str(tmp_path / "p.zarr")))())
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"] and len(node.data) == len(levels) >= 3
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[1.0, 2.0**k, 2.0**k] for k in range(len(levels))]
    assert [tuple(d.shape) for d in node.data] == [tuple(lev.shape) for lev in levels]
    assert float(np.asarray(node.data[1]).mean()) == 2.0
