"""Traces start along the fibre, not backwards; ends stop them (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.methods.tracking.heading import choose_heading, fibre_width, heading_from_point
from napari_medseg.methods.tracking.metrics import trace_metrics
from napari_medseg.methods.tracking.synthetic import generate
from napari_medseg.methods.tracking.track import TrackConfig, track


@pytest.fixture(scope="module")
def policy():
    from napari_medseg.methods.tracking.model import load_tracker

    return load_tracker()[0]


def _along(trace, line) -> float:
    """How far (px) the first 8 trace points got along the fibre from its start."""
    d = np.linalg.norm(line[None] - trace.points[:8, None], axis=2)
    return float(np.argmin(d, axis=1).max())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_auto_heading_at_a_fibre_end_points_along_the_fibre(seed):
    r = generate("SI", seed=seed)
    line = r.centreline
    v, why, width = choose_heading(r.image, line[0])
    along = line[min(6, len(line) - 1)] - line[0]
    assert v @ along / np.linalg.norm(along) > 0.7 and "brighter" in why
    assert 1.0 <= width <= 6.0


def test_width_estimate_follows_the_fibre_width():
    thin, wide = generate("SI", seed=4), generate("SI", seed=4, axon_sigma=2.5)
    mid = len(thin.centreline) // 2
    v = heading_from_point(thin.centreline[mid], thin.centreline[mid + 3])
    assert fibre_width(wide.clean, wide.centreline[mid], v) > 1.8 * fibre_width(thin.clean, thin.centreline[mid], v)


@pytest.mark.parametrize("mode", ["auto", "given", "towards end"])
def test_a_trace_started_at_a_fibre_end_walks_along_it(policy, mode):
    r = generate("SI", seed=7)
    line = r.centreline
    directions = None
    ends = None
    if mode == "given":
        directions = [heading_from_point(line[0], line[5])]
    if mode == "towards end":
        ends = line[-1:][None][0]
    t = track(r.image, line[:1], ends, policy=policy, config=TrackConfig(check_starts=False),
              directions=directions)[0]
    assert _along(t, line) >= 8  # moved along the fibre from the first steps on
    m = trace_metrics(t.points, line)
    assert m["coverage_pct"] > 60  # (the shipped agent leaves this fibre at a bend 3/4 along)
    assert t.meta["heading_chosen"] in ("given", "along the ridge, where it continues brighter",
                                        "along the ridge, towards the end point")


def test_a_given_end_stops_the_trace_there_without_overshoot(policy):
    r = generate("SI", seed=11)
    line = r.centreline
    stop_at = line[len(line) // 2]  # an end point half way: the trace must stop there
    t = track(r.image, line[:1], stop_at[None], policy=policy, config=TrackConfig(check_starts=False))[0]
    assert t.meta["reached_end"] and t.stop_reason == "end reached"
    last = t.points[-1]
    assert np.linalg.norm(last - stop_at) <= 3.0 + 4.0 * np.sqrt(2)  # at most one step past
    s_end = np.argmin(np.linalg.norm(line - stop_at, axis=1))
    s_last = np.argmin(np.linalg.norm(line - last, axis=1))
    assert s_last <= s_end + 6  # it did not run on along the fibre


def test_a_direction_point_on_the_start_is_refused():
    from napari_medseg.core.errors import InputError

    with pytest.raises(InputError, match="start point itself"):
        heading_from_point([5.0, 5.0], [5.0, 5.0])
