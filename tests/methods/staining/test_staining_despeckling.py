"""Despeckling on its own (issue 22): the engine, tiled = whole, units kept, bad input,
and ``napari-medseg predict despeckle`` (never replacing a file)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_medseg.cli import main
from napari_medseg.core.errors import InputError
from napari_medseg.core.jobs import collect
from napari_medseg.methods.staining.despeckle import DespeckleNet
from napari_medseg.methods.staining.despeckling import ScaledDespeckler, despeckle_array, despeckle_slide


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    net = DespeckleNet(layers=3, filters=8, **kw)
    for p in net.last.parameters():  # not the identity: tiling has something to get wrong
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


def _speckled(shape=(200, 260), seed=0, scale=1000.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = 0.5 + 0.4 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    return (scale * clean * rng.normal(1, 0.2, shape)).astype(np.float32), clean


@pytest.mark.parametrize("dilations,median", [(None, True), ((1, 2, 4), False), (None, "gated")])
def test_tiled_equals_whole_and_keeps_units(tmp_path, dilations, median):
    net = _net(dilations=dilations, median=median)
    if net.gate is not None:  # a gate that varies across the image
        torch.nn.init.normal_(net.gate.weight, std=0.5)
    img, _ = _speckled()
    whole = despeckle_array(net, img)
    _, levels = collect(despeckle_slide(net, img, tmp_path / "d.zarr", tile=64))
    tiled = np.asarray(levels[0])[0]
    assert tiled.shape == img.shape and tiled.dtype == np.float32
    assert np.abs(tiled - whole).max() <= 1e-5 * np.abs(whole).max()
    # the same image in other units gives the same result in those units
    whole10 = despeckle_array(net, img * 10)
    assert np.allclose(whole10, 10 * whole, rtol=1e-3, atol=1e-2)


def test_gated_median_starts_as_the_paper_network_and_can_open():
    torch.manual_seed(1)
    paper = DespeckleNet(layers=2, filters=4).eval()
    torch.nn.init.normal_(paper.last.weight, std=0.3)
    gated = DespeckleNet(layers=2, filters=4, median="gated").eval()
    missing, unexpected = gated.load_state_dict(paper.state_dict(), strict=False)
    assert set(missing) == {"gate.weight", "gate.bias"} and not unexpected
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        assert (gated(x) - paper(x)).abs().max() < 0.03  # sigmoid(4) of the median, the rest unfiltered
        torch.nn.init.constant_(gated.gate.bias, -30.0)  # a closed gate: no median at all
        paper.median = None
        assert torch.allclose(gated(x), paper(x), atol=1e-6)
    assert gated.receptive_radius == paper.receptive_radius + 1  # the median's pixel, as before
    with pytest.raises(ValueError):
        DespeckleNet(layers=2, filters=4, median="sometimes")


def test_dilations_widen_the_receptive_radius():
    assert DespeckleNet(layers=3, filters=4, dilations=(1, 2, 4)).receptive_radius == 1 + 2 + 4 + 1 + 1
    assert DespeckleNet(layers=3, filters=4, median=False).receptive_radius == 3 + 1
    with pytest.raises(ValueError):
        DespeckleNet(layers=3, filters=4, dilations=(1, 2))
    # a new network starts as the identity (then the median)
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(DespeckleNet(layers=2, filters=4, median=False)(x), x)


@pytest.mark.parametrize("bad,words", [
    (np.zeros((40, 40, 3), np.uint8), "RGB"),
    (np.zeros((4, 40, 40), np.float32), "2D"),
    (np.full((40, 40), 3.0, np.float32), "constant"),
    (np.where(np.eye(40) > 0, np.nan, 1.0).astype(np.float32), "NaN"),
    (np.zeros((5, 40), np.float32), "8 px"),
])
def test_bad_input_one_clear_message(tmp_path, bad, words):
    with pytest.raises(InputError, match=words):
        collect(despeckle_slide(_net(), bad, tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(InputError):
        ScaledDespeckler(_net(), (1.0, 1.0))


def test_predict_despeckle_folder_never_replaces(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    src = tmp_path / "in"
    src.mkdir()
    img, clean = _speckled((150, 170), scale=3000.0)
    tifffile.imwrite(src / "a.tif", img.astype(np.uint16))
    tifffile.imwrite(src / "b.tif", np.zeros((30, 30, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["predict", "despeckle", str(src), "--out", str(out), "--tile", "64"]) == 1  # b failed
    err = capsys.readouterr().err
    assert "b.tif" in err and "RGB" in err
    res = tifffile.imread(out / "a_despeckled.tif")
    assert res.shape == img.shape and res.dtype == np.float32
    # the shipped despeckler cleans it: closer to the clean image than the input (same units)
    ref = clean * 3000.0
    assert np.abs(res - ref).mean() < 0.7 * np.abs(img.astype(np.uint16) - ref).mean()
    stamp = (out / "a_despeckled.tif").stat().st_mtime_ns
    assert main(["predict", "despeckle", str(src / "a.tif"), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err and (out / "a_despeckled.tif").stat().st_mtime_ns == stamp
    assert main(["predict", "despeckle", str(src / "a.tif"), "--out", str(out), "--format", "zarr"]) == 0
    assert (out / "a_despeckled.zarr").is_dir()


def test_real_recipe_data_and_multi_level_validation():
    from napari_medseg.core.jobs import collect as run
    from napari_medseg.methods.staining import augment
    from napari_medseg.methods.staining.hne import sample_he
    from napari_medseg.methods.staining.training import train_despeckler, weighted_mse

    he = sample_he()[:300, :300]
    rng = np.random.default_rng(0)
    pool = augment.pool([he], 6, rng, min_side=48)
    assert len(pool) == 6 and all(p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1 for p in pool)
    assert len({p.shape for p in pool}) > 1  # zoom varies the magnification
    noise = augment.unit_noise((8, 1, 64, 64), rng, correlated_fraction=1.0)
    assert np.allclose(noise.std(axis=(1, 2, 3)), 1.0, atol=1e-3)
    # correlated: neighbours agree, unlike white noise
    assert np.mean(noise[:, :, 1:] * noise[:, :, :-1]) > 0.3
    pred, clean = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    assert float(weighted_mse(pred, torch.cat([clean, 2 * torch.ones_like(clean)], 1))) == 2.0
    best = {}
    torch.manual_seed(0)
    run(train_despeckler(DespeckleNet(layers=2, filters=4, median="gated"), [he], [he], steps=2, batch_size=2,
                         crop=48, std=(0.1, 0.5), augment=True, val_stds=(0.1, 0.5), val_crop=64,
                         keep=lambda s, m, k: best.update(m)))
    assert {"psnr_std0.1", "psnr_std0.5", "psnr_noisy_std0.1", "psnr_noisy_std0.5"} <= set(best)
    assert best["psnr"] == pytest.approx((best["psnr_std0.1"] + best["psnr_std0.5"]) / 2)
    assert best["psnr_noisy_std0.1"] > best["psnr_noisy_std0.5"] + 5  # the levels really differ


def _randomised(net: DespeckleNet) -> DespeckleNet:
    """Batch-norm statistics and PReLU slopes away from their defaults, so a copy that
    mixes up channels cannot match by accident."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            if isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
        torch.nn.init.normal_(net.last.weight, std=0.05, generator=g)
        torch.nn.init.normal_(net.gate.weight, std=0.05, generator=g)
    return net.eval()


def test_narrowed_copy_keeps_the_channels_the_network_uses():
    """A 16-filter network in which only 5 channels per layer carry anything (the rest
    have no batch-norm scale and nothing reads them): its 5-filter copy must keep exactly
    those channels and give the same output; a copy at full width is the network itself."""
    from napari_medseg.methods.staining.despeckle import narrowed_from

    torch.manual_seed(0)
    net = _randomised(DespeckleNet(layers=4, filters=16, median="gated"))
    live = [torch.tensor(sorted(torch.randperm(16)[:5].tolist())) for _ in range(4)]
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.body if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for i, idx in enumerate(live):
            dead = torch.ones(16, dtype=torch.bool)
            dead[idx] = False
            readers = [convs[i + 1]] if i + 1 < len(convs) else [net.last, net.gate]
            for r in readers:
                r.weight[:, dead] = 0  # nothing reads a dead channel
            if i > 0:
                bns[i - 1].weight[dead] = 0
    x = torch.rand(2, 1, 40, 40) * 0.6 + 0.2
    with torch.no_grad():
        ref = net(x)
        narrow = narrowed_from(net, 5).eval()
        assert narrow.last.in_channels == 5 and narrow.gate is not None and narrow.dilations == net.dilations
        assert torch.allclose(narrow(x), ref, atol=1e-5)
        assert torch.equal(narrowed_from(net, 16).eval()(x), ref)
        assert not torch.allclose(narrowed_from(net, 4).eval()(x), ref, atol=1e-3)  # one live channel lost
    with pytest.raises(ValueError, match="between 1 and 16"):
        narrowed_from(net, 17)
