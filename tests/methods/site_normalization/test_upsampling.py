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


def test_the_full_resolution_generator_learns_the_identity_warm_up_that_the_resize_one_cannot():
    """Issue 20: MONAI's UNet down-samples in its first layer, so the resize generator rebuilds
    every pixel from half-resolution features and loses the input's finest detail; the
    "linear" generator (BasicUNet) keeps a full-resolution level and learns the identity."""
    from scipy.ndimage import gaussian_filter

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def batch(n=8):
        x = [gaussian_filter(rng.normal(size=(32, 32)), 2) * 3 + 0.3 * rng.normal(size=(32, 32)) for _ in range(n)]
        return torch.from_numpy(np.stack(x).astype(np.float32))[:, None]

    test = batch(4)
    err, kept = {}, {}
    for upsample in ("linear", "resize"):
        g = _generator(upsample).train()
        opt = torch.optim.Adam(g.parameters(), 2e-3)
        for _ in range(150):
            x = batch()
            loss = ((g(x) - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = g.eval()(test)
        err[upsample] = float(((out - test) ** 2).mean() / (test ** 2).mean())
        kept[upsample] = checkerboard_ratio(list(out[:, 0].numpy()), list(test[:, 0].numpy()))
    assert err["linear"] < 0.5 * err["resize"]
    assert 0.5 < kept["linear"] < 1.2  # the input's 2-px detail kept, no pattern added
    assert kept["resize"] < 0.5  # the half-resolution generator smooths it away


def test_linear_generators_record_their_upsampling_and_rebuild():
    g = _generator("linear")
    assert g.arch()["kwargs"]["upsample"] == "linear" and g.total_stride == 2
    rebuilt = NormalizationGenerator(**g.arch()["kwargs"])
    assert rebuilt.state_dict().keys() == g.state_dict().keys()
    assert tuple(rebuilt(torch.zeros(1, 1, 37, 45)).shape) == (1, 1, 37, 45)  # any size, no padding needed
