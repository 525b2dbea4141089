"""track(): stopping rules, branches, image preparation and start checks."""

import numpy as np
import pytest
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.methods.tracking.env import EnvConfig, TrackingEnv
from napari_medseg.methods.tracking.policy import BetaPolicy
from napari_medseg.methods.tracking.prepare import check_starts, prepare_image, training_quantiles
from napari_medseg.methods.tracking.synthetic import generate
from napari_medseg.methods.tracking.track import TrackConfig, track, track_iter


def steering_policy(dx_bias: float = 5.0, dy_bias: float = 0.0) -> BetaPolicy:
    """An agent that ignores what it sees: the head's bias alone sets (α, β) per axis.
    dx_bias 5 gives α≈6, β≈1 on x: the Beta mean 0.86 moves +2.85 px per step."""
    p = BetaPolicy()
    with torch.no_grad():
        p.actor.head.weight.zero_()
        p.actor.head.bias.copy_(torch.tensor([dy_bias, -dy_bias, dx_bias, -dx_bias]))
    return p.eval()


@pytest.fixture(scope="module")
def axon():
    return generate("SI", seed=11)


def test_constant_agent_moves_right_and_stops_at_the_image_edge():
    img = np.full((64, 64), 0.1, np.float32)
    (t,) = track(img, [[32.0, 50.0]], policy=steering_policy(), config=TrackConfig(check_starts=False))
    assert t.stop_reason == "image edge"
    steps = np.diff(t.points, axis=0)
    np.testing.assert_allclose(steps[:, 0], 0.0, atol=1e-4)
    assert np.all(steps[:, 1] > 2.5) and np.all(steps[:, 1] < 3.2)
    assert t.points[-1, 1] > 63 and len(t.entropy) == len(t.points) - 1


def test_end_point_and_max_steps():
    img = np.full((64, 200), 0.1, np.float32)
    cfg = TrackConfig(check_starts=False, max_steps=100)
    a, b = track(img, [[20.0, 10.0], [40.0, 10.0]], [[20.0, 40.0], [np.nan, np.nan]], policy=steering_policy(), config=cfg)
    assert a.stop_reason == "end reached" and np.linalg.norm(a.points[-1] - [20, 40]) <= 3.0
    assert b.stop_reason == "image edge"  # no end: it runs on
    (c,) = track(img, [[20.0, 10.0]], policy=steering_policy(), config=TrackConfig(check_starts=False, max_steps=7))
    assert c.stop_reason == "max steps" and len(c.points) == 8


def test_standing_still_is_a_revisit_and_high_entropy_stops_after_k_steps():
    img = np.full((64, 64), 0.1, np.float32)
    still = steering_policy(0.0, 0.0)  # α = β on both axes: the mean displacement is 0
    (t,) = track(img, [[30.0, 30.0]], policy=still, config=TrackConfig(check_starts=False, revisit_lag=4))
    assert t.stop_reason == "revisit" and len(t.points) == 4 + 2
    entropy = float(t.entropy[0])
    cfg = TrackConfig(check_starts=False, entropy_threshold=entropy - 0.1, entropy_steps=3, revisit_lag=50)
    (u,) = track(img, [[30.0, 30.0]], policy=still, config=cfg)
    assert u.stop_reason == "uncertain" and len(u.points) == 3 + 1
    cfg = TrackConfig(check_starts=False, entropy_threshold=entropy + 0.1, entropy_steps=3, max_steps=10, revisit_lag=50)
    (v,) = track(img, [[30.0, 30.0]], policy=still, config=cfg)
    assert v.stop_reason == "max steps"


def test_stop_keeps_partial_traces(axon):
    gen = track_iter(steering_policy(), np.full((64, 128), 0.1, np.float32), [[30.0, 5.0]],
                     config=TrackConfig(check_starts=False))
    for _ in range(3):
        p = next(gen)
    gen.close()
    (t,) = p.metrics["traces"]
    assert len(t.points) == 4 and t.stop_reason == "running"


def test_the_callers_grad_mode_is_its_own_between_live_steps():
    gen = track_iter(steering_policy(), np.full((64, 128), 0.1, np.float32), [[30.0, 5.0]],
                     config=TrackConfig(check_starts=False))
    assert torch.is_grad_enabled()
    next(gen)
    assert torch.is_grad_enabled()  # a paused trace does not switch autograd off for the caller
    x = torch.ones(2, requires_grad=True)
    assert (x * 2).sum().requires_grad
    next(gen)
    gen.close()
    assert torch.is_grad_enabled()


def test_branch_start_sees_the_existing_trace_in_its_path_view(axon):
    env = TrackingEnv(EnvConfig())
    env.reset(axon.image, starts=[axon.centreline[40]])
    before = env.observation().actor[0, -1].clone()  # historical path, latest timestep
    env.mark_visited(0, torch.as_tensor(axon.centreline[:41], dtype=torch.float32))
    after = env.refresh_observation().actor[0, -1]
    assert after.sum() > before.sum() + 3  # the parent trace runs through the view


def test_prepare_rgb_3d_nan_and_invert(axon):
    rgb = np.stack([axon.image * 0, axon.image, axon.image * 0], -1)
    with pytest.raises(InputError, match="RGB.*channel"):
        prepare_image(rgb)
    np.testing.assert_allclose(prepare_image(rgb, channel=1, normalise=False), axon.image)
    stack = np.stack([axon.image * 0.5, axon.image])
    with pytest.raises(InputError, match="3D stack.*max"):
        prepare_image(stack)
    np.testing.assert_allclose(prepare_image(stack, project="max", normalise=False), axon.image)
    bad = axon.image.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        prepare_image(bad)
    with pytest.raises(InputError, match="blank"):
        prepare_image(np.zeros((32, 32)))
    # a dark structure on bright background, in uint16 counts, comes back like the training images
    dark = (60000 - axon.image * 50000).astype(np.uint16)
    back = prepare_image(dark, invert=True)
    med, hi = training_quantiles()
    assert abs(np.median(back) - med) < 0.01 and abs(np.percentile(back, 99.5) - hi) < 0.01
    assert np.corrcoef(back.ravel(), axon.image.ravel())[0, 1] > 0.99


def test_check_starts_refuses_outside_and_blank_but_never_an_axon_end():
    img = generate("SI", seed=3).image.copy()
    with pytest.raises(InputError, match=r"#1 .*outside the image \(height 128, width 128\)"):
        check_starts(img, [[10, 10], [130, 5]])
    img[:40, :40] = 0.0  # an empty corner (dead pixels, outside the field of view)
    with pytest.raises(InputError, match="blank background"):
        check_starts(img, [[15, 15]])
    for seed in range(25):
        r = generate("SI", seed=seed)
        check_starts(r.image, [r.start, r.end])  # raises if refused


def test_training_episodes_end_off_track_but_tracking_without_a_centreline_does_not(axon):
    from napari_medseg.methods.tracking.env import OFF_TRACK, RUNNING

    line = axon.centreline
    tangent = line[5] - line[0]
    normal = np.array([-tangent[1], tangent[0]]) / np.linalg.norm(tangent)
    env = TrackingEnv(EnvConfig(off_track=8.0))
    env.reset(axon.image, [line])
    for k in range(4):  # 3 px sideways per step: 6 px is still on track, 9 px is not
        env.step(torch.as_tensor(3.0 * normal[None], dtype=torch.float32))
        if k < 2:
            assert int(env.stop_reason[0]) == RUNNING
    assert int(env.stop_reason[0]) == OFF_TRACK
    free = TrackingEnv(EnvConfig(off_track=8.0))
    free.reset(axon.image, starts=[line[0]])  # no centreline: nothing to be off
    for _ in range(4):
        free.step(torch.as_tensor(3.0 * normal[None], dtype=torch.float32))
    assert int(free.stop_reason[0]) == RUNNING


def test_one_image_per_start_tracks_like_each_image_alone():
    torch.manual_seed(1)
    policy = BetaPolicy().eval()
    rs = [generate("SI", seed=s) for s in (7, 8, 9)]
    cfg = TrackConfig(check_starts=False, max_steps=30)
    batched = track(np.stack([r.image for r in rs]), np.stack([r.start for r in rs]), policy=policy, config=cfg)
    for r, b in zip(rs, batched):
        (alone,) = track(r.image, [r.start], policy=policy, config=cfg)
        np.testing.assert_allclose(b.points, alone.points, atol=1e-4)
        assert b.stop_reason == alone.stop_reason
    with pytest.raises(InputError, match="3 images for 2 start points"):
        track(np.stack([r.image for r in rs]), np.stack([r.start for r in rs[:2]]), policy=policy, config=cfg)


def test_inverting_a_fundus_photograph_does_not_turn_its_black_frame_into_structure():
    from skimage import data

    rgb = data.retina()
    img = prepare_image(rgb, channel=1, invert=True)
    med, _hi = training_quantiles()
    assert abs(float(img[5, 5]) - med) < 0.05  # the frame corner sits at the background level
    assert float(np.percentile(img[600:800, 600:800], 99)) > med + 0.1  # vessels are bright
    naive = prepare_image(rgb[..., 1].max() - rgb[..., 1], normalise=True)
    assert naive[5, 5] > 0.5  # what the fill avoids: an inverted frame is the brightest thing


def _fundus_like(size: int = 200, radius: int = 80) -> np.ndarray:
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    disk = ((yy - c) ** 2 + (xx - c) ** 2 <= radius**2).astype(np.float32)
    photo = ndi.gaussian_filter(disk, 0.8) * 150.0  # a bright field of view whose edge is anti-aliased
    photo += np.random.default_rng(0).normal(0, 2.0, photo.shape).astype(np.float32) * disk
    photo[c, c - 60 : c + 60] -= 60.0  # one dark vessel across it
    return np.clip(photo, 0, None)


def test_the_soft_edge_of_a_field_of_view_does_not_become_a_bright_ring():
    img = prepare_image(_fundus_like(), invert=True)
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(yy - 100, xx - 100)
    rim, vessel = img[(r > 77) & (r < 81)], img[100, 60:140]
    inside = img[(r < 70) & (np.abs(yy - 100) > 5)]
    assert rim.max() < np.percentile(inside, 99.9) + 0.02  # the edge is no brighter than the background
    assert vessel.min() > np.percentile(inside, 99.9)  # while the vessel stays the bright structure


def test_a_small_field_of_view_in_a_large_frame_is_found_too():
    photo = np.zeros((400, 400), np.float32)
    photo[100:300, 100:300] = _fundus_like()  # the field of view covers 13 % of the image
    img = prepare_image(photo, invert=True)
    med, _hi = training_quantiles()
    assert abs(float(img[5, 5]) - med) < 0.05  # the frame sits at the background level, not as the brightest thing
    assert float(img[200, 170:230].min()) > float(np.percentile(img, 99))  # the vessel is the bright structure
    for blank in (np.zeros((40, 40), np.float32), np.full((40, 40), -1.0, np.float32)):
        with pytest.raises(InputError, match="blank"):  # nothing to find a frame in: one clear message
            prepare_image(blank, invert=True)


def test_a_wider_frame_does_not_change_the_prepared_field_of_view():
    small = _fundus_like()
    big = np.zeros((240, 240), np.float32)
    big[20:220, 20:220] = small  # the same photograph with a wider frame (1.7x the frame's pixels)
    a, b = prepare_image(small, invert=True), prepare_image(big, invert=True)[20:220, 20:220]
    np.testing.assert_allclose(a, b, atol=1e-5)  # quantiles are taken over the field of view only


def test_finished_traces_leave_the_actor_and_the_others_trace_as_alone():
    policy = steering_policy()  # +2.85 px along x a step
    img = np.full((64, 200), 0.1, np.float32)
    img[18:23, :] = 0.9  # a bright band along x
    cfg = TrackConfig(check_starts=False, max_steps=25, fit_ridge=False)
    sizes = []
    hook = policy.actor.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    try:
        short, long_ = track(img, [[20.0, 10.0], [20.0, 100.0]], [[20.0, 16.0], [np.nan, np.nan]], policy=policy,
                             config=cfg, directions=[[0.0, 1.0], [0.0, 1.0]])
    finally:
        hook.remove()
    assert short.stop_reason == "end reached" and len(short.points) <= 4 and long_.stop_reason == "max steps"
    # one row per running trace (the trace from the short one's end joins the batch and stops with it)
    assert sizes[0] >= 2 and sizes[-1] == 1 and sizes == sorted(sizes, reverse=True)
    (alone,) = track(img, [[20.0, 100.0]], policy=policy, config=cfg, directions=[[0.0, 1.0]])
    np.testing.assert_allclose(long_.points, alone.points, atol=1e-5)
    np.testing.assert_allclose(long_.entropy, alone.entropy, atol=1e-5)
