"""Bundled H&E, the confocal-like pairs derived from it, and the staining metrics."""

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.staining import confocal, hne
from napari_medseg.methods.staining.gareau import gareau_stain
from napari_medseg.methods.staining.metrics import color_distance, ssim_rgb


@pytest.fixture(scope="module")
def he():
    return hne.sample_he()


def test_bundled_split_keeps_held_out_rows_apart():
    s = hne.split()
    assert s.train[0].shape[0] == hne.CMU_VAL_ROWS and s.val[0].shape[0] == hne.CMU_TRAIN_ROWS - hne.CMU_VAL_ROWS
    assert hne.CMU_HELD_OUT_ROWS > hne.CMU_TRAIN_ROWS  # a gap between validation and held-out rows
    assert hne.SAMPLE_WINDOW[0].start >= hne.CMU_HELD_OUT_ROWS  # the sample is held out too
    assert len(s.held_out) == 2 and all(im.dtype == np.uint8 and im.shape[-1] == 3 for im in s.held_out)
    assert hne.tissue_fraction(s.held_out[0]) > 0.3  # real tissue, not glass


def test_missing_package_and_unreadable_files_get_one_message(tmp_path):
    with pytest.raises(InputError, match="pip install --no-deps"):
        hne.bundled_file("no-such-package-medseg", "x.svs")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match="Could not read broken.png"):
        hne.read_rgb(bad)


def test_tissue_crops_prefer_tissue(he):
    crops = hne.tissue_crops([he], 128, 6, rng=0)
    assert all(c.shape == (128, 128, 3) for c in crops)
    assert min(hne.tissue_fraction(c) for c in crops) >= 0.5
    with pytest.raises(InputError, match="No image is 4096 px"):
        hne.tissue_crops([he], 4096, 1, rng=0)


def test_confocal_pair_follows_the_stains(he):
    p = confocal.confocal_pair(he, seed=3)
    assert p.fcm.dtype == np.uint16 and p.fcm.shape == he.shape[:2] == p.rcm.shape
    h, e = confocal.stain_densities(he)
    fcm = p.fcm / 65535.0
    # FCM is the hematoxylin (nuclei) channel, RCM the eosin one with speckle
    assert np.corrcoef(fcm.ravel(), h.ravel())[0, 1] > 0.95
    assert np.corrcoef(fcm.ravel(), e.ravel())[0, 1] < np.corrcoef(p.rcm.ravel(), e.ravel())[0, 1]
    ratio = (p.rcm / 65535.0)[p.rcm_clean > 0.3] / p.rcm_clean[p.rcm_clean > 0.3]
    assert 0.97 < ratio.mean() < 1.03 and 0.15 < ratio.std() < 0.25  # multiplicative, std 0.2
    again = confocal.confocal_pair(he, seed=3)
    assert np.array_equal(again.rcm, p.rcm)  # seeded
    assert not np.array_equal(confocal.confocal_pair(he, seed=4).rcm, p.rcm)
    f32 = confocal.confocal_pair(he, seed=3, dtype=np.float32)
    assert f32.fcm.dtype == np.float32 and f32.fcm.max() <= 1.0


def test_color_distance_and_ssim_rank_stainings(he):
    p = confocal.confocal_pair(he[:512, :512], seed=0)
    ref = he[:512, :512]
    gareau = gareau_stain(p.fcm, p.rcm)
    assert color_distance(ref, ref) < 0.5
    assert color_distance(gareau, ref) > 5 * color_distance(ref[::-1], ref) + 1  # palette, not layout
    assert ssim_rgb(ref, ref) == pytest.approx(1.0)
    assert ssim_rgb(gareau, ref) > ssim_rgb(np.random.default_rng(0).random(ref.shape), ref)
    with pytest.raises(InputError, match="differ in shape"):
        ssim_rgb(ref[:10], ref)
