"""The normalization generator's up-sampling (issue 20): a stride-2 transposed convolution
prints a 2-px checkerboard; the resize-convolution generator does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.methods.site_normalization.delisle_eval import checkerboard_ratio, nyquist_fraction
from napari_medseg.methods.site_normalization.networks import NormalizationGenerator


def _generator(upsample: str) -> NormalizationGenerator:
    torch.manual_seed(0)
    return NormalizationGenerator(2, 1, (8, 16), upsample=upsample).eval()


def test_a_flat_image_stays_flat_through_the_resize_generator_but_not_the_transposed_one():
    flat = torch.ones(1, 1, 64, 64)
    with torch.no_grad():
        resized = _generator("resize")(flat)[0, 0, 8:-8, 8:-8].numpy()
        transposed = _generator("transposed")(flat)[0, 0, 8:-8, 8:-8].numpy()
    assert resized.std() < 1e-5 * max(1.0, abs(float(resized.mean())))
    assert transposed.std() > 1e-2  # the uneven overlap of the transposed convolution
    assert nyquist_fraction(transposed) > 0.1


def test_the_checkerboard_ratio_tells_the_two_apart_on_a_smooth_image():
    from scipy.ndimage import gaussian_filter

    x = gaussian_filter(np.random.default_rng(0).normal(size=(64, 64)), 3).astype(np.float32)
    with torch.no_grad():
        out = {u: _generator(u)(torch.from_numpy(x)[None, None])[0, 0].numpy() for u in ("resize", "transposed")}
    assert checkerboard_ratio([x], [x]) == pytest.approx(1.0)
    assert checkerboard_ratio([out["transposed"]], [x]) > 100 * checkerboard_ratio([out["resize"]], [x])


def test_old_checkpoints_rebuild_with_transposed_convolutions_and_new_ones_record_resize():
    assert "upsample" not in _generator("transposed").arch()["kwargs"]
    rebuilt = NormalizationGenerator(**_generator("resize").arch()["kwargs"])
    assert rebuilt.arch()["kwargs"]["upsample"] == "resize"
    assert rebuilt.state_dict().keys() == _generator("resize").state_dict().keys()
    with pytest.raises(InputError, match="upsample"):
        NormalizationGenerator(2, 1, (8, 16), upsample="bilinear-ish")
