"""Issue 5, first parts: the speckle model, the despeckling network and Gareau staining."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core import nets
from napari_medseg.core.errors import InputError
from napari_medseg.methods.staining.despeckle import ARCH_NAME, RECEPTIVE_RADIUS, DespeckleNet, Median3x3
from napari_medseg.methods.staining.gareau import EOSIN, HEMATOXYLIN, gareau_stain, intensity_range, normalise
from napari_medseg.methods.staining.speckle import add_speckle, inverted_luma
from tests.conftest import randomize_batchnorm


def test_speckle_is_multiplicative_with_the_papers_statistics():
    clean = np.full((300, 300), 0.5, np.float32)
    noisy = add_speckle(clean, 0.2, rng=0)
    ratio = noisy / clean
    assert abs(ratio.mean() - 1.0) < 0.01 and abs(ratio.std() - 0.2) < 0.01
    assert np.array_equal(add_speckle(np.zeros((8, 8)), 0.2, rng=1), np.zeros((8, 8)))  # dark stays dark
    with pytest.raises(InputError):
        add_speckle(clean, -1)


def test_inverted_luma_makes_white_background_dark():
    from skimage import data

    rgb = data.immunohistochemistry()  # a bundled stained-tissue image
    y = inverted_luma(rgb)
    assert y.shape == rgb.shape[:2] and 0 <= y.min() and y.max() <= 1
    white = inverted_luma(np.full((4, 4, 3), 255, np.uint8))
    assert np.allclose(white, 0, atol=1e-6)
    with pytest.raises(InputError, match="RGB"):
        inverted_luma(np.zeros((5, 5)))


def test_despeckle_net_is_a_multiplicative_residual_with_median():
    torch.manual_seed(0)
    net = nets.build({"name": ARCH_NAME, "kwargs": {"median": False}}).eval()
    assert isinstance(net, DespeckleNet)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8 and all(c.out_channels == 64 for c in convs[:7]) and convs[-1].out_channels == 1
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 6
    torch.nn.init.zeros_(net.last.weight)
    torch.nn.init.zeros_(net.last.bias)
    y = torch.rand(1, 1, 32, 32)
    assert torch.allclose(net(y), y)  # 1/F estimated as 1: the input passes through
    net.last.bias.data.fill_(10.0)  # tanh -> 1: the output doubles the input
    assert torch.allclose(net(y), 2 * y, atol=1e-5)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0  # an isolated bright pixel
    assert Median3x3()(x).abs().max() == 0


def test_median3x3_is_exactly_the_3x3_median_with_edges_replicated():
    from scipy.ndimage import median_filter

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 37, 41, generator=g)
    x[0, 0, :10, :10] = 0.5  # ties
    x[1, 2] = torch.randint(0, 4, (37, 41), generator=g).float()  # many ties
    expected = median_filter(x.numpy(), size=(1, 1, 3, 3), mode="nearest")
    np.testing.assert_array_equal(Median3x3()(x).numpy(), expected)
    cl = x.contiguous(memory_format=torch.channels_last)  # the layout tiled inference uses
    np.testing.assert_array_equal(Median3x3()(cl).numpy(), expected)


def test_despeckle_net_tiles_exactly_with_its_receptive_radius():
    import zarr

    from napari_medseg.core.jobs import collect
    from napari_medseg.core.tiling import TileConfig, predict_whole, tiled_inference

    torch.manual_seed(1)
    net = randomize_batchnorm(DespeckleNet())
    img = np.random.default_rng(0).random((150, 170)).astype(np.float32)
    whole = predict_whole(net, img, stride=1)
    cfg = TileConfig(tile=64, stride=1, margin=RECEPTIVE_RADIUS, blend=4, output="probabilities")
    out = zarr.create_array(store={}, shape=(1, 150, 170), dtype="float32", chunks=(1, 64, 170))
    collect(tiled_inference(net, img, out, cfg, out_channels=1))
    assert np.abs(np.asarray(out[...]) - whole).max() < 1e-4


def test_gareau_stain_tints_white_with_hematoxylin_and_eosin():
    fcm = np.zeros((4, 4), np.uint16)
    rcm = np.zeros((4, 4), np.uint16)
    fcm[0, 0], rcm[1, 1] = 4000, 4000
    rgb = gareau_stain(fcm, rcm, fcm_range=(0, 4000), rcm_range=(0, 4000))
    assert np.allclose(rgb[2, 2], 1.0)  # neither: white
    assert np.allclose(rgb[0, 0], HEMATOXYLIN) and np.allclose(rgb[1, 1], EOSIN)
    half = gareau_stain(fcm * 0 + 2000, rcm * 0, fcm_range=(0, 4000), rcm_range=(0, 4000))
    assert np.allclose(half[0, 0], 1 - 0.5 * (1 - np.array(HEMATOXYLIN)))  # linear in the channel


def test_normalisation_uses_the_tissue_and_any_dtype():
    rng = np.random.default_rng(0)
    img = rng.uniform(90, 110, (100, 100))  # glass
    img[30:70, 30:70] = rng.uniform(1000, 2000, (40, 40))  # tissue on it
    lo, hi = intensity_range(img)
    assert 98 <= lo <= 102 and 1900 < hi <= 2000  # background level -> white, bright tissue -> full stain
    n = normalise(img)
    assert n.dtype == np.float32 and n.min() == 0 and n.max() == 1


@pytest.mark.parametrize("fcm,rcm,match", [
    (np.zeros((4, 4, 3)), np.zeros((4, 4)), "RGB"),
    (np.zeros((4, 4)), np.zeros((5, 4)), "differ in shape"),
    (np.full((4, 4), 3.0), np.ones((4, 4)), "constant"),
    (np.where(np.eye(4) > 0, np.nan, 1.0), np.ones((4, 4)), "NaN"),
])
def test_bad_pairs_get_one_clear_error(fcm, rcm, match):
    rcm = rcm.copy()
    if rcm.ndim == 2 and rcm.shape == (4, 4):
        rcm[0, 0] = 2.0  # not constant
    with pytest.raises(InputError, match=match):
        gareau_stain(fcm, rcm)


def test_despeckler_training_beats_the_noisy_input_on_held_out_crops():
    from skimage import data

    from napari_medseg.core.jobs import collect
    from napari_medseg.methods.staining.training import train_despeckler

    torch.manual_seed(0)
    torch.set_num_threads(2)
    ihc = data.immunohistochemistry()  # 512x512 stained tissue: left half trains, right half validates
    kept = {}
    net = DespeckleNet(layers=3, filters=16)  # small, so that a test can train it
    _, summary = collect(train_despeckler(net, [ihc[:, :256]], [ihc[:, 256:]], steps=60, batch_size=4, crop=64,
                                          lr=2e-3, keep=lambda s, m, k: kept.update(m)))
    assert kept["psnr"] > kept["psnr_noisy"] + 1.0, kept  # despeckled beats noisy by at least 1 dB
    with pytest.raises(InputError, match="32 px"):
        collect(train_despeckler(net, [ihc[:16, :16]], [ihc], steps=1))
