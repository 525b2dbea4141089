"""The despeckler with a U-shaped body (issue 22): the paper's head, an exact receptive
radius, exact tiles on its stride of 4, in the standalone despeckler and the pipeline, and
``train despeckle --body unet``."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch

from napari_medseg.core.jobs import collect
from napari_medseg.methods.staining.cyclegan import ResnetGenerator
from napari_medseg.methods.staining.despeckle import DespeckleNet
from napari_medseg.methods.staining.despeckle_unet import UDespeckleNet
from napari_medseg.methods.staining.despeckling import ScaledDespeckler, despeckle_array, despeckle_slide
from napari_medseg.methods.staining.pipeline import StainingNet, despeckle_tile_config, geometry, stain_array, stain_slide


def _unet(seed=0, median="gated"):
    torch.manual_seed(seed)
    net = UDespeckleNet((4, 6, 8), median=median)
    for m in net.modules():  # batch-norm statistics and heads that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.nn.init.normal_(net.last.weight, std=0.3)
    if net.gate is not None:
        torch.nn.init.normal_(net.gate.weight, std=0.5)
    return net.eval()


def test_a_new_network_is_the_identity_and_the_head_is_the_papers():
    x = torch.rand(2, 1, 30, 42)  # sides that are not multiples of the stride
    fresh = UDespeckleNet((4, 6, 8), median=False).eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), x)
        net = _unet(median=False)
        out = net(x)
        assert out.shape == x.shape
        assert torch.allclose(out, x * net.inverse_speckle(x))  # the multiplicative residual connection
        inv = net.inverse_speckle(x)
        assert float(inv.min()) > 0 and float(inv.max()) < 2 and not torch.allclose(inv, torch.ones_like(inv))
    with pytest.raises(ValueError):
        UDespeckleNet((4, 6, 8), median="sometimes")
    with pytest.raises(ValueError):
        UDespeckleNet((4, 0, 8))


def test_receptive_radius_bounds_what_one_pixel_changes():
    net = _unet(median=True)
    assert net.stride == 4 and net.receptive_radius % 4 == 0
    x = torch.rand(1, 1, 128, 128)
    y = x.clone()
    y[0, 0, 64, 64] += 1.0
    with torch.no_grad():
        diff = (net(y) - net(x)).abs()[0, 0]
    rows, cols = np.nonzero(diff.numpy() > 0)
    reach = max(np.abs(rows - 64).max(), np.abs(cols - 64).max())
    assert reach <= net.receptive_radius
    assert reach > DespeckleNet().receptive_radius  # it sees further than the paper's network


def test_standalone_despeckling_tiles_exactly(tmp_path):
    net = _unet()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:203, :262]
    img = (1000 * (0.5 + 0.4 * np.sin(yy / 9.0) * np.cos(xx / 13.0)) * rng.normal(1, 0.2, yy.shape)).astype(np.float32)
    whole = despeckle_array(net, img)
    _, levels = collect(despeckle_slide(net, img, tmp_path / "d.zarr", tile=96))
    tiled = np.asarray(levels[0])[0]
    assert tiled.shape == img.shape
    assert np.abs(tiled - whole).max() <= 1e-5 * np.abs(whole).max()
    # a tile too small for the receptive field on both sides grows to four margins, and still tiles exactly
    model = ScaledDespeckler(net, (0.0, 1000.0))
    assert despeckle_tile_config(model, tile=48).tile == 4 * net.receptive_radius == 128
    _, levels = collect(despeckle_slide(net, img, tmp_path / "small.zarr", tile=48))
    assert np.abs(np.asarray(levels[0])[0] - whole).max() <= 1e-5 * np.abs(whole).max()


def test_pipeline_tiles_exactly_with_a_unet_despeckler(tmp_path):
    rng = np.random.default_rng(1)
    shape = (230, 250)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    fcm = (rng.uniform(0.2, 1.0, shape) * (rng.random(shape) < 0.2) * 4000 + 100).astype(np.uint16)
    rcm = ((0.5 + 0.4 * np.sin(xx / 7.0)) * 3000 * rng.normal(1, 0.2, shape).clip(0.2) + 200).astype(np.uint16)
    torch.manual_seed(0)
    net = StainingNet(despeckler=_unet(), generator=ResnetGenerator(ngf=4, n_blocks=1)).eval()
    stride, radius = geometry(net)
    assert stride == 4 and radius == net.despeckler.receptive_radius + net.generator.receptive_radius
    whole = stain_array(net, fcm, rcm)
    for two_pass in (True, False):
        _, levels = collect(stain_slide(net, da.from_array(fcm, chunks=64), da.from_array(rcm, chunks=64),
                                        tmp_path / f"out{two_pass}.zarr", tile=128, two_pass=two_pass))
        tiled = np.asarray(levels[0]).transpose(1, 2, 0).astype(np.float32) / 255
        assert np.abs(tiled - whole).max() <= 0.6 / 255 + 1e-6  # uint8 rounding only: no seams


def test_train_despeckle_body_unet(tmp_path, monkeypatch, capsys):
    from skimage import io

    from napari_medseg import cli
    from napari_medseg.core.registry import Registry
    from napari_medseg.methods.staining import hne

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    torch.set_num_threads(2)
    (tmp_path / "imgs").mkdir()
    io.imsave(tmp_path / "imgs" / "a.png", hne.sample_he()[:256, :256], check_contrast=False)
    common = ["--images", str(tmp_path / "imgs"), "--steps", "2", "--patch", "32", "--batch-size", "2"]
    assert cli.main(["train", "despeckle", "--body", "unet", *common]) == 0
    entry = Registry().get("despeckle")
    assert entry.meta["arch"]["name"] == "combalia2019.UDespeckleNet"
    model, _ = entry.load()
    assert isinstance(model, UDespeckleNet) and model.gate is not None  # the real recipe's gated median
    # one clear error: a U-shaped body is trained from scratch, not distilled or resumed
    assert cli.main(["train", "despeckle", "--body", "unet", "--distill", *common]) == 2
    assert "--body unet" in capsys.readouterr().err
