"""Any image a user has becomes the network's 8-bit RGB view, with a note (issue 17, item 1)."""

import dask.array as da
import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.box_iterative.inputs import as_rgb8


def _nuclei(dtype=np.uint16, bright_on_dark=True):
    """Fluorescence-like: bright discs on a dark, noisy background, 16-bit."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    img = 300 + 40 * rng.standard_normal((128, 128))
    for cy, cx in ((30, 30), (80, 90), (100, 30)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 150] += 3000
    if not bright_on_dark:
        img = img.max() - img + 100
    return img.astype(dtype)


def test_rgb_uint8_passes_untouched():
    rgb = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out, note = as_rgb8(rgb)
    assert out is rgb and note is None
    out, note = as_rgb8(np.concatenate([rgb, rgb[..., :1]], -1))
    assert out.shape == (64, 64, 3) and "alpha" in note


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32])
def test_grey_fluorescence_is_scaled_inverted_and_repeated(dtype):
    img = _nuclei(dtype)
    out, note = as_rgb8(img, "slide")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 2])
    assert out[30, 30, 0] < 60 and out[5, 60, 0] > 180  # objects dark, background bright after inversion
    assert "inverted" in note and "percentiles" in note and "repeated" in note
    kept, note = as_rgb8(img, "slide", polarity="keep")
    assert kept[30, 30, 0] > 200 and "inverted" not in note


def test_dark_on_bright_grey_is_not_inverted_and_lazy_inputs_stay_lazy():
    img = _nuclei(bright_on_dark=False)
    out, note = as_rgb8(img)
    assert out[30, 30, 0] < 60 and "inverted" not in note
    lazy = da.from_array(img, chunks=(50, 50))
    out2, _ = as_rgb8(lazy)
    assert isinstance(out2, da.Array) and np.array_equal(np.asarray(out2), out)


def test_bad_images_get_one_clear_error():
    with pytest.raises(InputError, match="constant"):
        as_rgb8(np.full((64, 64), 7, np.uint16))
    with pytest.raises(InputError, match="32x32"):
        as_rgb8(np.zeros((16, 64), np.uint8))
    with pytest.raises(InputError, match="not a stack"):
        as_rgb8(np.zeros((5, 64, 64), np.uint8))
    with pytest.raises(InputError, match="polarity"):
        as_rgb8(np.zeros((64, 64), np.uint8), polarity="flip")
