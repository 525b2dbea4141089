"""Synthetic axon images and the batched tracking environment (Dai et al. 2019)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_medseg.core.errors import InputError
from napari_medseg.methods.tracking import EnvConfig, TrackingEnv, beta_to_displacement, generate, settings
from napari_medseg.methods.tracking.curves import arc_length, centreline_image
from napari_medseg.methods.tracking.env import END_REACHED, IMAGE_EDGE, MAX_STEPS, RUNNING


def _sample(img, pts):
    """Independent bilinear reference: zeros outside the image."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    return ndi.map_coordinates(img.astype(np.float64), pts.T, order=1, mode="grid-constant", cval=0.0)


def _background_mask(r, distance=8.0):
    lines = [r.centreline] + r.distractors
    mask = np.ones(r.image.shape, bool)
    for line in lines:
        mask &= centreline_image(line, r.image.shape, sigma=distance / 3) < np.exp(-4.5)
    return mask


# ------------------------------------------------------------------ generator
def test_generator_is_seeded():
    a, b, c = generate("SI", seed=3), generate("SI", seed=3), generate("SI", seed=4)
    assert a.image.dtype == np.float32 and a.image.shape == (128, 128)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.centreline, b.centreline)
    assert not np.array_equal(a.image, c.image)
    assert 0.0 <= a.image.min() and a.image.max() <= 1.0


def test_si_is_one_realistic_axon_along_a_bright_ridge():
    r = generate("SI", seed=5)
    line, s = r.centreline, r.settings
    assert r.distractors == []
    length = arc_length(line)[-1]
    assert s.axon_length[0] - 5 <= length <= s.axon_length[1] + 5  # about an image side or more
    spacing = np.linalg.norm(np.diff(line, axis=0), axis=1)
    np.testing.assert_allclose(spacing, s.centreline_spacing, rtol=0.1)  # ordered, end to end
    assert np.all(line >= 0) and np.all(line <= np.array(r.image.shape) - 1)
    # the centreline is the ridge: brighter than 2 px to either side, in the clean image
    t = np.gradient(line, axis=0)
    normal = np.stack([-t[:, 1], t[:, 0]], 1) / np.linalg.norm(t, axis=1, keepdims=True)
    on = _sample(r.clean, line)
    for side in (-2.0, 2.0):
        assert np.all(on > _sample(r.clean, line + side * normal))
    # and visibly bright in the noisy image too
    bg = r.image[_background_mask(r)]
    assert _sample(ndi.gaussian_filter(r.image, 1.0), line).mean() > bg.mean() + 2 * bg.std() / 2


def _contrast_and_noise(r):
    bg = _background_mask(r)
    noise = (r.image - r.clean)[bg].std()
    contrast = _sample(r.clean, r.centreline).mean() - r.clean[bg].mean()
    return contrast, noise


def test_named_settings_differ_from_si_as_their_names_say():
    si = generate("SI", seed=7)
    c_si, n_si = _contrast_and_noise(si)
    # same seed, same geometry: only the appearance differs
    for name in ("SI-RC", "SI-W", "SI-EN", "SI-SN"):
        np.testing.assert_array_equal(generate(name, seed=7).centreline, si.centreline)

    c_rc, n_rc = _contrast_and_noise(generate("SI-RC", seed=7))
    assert c_rc < 0.6 * c_si and n_rc == pytest.approx(n_si, rel=0.1)

    w = generate("SI-W", seed=7)
    level = si.clean[_background_mask(si)].mean() + 0.5 * c_si
    assert (w.clean > level).sum() > 1.8 * (si.clean > level).sum()  # wider axon, same contrast

    _, n_en = _contrast_and_noise(generate("SI-EN", seed=7))
    assert n_en > 1.5 * n_si

    sn = generate("SI-SN", seed=7)
    resid = sn.image - sn.clean
    on_axon = centreline_image(sn.centreline, sn.image.shape, 0.5) > 0.6
    bg = _background_mask(sn)
    assert resid[on_axon].std() > 1.5 * resid[bg].std()  # Poisson: noise grows with signal
    resid_si = si.image - si.clean
    assert resid_si[on_axon].std() < 1.3 * resid_si[bg].std()  # SI: additive Gaussian


def test_crossing_setting_adds_distractors_that_cross_the_main_axon():
    r = generate("crossing", seed=2)
    assert len(r.distractors) == 2
    for d in r.distractors:
        gap = np.min(np.linalg.norm(d[:, None] - r.centreline[None], axis=2))
        assert gap < 1.5
    assert (r.clean > 0.3).sum() > 1.5 * (generate("SI", seed=2).clean > 0.3).sum()


def test_distractors_can_branch_off_and_be_wider_than_the_axon():
    """Real junctions: a fibre meets a wider vessel, or a branch leaves it on one side."""
    plain = generate("crossing", seed=2)
    wide = generate("crossing", seed=2, distractor_width=(3.0, 3.0), branch_fraction=1.0)
    np.testing.assert_array_equal(wide.centreline, plain.centreline)  # the axon's geometry is drawn first
    for d in wide.distractors:  # a branch starts on the axon and leaves it
        assert np.min(np.linalg.norm(d[0] - wide.centreline, axis=1)) < 1.5
        assert np.min(np.linalg.norm(d[-1] - wide.centreline, axis=1)) > 10
    for r, sigma in ((plain, 1.0), (wide, 3.0)):  # the distractor's cross-section, away from the axon
        d = r.distractors[0]
        far = np.linalg.norm(d[:, None] - r.centreline[None], axis=2).min(1) > 20
        assert far.any()
        i = int(np.flatnonzero(far)[far.sum() // 2])
        t = d[min(i + 2, len(d) - 1)] - d[max(i - 2, 0)]
        normal = np.array([-t[1], t[0]]) / np.linalg.norm(t)
        across = d[i] + np.arange(-12, 13)[:, None] * normal  # 1-px samples across the distractor
        profile = ndi.map_coordinates(r.clean.astype(float), across.T, order=1, mode="nearest")
        width = (profile > profile.min() + 0.5 * (profile.max() - profile.min())).sum()
        assert (width >= 5) == (sigma == 3.0), (sigma, width)


def test_every_parameter_can_be_set_and_unknown_names_fail():
    r = generate("SI", seed=1, image_shape=(64, 96), axon_length=(50.0, 60.0), axon_sigma=1.5)
    assert r.image.shape == (64, 96) and r.settings.axon_sigma == 1.5
    assert settings("SI-EN", noise_std=0.3).noise_std == 0.3
    with pytest.raises(InputError):
        settings("SI-XYZ")


# ---------------------------------------------------------------- observation
def test_observation_is_bilinear_interpolation_with_zeros_outside():
    rng = np.random.default_rng(0)
    img = rng.random((40, 50)).astype(np.float32)
    line = np.stack([np.full(30, 20.3), np.linspace(5, 40, 30)], 1)
    starts = np.array([[20.3, 25.7], [0.4, 1.2], [38.6, 48.9], [12.25, 47.5]])
    env = TrackingEnv(EnvConfig(), "cpu")
    obs = env.reset(np.repeat(img[None], 4, 0), [line] * 4, starts=starts)
    assert obs.actor.shape == (4, 12, 11, 11) and obs.critic.shape == (4, 16, 11, 11)
    off = np.arange(-5, 6, dtype=np.float64)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    ig = env.centreline_images[0, 0].numpy()
    for b, p in enumerate(starts):
        for scale, channel in ((1.0, 9), (2.0, 10)):  # newest timestep: window, 21 px window
            ref = _sample(img, np.stack([p[0] + scale * oy, p[1] + scale * ox], -1)).reshape(11, 11)
            np.testing.assert_allclose(obs.actor[b, channel].numpy(), ref, atol=1e-5)
        ref = _sample(ig, np.stack([p[0] + oy, p[1] + ox], -1)).reshape(11, 11)
        np.testing.assert_allclose(obs.critic[b, 15].numpy(), ref, atol=1e-5)
    assert obs.actor[1, 9, 0, 0] == 0 and obs.actor[2, 9, -1, -1] == 0  # beyond the edge
    # the 3 earlier timesteps repeat the first view at reset
    torch.testing.assert_close(obs.actor[:, 0:3], obs.actor[:, 9:12])


def test_scale_enlarges_the_windows():
    img = np.random.default_rng(1).random((60, 60)).astype(np.float32)
    p = np.array([[30.2, 29.6]])
    obs = TrackingEnv(EnvConfig(scale=1.5)).reset(img, starts=p)
    off = 1.5 * np.arange(-5, 6, dtype=np.float64)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    ref = _sample(img, np.stack([p[0, 0] + oy, p[0, 1] + ox], -1)).reshape(11, 11)
    np.testing.assert_allclose(obs.actor[0, 9].numpy(), ref, atol=1e-5)
    assert obs.critic is None  # no centreline: no critic view, zero reward


def test_path_channel_and_history_stack():
    img = np.zeros((40, 40), np.float32)
    env = TrackingEnv()
    env.reset(img, starts=[[20.0, 10.0]])
    out = None
    for _ in range(3):
        out = env.step(torch.tensor([[0.0, 3.0]]))
    path = out.observation.actor[0, 11].numpy()  # newest path view, centred at (20, 19)
    np.testing.assert_allclose(path[5, :6], 1.0, atol=1e-5)  # visited pixels, up to the agent
    np.testing.assert_allclose(path[5, 6:], 0.0, atol=1e-5)  # not yet visited
    np.testing.assert_allclose(np.delete(path, 5, axis=0), 0.0, atol=1e-5)  # only that row
    # the previous timestep's view: centred 3 px back, the path as it was then
    before = out.observation.actor[0, 8].numpy()
    np.testing.assert_allclose(before[5, :6], 1.0, atol=1e-5)
    np.testing.assert_allclose(before[5, 6:], 0.0, atol=1e-5)


def test_batched_step_equals_separate_steps():
    rs = [generate("SI", seed=s) for s in range(4)]
    imgs, lines = np.stack([r.image for r in rs]), [r.centreline for r in rs]
    g = torch.Generator().manual_seed(0)
    actions = [beta_to_displacement(torch.rand(4, 2, generator=g)) for _ in range(6)]
    batched = TrackingEnv()
    batched.reset(imgs, lines)
    singles = [TrackingEnv() for _ in rs]
    for i, e in enumerate(singles):
        e.reset(imgs[i : i + 1], lines[i : i + 1])
    for a in actions:
        out = batched.step(a)
        for i, e in enumerate(singles):
            one = e.step(a[i : i + 1])
            torch.testing.assert_close(out.observation.actor[i], one.observation.actor[0])
            torch.testing.assert_close(out.observation.critic[i], one.observation.critic[0])
            torch.testing.assert_close(out.reward[i], one.reward[0])
            assert out.stop_reason[i] == one.stop_reason[0]
    torch.testing.assert_close(batched.positions, torch.cat([e.positions for e in singles]))


# --------------------------------------------------------------------- reward
def _line_env(line, start, shape=(64, 64), **cfg):
    env = TrackingEnv(EnvConfig(**cfg))
    env.reset(np.zeros(shape, np.float32), [line], starts=[start])
    return env


DIAGONAL = np.stack([np.linspace(8.0, 50.0, 60), np.linspace(6.3, 48.3, 60)], 1)


def test_reward_along_beats_across_and_standing_still_costs_one():
    d = torch.tensor([[1.0, 1.0]]) / np.sqrt(2)
    n = torch.tensor([[1.0, -1.0]]) / np.sqrt(2)
    along = _line_env(DIAGONAL, DIAGONAL[10]).step(3.0 * d).reward.item()
    across = _line_env(DIAGONAL, DIAGONAL[10]).step(3.0 * n).reward.item()
    # I_G peaks at 1 on the line; resampled bilinearly between pixel centres it dips a little
    assert along == pytest.approx(3.0, rel=0.1) and 0 < across < 0.5 * along
    assert _line_env(DIAGONAL, DIAGONAL[10]).step(torch.zeros(1, 2)).reward.item() == -1.0


def test_reward_is_an_integral_not_a_count():
    d = torch.tensor([[0.6, 0.8]])  # slightly off the line's direction: values vary along the step
    env1 = _line_env(DIAGONAL, DIAGONAL[10])
    one = env1.step(3.0 * d).reward.item()
    env2 = _line_env(DIAGONAL, DIAGONAL[10])
    two = env2.step(1.5 * d).reward.item() + env2.step(1.5 * d).reward.item()
    assert two == pytest.approx(one, rel=0.02)
    short = _line_env(DIAGONAL, DIAGONAL[10]).step(0.1 * d).reward.item()
    assert short < 0.05 * one  # a tiny step earns little


def test_reversal_flips_the_sign_until_the_next_reversal():
    env = _line_env(DIAGONAL, DIAGONAL[20])
    d = torch.tensor([[1.0, 1.0]]) / np.sqrt(2)
    r = [env.step(s * d).reward.item() for s in (2.0, -2.0, -2.0, 2.0)]
    assert r[0] > 1.5 and r[1] < -1.5 and r[2] < -1.5 and r[3] > 1.5
    # going backwards from the start is a reversal of v0 (the initial direction)
    back = _line_env(DIAGONAL, DIAGONAL[20]).step(-2.0 * d).reward.item()
    assert back < -1.5


# ------------------------------------------------------------------- episodes
def test_episode_ends_after_200_steps():
    env = _line_env(DIAGONAL, DIAGONAL[20])
    assert env.config.max_steps == 200
    for t in range(1, 201):
        out = env.step(torch.tensor([[0.5, -0.5]]) * (1 if t % 2 else -1))
        assert bool(out.done[0]) == (t == 200)
    assert out.stop_reason[0] == MAX_STEPS
    assert len(env.traces()[0]) == 201
    after = env.step(torch.tensor([[1.0, 1.0]]))
    assert after.reward[0] == 0 and not after.stepped[0]  # ended episodes stay put


def test_episode_ends_near_the_far_end_and_at_the_image_edge():
    line = np.stack([np.full(54, 32.0), np.arange(5.0, 59.0)], 1)
    env = _line_env(line, line[0])
    steps = 0
    while not env.done[0]:
        out = env.step(torch.tensor([[0.0, 4.0]]))
        steps += 1
        assert steps < 20
    assert out.stop_reason[0] == END_REACHED and abs(env.positions[0, 1].item() - 58.0) <= 3.0
    assert steps == 13  # 5 + 13 * 4 = 57: within 3 px of x = 58
    edge = _line_env(line, [2.0, 30.0])
    assert edge.step(torch.tensor([[-3.0, 0.0]])).stop_reason[0] == IMAGE_EDGE
    assert edge.stop_reason[0] != RUNNING


def test_shared_image_for_many_starts():
    r = generate("SI", seed=0)
    starts = r.centreline[[0, 30, 60]]
    env = TrackingEnv()
    obs = env.reset(r.image, starts=starts)  # one image, three episodes
    assert obs.actor.shape == (3, 12, 11, 11)
    for b, p in enumerate(starts):
        single = TrackingEnv().reset(r.image, starts=p[None])
        torch.testing.assert_close(obs.actor[b], single.actor[0])
