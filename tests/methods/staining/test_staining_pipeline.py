"""The whole-slide staining pipeline: one module, tiled without seams, any dtype, one error per bad input."""

import dask.array as da
import numpy as np
import pytest
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.core.tiling import open_pyramid_output
from napari_medseg.core.jobs import collect
from napari_medseg.methods.staining.cyclegan import ResnetGenerator
from napari_medseg.methods.staining.despeckle import DespeckleNet
from napari_medseg.methods.staining.gareau import gareau_stain, intensity_range
from napari_medseg.methods.staining.pipeline import StainingNet, geometry, prepare, stain_array, stain_slide


def _pair(shape=(300, 260), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    tissue = ((yy - shape[0] / 2) ** 2 / 1.3 + (xx - shape[1] / 2) ** 2) < (0.4 * min(shape)) ** 2
    fcm = (tissue * rng.uniform(0.2, 1.0, shape) * (rng.random(shape) < 0.2) * 4000 + 100).astype(np.uint16)
    rcm = (tissue * (0.5 + 0.4 * np.sin(xx / 7.0)) * 3000 * rng.normal(1, 0.2, shape).clip(0.2) + 200).astype(np.uint16)
    return fcm, rcm


def _net(seed=0):
    torch.manual_seed(seed)
    net = StainingNet(despeckler=DespeckleNet(layers=3, filters=8), generator=ResnetGenerator(ngf=4, n_blocks=1))
    # batch-norm statistics that are not the identity, so tiling errors would show
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_gareau_only_net_matches_the_numpy_stain():
    fcm, rcm = _pair()
    out = stain_array(StainingNet(), fcm, rcm)
    ref = gareau_stain(fcm, rcm, fcm_range=intensity_range(fcm), rcm_range=intensity_range(rcm))
    assert out.shape == fcm.shape + (3,) and np.abs(out - ref).max() < 1e-5


@pytest.mark.parametrize("two_pass", [False, True])
def test_tiled_whole_slide_equals_whole_image(tmp_path, two_pass):
    """One pass, or the default two (the despeckler over the whole RCM with its own small
    margin, then Gareau + CycleGAN): both equal the whole image in one go."""
    fcm, rcm = _pair()
    net = _net()
    stride, radius = geometry(net)
    assert stride == 4 and radius == 9 - 4 + net.generator.receptive_radius  # 3-layer despeckler: radius 5
    whole = stain_array(net, fcm, rcm)
    progress, levels = collect(stain_slide(net, da.from_array(fcm, chunks=64), da.from_array(rcm, chunks=64),
                                           tmp_path / "out.zarr", tile=128, two_pass=None if two_pass else False))
    assert len(progress) > 4 and progress[-1].fraction == 1.0  # several tiles, reported
    passes = {p.message.split(":")[0] for p in progress}
    if two_pass:
        assert passes == {"despeckling", "staining"}
    else:
        assert not passes & {"despeckling", "staining"}
    assert all(a.step <= b.step for a, b in zip(progress, progress[1:]))  # one bar over both passes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]  # the scratch RCM is gone
    tiled = np.asarray(levels[0]).transpose(1, 2, 0)
    assert tiled.dtype == np.uint8 and tiled.shape == fcm.shape + (3,)
    # uint8 rounding is the only difference: no seams
    assert np.abs(tiled.astype(np.float32) / 255 - whole).max() <= 0.6 / 255 + 1e-6
    assert len(open_pyramid_output(tmp_path / "out.zarr")) == len(levels)


def test_sixteen_bit_and_float_inputs_at_any_range_stain_alike():
    fcm, rcm = _pair()
    net = _net(1)
    base = stain_array(net, fcm, rcm)
    scaled = stain_array(net, fcm.astype(np.float32) * 0.001 - 3.0, rcm.astype(np.float64) * 0.5 + 7.0)
    assert np.abs(base - scaled).max() < 1e-3
    as8 = stain_array(net, (fcm // 32).astype(np.uint8), (rcm // 32).astype(np.uint8))
    assert np.abs(base - as8).mean() < 0.02  # quantised to 8 bits: near, not equal


def test_two_passes_need_a_despeckler_a_cyclegan_and_slide_normalisation(tmp_path):
    fcm, rcm = _pair((80, 90))
    for net, normalisation in ((_net(), "tile"), (StainingNet(despeckler=_net().despeckler), "slide")):
        with pytest.raises(InputError, match="Two passes need"):
            collect(stain_slide(net, fcm, rcm, tmp_path / "x.zarr", tile=64, normalisation=normalisation,
                                two_pass=True))
    assert not (tmp_path / "x.zarr").exists()


def test_per_tile_normalisation_is_offered(tmp_path):
    fcm, rcm = _pair()
    drift = np.linspace(1.0, 3.0, fcm.shape[1])[None]  # illumination drifting across the slide
    fcm, rcm = (fcm * drift).astype(np.uint16), (rcm * drift).astype(np.uint16)
    _, levels = collect(stain_slide(StainingNet(), fcm, rcm, tmp_path / "tile.zarr", tile=64,
                                    normalisation="tile"))
    _, slide_levels = collect(stain_slide(StainingNet(), fcm, rcm, tmp_path / "slide.zarr", tile=64))
    a, b = (np.asarray(l[0]).astype(np.float32) for l in (levels, slide_levels))
    assert a.shape == b.shape and np.abs(a - b).mean() > 1.0  # a different stain, not the same one


@pytest.mark.parametrize("fcm,rcm,match", [
    (np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40), np.uint8), "RGB"),
    (np.ones((40, 40)), np.ones((41, 40)), "differ in shape"),
    (np.full((40, 40), 7, np.uint16), _pair((40, 40))[1], "FCM image: .*constant"),
    (_pair((40, 40))[0], np.where(np.eye(40) > 0, np.nan, 1.0), "RCM image: .*NaN"),
    (np.ones((40, 40), bool), np.ones((40, 40), bool), "dtype bool"),
])
def test_bad_pairs_get_one_message_and_nothing_is_written(tmp_path, fcm, rcm, match):
    with pytest.raises(InputError, match=match):
        prepare(fcm, rcm)
    out = tmp_path / "never.zarr"
    with pytest.raises(InputError, match=match):
        collect(stain_slide(StainingNet(), fcm, rcm, out))
    assert not out.exists()
    with pytest.raises(InputError, match="Normalisation"):
        prepare(*_pair((40, 40)), normalisation="per-pixel")
