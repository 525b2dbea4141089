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
    assert v @ along / np.linalg.norm(along) > 0.7 and "continues" in why
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
    assert t.meta["heading_chosen"] in ("given", "along the ridge, the way it continues",
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


# ---------------------------------------------------------------- drawn fibres
def _dense(poly, step: float = 1.0) -> np.ndarray:
    poly = np.asarray(poly, float)
    s = np.r_[0, np.cumsum(np.linalg.norm(np.diff(poly, axis=0), axis=1))]
    t = np.arange(0, s[-1] + 1e-9, step)
    return np.c_[np.interp(t, s, poly[:, 0]), np.interp(t, s, poly[:, 1])]


def _render(lines, sigmas, amps, shape=(128, 128), seed=0) -> np.ndarray:
    """Bright Gaussian tubes along ``lines`` on a noisy background, prepared as for tracking."""
    from scipy.spatial import cKDTree

    from napari_medseg.methods.tracking.prepare import prepare_image

    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 0.1)
    for line, sigma, amp in zip(lines, sigmas, amps):
        d = cKDTree(_dense(line, 0.5)).query(np.c_[yy.ravel(), xx.ravel()])[0].reshape(shape)
        img += amp * np.exp(-(d**2) / (2 * sigma**2))
    img += 0.05 * np.random.default_rng(seed).normal(size=shape)
    return prepare_image(img.astype(np.float32))


STRAIGHT = _dense([[100, 20], [30, 110]])
_TH = np.linspace(np.pi * 0.9, np.pi * 0.1, 120)
CURVED = _dense(np.c_[95 - 55 * np.sin(_TH), 64 + 50 * np.cos(_TH)])


def _index_along(line, points) -> np.ndarray:
    return np.argmin(np.linalg.norm(line[None] - np.asarray(points)[:, None], axis=2), axis=1)


@pytest.mark.parametrize("shape", ["straight", "curved"])
@pytest.mark.parametrize("mode", ["auto", "given", "end"])
def test_a_trace_from_one_end_of_a_drawn_fibre_walks_to_the_far_end(policy, shape, mode):
    line = STRAIGHT if shape == "straight" else CURVED
    img = _render([line], [1.2], [1.0])
    directions = [heading_from_point(line[0], line[5])] if mode == "given" else None
    ends = line[-1:] if mode == "end" else None
    (t,) = track(img, line[:1], ends, policy=policy, config=TrackConfig(check_starts=False), directions=directions)
    first = _index_along(line, t.points[:8])
    assert np.all(np.diff(first) >= 0) and first[-1] >= 20  # every early step moves towards the far end
    assert trace_metrics(t.points, line)["coverage_pct"] >= 90
    assert float(np.dot(t.meta["heading"], heading_from_point(line[0], line[5]))) > 0.9
    if mode == "end":
        assert t.meta["reached_end"] and t.stop_reason == "end reached"
        assert t.meta["end_distance_px"] <= 3.0


@pytest.mark.parametrize("towards", [0, -1])
def test_a_given_direction_decides_which_way_a_mid_fibre_start_goes(policy, towards):
    img = _render([STRAIGHT], [1.2], [1.0])
    mid = len(STRAIGHT) // 2
    (t,) = track(img, STRAIGHT[mid : mid + 1], policy=policy, config=TrackConfig(check_starts=False),
                 directions=[heading_from_point(STRAIGHT[mid], STRAIGHT[towards])])
    first = _index_along(STRAIGHT, t.points[:8])
    progress = (first - mid) * (1 if towards == -1 else -1)
    assert np.all(np.diff(progress) >= 0) and progress[-1] >= 20  # the given way, never back
    assert t.meta["heading_chosen"] == "given"


def test_auto_heading_at_a_junction_leaves_along_the_branch_not_into_the_brighter_parent():
    """A branch clicked next to where it leaves a wider, brighter vessel: the parent lies
    behind the start and is brighter, but runs across; the branch continues ahead."""
    parent = np.array([[5.0, 30.0], [123.0, 30.0]])
    branch = _dense([[64, 30], [50, 70], [40, 115]])
    img = _render([parent, branch], [2.0, 1.2], [1.0, 0.7])
    for i in (4, 6, 8):
        v, why, _ = choose_heading(img, branch[i])
        assert v @ heading_from_point(branch[i], branch[i + 5]) > 0.9, i
        assert why == "along the ridge, the way it continues"


def test_an_end_beside_the_path_stops_the_trace_when_it_moves_away():
    """An end 6 px beside the fibre is never within the end radius: the trace stops one
    step after its closest approach ("passed the end"), reached_end False."""
    from tests.methods.tracking.test_tracking_track import steering_policy

    img = np.full((64, 200), 0.1, np.float32)
    (t,) = track(img, [[20.0, 10.0]], [[26.0, 60.0]], policy=steering_policy(),
                 config=TrackConfig(check_starts=False))
    assert t.stop_reason == "passed the end" and not t.meta["reached_end"]
    assert 5.5 <= t.meta["end_distance_px"] <= 6.5
    assert 60.0 <= t.points[-1, 1] <= 60.0 + 4.0  # at most one step past the end
    (far,) = track(img, [[20.0, 10.0]], [[40.0, 60.0]], policy=steering_policy(),
                   config=TrackConfig(check_starts=False))
    assert far.stop_reason == "image edge" and not far.meta["reached_end"]  # 20 px away: not its end


def test_the_greedy_follower_obeys_the_same_end_rule():
    from napari_medseg.methods.tracking.greedy import greedy_follow, ridge_map

    img = _render([STRAIGHT], [1.2], [1.0])
    ridge = ridge_map(img)
    start, head = STRAIGHT[0], heading_from_point(STRAIGHT[0], STRAIGHT[5])
    on = greedy_follow(ridge, start, head, STRAIGHT[60])
    assert on["reached_end"] and np.linalg.norm(on["points"][-1] - STRAIGHT[60]) <= 4.0
    beside = STRAIGHT[60] + 5.0 * np.array([0.79, 0.61])  # 5 px off the fibre, across it
    off = greedy_follow(ridge, start, head, beside)
    assert off["stop"] == "passed the end" and not off["reached_end"]
    assert _index_along(STRAIGHT, off["points"][-1:])[0] <= 62


def test_an_end_close_behind_the_start_does_not_stop_the_trace_before_it_comes_back():
    """The two ends of a U-shaped fibre can lie close together: leaving the start away
    from the end is not "passing" it."""
    from tests.methods.tracking.test_tracking_track import steering_policy

    img = np.full((64, 200), 0.1, np.float32)
    (t,) = track(img, [[20.0, 20.0]], [[20.0, 12.0]], policy=steering_policy(),
                 config=TrackConfig(check_starts=False), directions=[[0.0, 1.0]])
    assert t.stop_reason == "image edge" and not t.meta["reached_end"]
    assert t.meta["end_distance_px"] == pytest.approx(8.0, abs=1e-3)


@pytest.mark.parametrize("angle", [30, 60])
def test_an_end_beyond_a_junction_is_reached_by_tracing_from_both_ends(policy, angle):
    """The fibre runs along a wide vessel and turns off into a thinner branch, where its
    end is. From the start alone the agent stays on the wide vessel and never reaches the
    end; traced from both ends, the trace from the end follows the branch back, meets the
    first one, and the joined trace runs start -> junction -> end."""
    from napari_medseg.methods.tracking.metrics import trace_metrics

    parent = _dense([[64, 4], [64, 124]])
    a = np.deg2rad(angle)
    branch = _dense([[64, 64], np.minimum([64 + 60 * np.sin(a), 64 + 60 * np.cos(a)], 122)])
    img = _render([parent, branch], [2.0, 1.2], [1.0, 0.7])
    ref = np.concatenate([parent[parent[:, 1] < 64], branch])
    start, end = ref[4:5], branch[-1:]
    (one,) = track(img, start, end, policy=policy, config=TrackConfig(check_starts=False, both_ways=False),
                   directions=[[0.0, 1.0]])
    assert not one.meta["reached_end"] and not one.meta["joined"]
    (t,) = track(img, start, end, policy=policy, config=TrackConfig(check_starts=False), directions=[[0.0, 1.0]])
    assert t.meta["reached_end"] and t.meta["joined"] and t.stop_reason == "end reached"
    assert np.linalg.norm(t.points[0] - start[0]) < 1e-6 and np.linalg.norm(t.points[-1] - end[0]) < 1e-3
    assert trace_metrics(t.points, ref[4:])["coverage_pct"] >= 90
    assert len(t.entropy) == len(t.points) - 1 and np.isfinite(t.entropy).all()
    assert np.max(np.linalg.norm(np.diff(t.points, axis=0), axis=1)) <= 3.0 + 4 * np.sqrt(2)  # no jump at the join


def test_two_traces_meet_only_where_they_run_opposite_ways():
    from napari_medseg.methods.tracking.track import traces_meet

    line = _dense([[10, 10], [10, 100]])
    forward, backward = line[:60], line[40:][::-1]
    assert traces_meet(forward, backward)
    assert not traces_meet(forward, line[40:])  # the same way along the fibre: not a meeting
    across = _dense([[0, 50], [60, 50]])
    assert not traces_meet(forward, across) and not traces_meet(forward, across[::-1])  # a crossing
    assert not traces_meet(forward, backward + [5.0, 0.0])  # 5 px beside it


def test_cli_track_with_ends_joins_the_traces_from_both_ends_and_one_way_does_not(tmp_path, capsys):
    import tifffile

    from napari_medseg.cli import main
    from napari_medseg.methods.tracking.swc import read_swc

    parent = _dense([[64, 4], [64, 124]])
    branch = _dense([[64, 64], [116, 94]])
    tif = tmp_path / "junction.tif"
    tifffile.imwrite(tif, _render([parent, branch], [2.0, 1.2], [1.0, 0.7]))
    args = ["track", str(tif), "--starts", "64,8:64,14", "--ends", f"{branch[-1][0]},{branch[-1][1]}"]
    assert main(args + ["--out", str(tmp_path / "both.swc")]) == 0
    assert "reached end (met the trace from its end)" in capsys.readouterr().out
    (both,) = read_swc(tmp_path / "both.swc").traces
    assert np.linalg.norm(both[-1] - branch[-1]) < 0.1
    assert main(args + ["--one-way", "--out", str(tmp_path / "one.swc")]) == 0
    assert "reached end" not in capsys.readouterr().out


def test_from_a_fibre_tip_the_heading_follows_the_fibre_even_away_from_the_other_end():
    """A hooked fibre: from its end it first runs away from the start. Towards-the-start
    would head into background; at a tip (the ridge goes on one way only) the tip rule
    takes the fibre's way. Mid-fibre (it goes on both ways) it heads towards the start."""
    hook = _dense([[64, 10], [64, 100], [52, 112], [40, 100], [40, 70]])
    img = _render([hook], [1.2], [1.0])
    start, end = hook[0], hook[-1]
    v, why, _ = choose_heading(img, end, start, tip_ratio=2.0)
    assert v @ heading_from_point(end, hook[-6]) > 0.9 and why == "along the ridge, the way it continues"
    assert choose_heading(img, end, start)[0] @ np.array([0.0, -1.0]) > 0.9  # without the tip rule: towards the start
    mid = hook[40]
    v, why, _ = choose_heading(img, mid, start, tip_ratio=2.0)
    assert v @ np.array([0.0, -1.0]) > 0.9 and why == "along the ridge, towards the end point"


def test_a_trace_that_reaches_its_end_by_itself_is_kept_whole_not_joined(policy):
    """Both directions run; the one from the end may meet the start's trace early (here it
    cuts across to the start), but the start's own trace reaches the end, so it is kept."""
    from napari_medseg.methods.tracking.metrics import trace_metrics
    from napari_medseg.methods.tracking.synthetic import generate_many

    r = generate_many("SI", 72, seed=90210)[71]  # bench tracking's image 71
    (one,) = track(r.image, r.start[None], r.end[None], policy=policy,
                   config=TrackConfig(check_starts=False, both_ways=False))
    (t,) = track(r.image, r.start[None], r.end[None], policy=policy, config=TrackConfig(check_starts=False))
    assert one.meta["reached_end"] and t.meta["reached_end"] and not t.meta["joined"]
    assert t.meta["met_trace_from_end"]  # the two did meet on the way: the join was there, and not used
    np.testing.assert_allclose(t.points, one.points, atol=1e-4)  # (batched with the other: float rounding)
    assert trace_metrics(t.points, r.centreline)["coverage_pct"] > 95
