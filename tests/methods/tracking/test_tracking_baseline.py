"""The classical minimal-path baseline tracer (ridge cost + geodesic shortest path)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.tracking import generate, trace_metrics
from napari_medseg.methods.tracking.baseline import minimal_path, ridge_cost, smooth_path, track_minimal_path

SEEDS = range(8)


def _measure(seeds, invert=False, **kw):
    cov, err = [], []
    for s in seeds:
        r = generate("SI", seed=s)
        image = 1.0 - r.image if invert else r.image
        path = minimal_path(image, r.start, r.end, dark_structures=invert, **kw)
        np.testing.assert_allclose(path[0], r.start)
        np.testing.assert_allclose(path[-1], r.end)
        m = trace_metrics(path, r.centreline)
        cov.append(m["coverage_pct"])
        err.append(m["error_px"])
    return np.array(cov), np.array(err)


def test_minimal_path_follows_the_synthetic_axon():
    # measured on seeds 0..19: 100 % coverage on every image, mean error 0.16 px
    cov, err = _measure(SEEDS)
    assert cov.mean() >= 95.0 and cov.min() >= 85.0, cov
    assert err.mean() <= 0.5 and err.max() <= 1.0, err


def test_dark_structures_on_the_inverted_image():
    cov, err = _measure(SEEDS[:4])
    cov_dark, err_dark = _measure(SEEDS[:4], invert=True)
    assert cov_dark.mean() >= 95.0 and cov_dark.mean() >= cov.mean() - 2.0
    assert err_dark.mean() <= 0.5
    # looking for bright ridges on the inverted image does not find the axon
    r = generate("SI", seed=0)
    wrong = minimal_path(1.0 - r.image, r.start, r.end, dark_structures=False)
    assert trace_metrics(wrong, r.centreline)["error_px"] > err_dark.mean() + 0.5


def test_smoothing_lowers_the_error_without_losing_coverage():
    cov1, err1 = _measure(SEEDS[:4], smooth=1)
    cov5, err5 = _measure(SEEDS[:4], smooth=5)
    assert cov5.mean() >= cov1.mean() - 1.0
    assert err5.mean() < err1.mean() - 0.03


def test_cost_is_low_on_the_axon_and_high_on_the_background():
    r = generate("SI", seed=2)
    c = ridge_cost(r.image)
    assert c.shape == r.image.shape and np.all(np.isfinite(c)) and np.all(c > 0)
    on = np.round(r.centreline).astype(int)
    off = np.ones(c.shape, bool)
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            off[np.clip(on[:, 0] + dy, 0, 127), np.clip(on[:, 1] + dx, 0, 127)] = False
    assert np.median(c[on[:, 0], on[:, 1]]) * 5 < np.median(c[off])


def test_smooth_path_keeps_the_ends():
    p = np.array([[0, 0], [1, 1], [1, 2], [2, 3], [3, 3], [3, 5.0]])
    q = smooth_path(p, 5)
    np.testing.assert_array_equal(q[[0, -1]], p[[0, -1]])
    np.testing.assert_allclose(q[1], p[:3].mean(0))
    np.testing.assert_allclose(q[2], p[:5].mean(0))
    np.testing.assert_array_equal(smooth_path(p, 1), p)


def test_many_pairs_share_one_cost_map():
    r = generate("SI", seed=1)
    mid = r.centreline[len(r.centreline) // 2]
    paths = track_minimal_path(r.image, [r.start, mid], [mid, r.end])
    assert len(paths) == 2
    np.testing.assert_allclose(paths[0], minimal_path(r.image, r.start, mid))
    cost = ridge_cost(r.image)
    np.testing.assert_allclose(paths[1], minimal_path(None, mid, r.end, cost=cost))
    joined = np.vstack(paths)
    assert trace_metrics(joined, r.centreline)["coverage_pct"] >= 95.0


def test_start_equal_to_end_gives_one_point():
    r = generate("SI", seed=1)
    p = minimal_path(r.image, (10.2, 20.1), (10.2, 20.1))
    np.testing.assert_allclose(p, [[10.2, 20.1]])


def test_bad_inputs_raise_input_error():
    r = generate("SI", seed=0)
    with pytest.raises(InputError, match=r"start.*outside the image of shape \(128, 128\)"):
        minimal_path(r.image, (130.0, 5.0), r.end)
    with pytest.raises(InputError, match=r"end.*x=-3"):
        minimal_path(r.image, r.start, (5.0, -3.0))
    bad = r.image.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        minimal_path(bad, r.start, r.end)
    with pytest.raises(InputError, match="2D"):
        minimal_path(np.zeros((4, 4, 3)), (1, 1), (2, 2))
    with pytest.raises(InputError, match="end #1"):
        track_minimal_path(r.image, [r.start, r.start], [r.end, (-9.0, 0.0)])
    with pytest.raises(InputError, match="pair up"):
        track_minimal_path(r.image, [r.start], [r.end, r.end])
    with pytest.raises(InputError, match="finite"):
        minimal_path(r.image, (np.nan, 1.0), r.end)
