"""DAgger imitation of the centreline (tracking.imitation): the expert, the label ring,
the fit, and its place before PPO in train_tracker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.jobs import collect
from napari_medseg.methods.tracking import EnvConfig, TrackingEnv, beta_to_displacement, generate_many
from napari_medseg.methods.tracking.card import _imitation_text
from napari_medseg.methods.tracking.imitation import (
    CentrelineExpert,
    LabelBuffer,
    dagger_rollout,
    displacement_to_sample,
    RECOVERY_OFFSET,
    imitation_loss,
    imitation_update,
    recovery_starts,
)
from napari_medseg.methods.tracking.policy import BetaPolicy
from napari_medseg.methods.tracking.ppo import PPOConfig, train_tracker


def _straight(n=50):
    return np.stack([np.full(n, 10.0), np.linspace(10.0, 108.0, n)], axis=1)  # along x, 2 px apart


def test_expert_steps_lookahead_along_the_line_and_back_onto_it():
    line = _straight()
    e = CentrelineExpert([line, line, line], lookahead=4.0)
    d = e.displacement(np.array([[10.0, 20.0], [12.0, 30.0], [10.0, 106.5]]))
    assert np.allclose(d[0], [0.0, 4.0])  # on the line: 4 px ahead
    assert np.allclose(d[1], [-2.0, 4.0])  # 2 px off: back to the line, 4 px ahead
    assert np.allclose(d[2], [0.0, 1.5])  # near the far end: to the end, not beyond
    skipped = CentrelineExpert([line, line], lookahead=4.0).displacement(np.array([[10.0, 20.0]] * 2), [True, False])
    assert np.allclose(skipped, [[0.0, 4.0], [0.0, 0.0]])  # an ended episode is not projected
    far = CentrelineExpert([line], lookahead=4.0).displacement(np.array([[20.0, 20.0]]))
    assert np.allclose(far, [[-4.0, 4.0]])  # clamped to the action range


def test_expert_keeps_to_its_part_of_a_line_that_passes_close_to_itself():
    # a hairpin: out along y = 10, back along y = 16; a point at y = 13 is as near to both
    out = np.stack([np.full(30, 10.0), np.linspace(10.0, 68.0, 30)], 1)
    back = np.stack([np.full(30, 16.0), np.linspace(68.0, 10.0, 30)], 1)
    line = np.concatenate([out, np.array([[13.0, 70.0]]), back])
    e = CentrelineExpert([line], lookahead=4.0)
    for x in (12.0, 16.0, 20.0, 24.0):  # walk along the first leg
        d = e.displacement(np.array([[10.0, x]]))
    d = e.displacement(np.array([[13.2, 28.0]]))  # midway between the legs, moving out
    assert d[0, 1] > 3.0  # the expert continues outwards (+x), not back along the second leg


def test_samples_and_displacements_are_inverse_within_the_margin():
    d = torch.tensor([[-4.0, 4.0], [0.0, 1.0], [2.5, -3.0]])
    u = displacement_to_sample(d)
    assert torch.allclose(beta_to_displacement(u[1:]), d[1:], atol=1e-6)
    assert float(u.min()) == pytest.approx(0.01) and float(u.max()) == pytest.approx(0.99)


def test_label_buffer_is_a_ring_of_the_newest_states():
    b = LabelBuffer(5)
    with pytest.raises(ValueError, match="empty"):
        b.sample(1)
    b.add(torch.zeros(3, 1, 2, 2), torch.tensor([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]))
    b.add(torch.ones(4, 1, 2, 2), torch.tensor([[0.4, 0.4], [0.5, 0.5], [0.6, 0.6], [0.7, 0.7]]))
    assert len(b) == 5
    assert sorted(round(float(v), 2) for v in b.labels[:, 0]) == [0.3, 0.4, 0.5, 0.6, 0.7]
    x, u = b.sample(64, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 2, 2)
    assert ((x == 1) == (u[:, :1, None, None] > 0.35)).all()  # observation and label stay paired


def test_dagger_labels_every_state_visited_with_the_expert_action():
    imgs = generate_many("SI", 3, seed=5)
    env = TrackingEnv(EnvConfig(max_steps=12))
    policy = BetaPolicy()
    obs, labels, traces, returns = dagger_rollout(policy, env, np.stack([r.image for r in imgs]),
                                                  [r.centreline for r in imgs], expert_fraction=1.0)
    assert returns.shape == (3,) and bool((returns > 0).all())  # along the centreline: paid every step
    assert obs.shape[0] == labels.shape[0] == sum(len(t) - 1 for t in traces)
    # with the expert acting always, each trace follows the centreline: every step 4 px ahead
    steps = np.concatenate([np.linalg.norm(np.diff(t, axis=0), axis=1) for t in traces])
    assert np.median(steps) == pytest.approx(4.0, abs=0.3)
    first = beta_to_displacement(labels[0])
    assert torch.allclose(first, torch.as_tensor(traces[0][1] - traces[0][0], dtype=torch.float32), atol=1e-4)


def test_imitation_fits_the_actor_to_the_expert_and_leaves_the_critic():
    torch.manual_seed(0)
    imgs = generate_many("SI", 8, seed=6)
    images, lines = np.stack([r.image for r in imgs]), [r.centreline for r in imgs]
    env = TrackingEnv(EnvConfig(max_steps=20))
    policy = BetaPolicy()
    critic_before = [p.detach().clone() for p in policy.critic.parameters()]
    held_obs, held_labels, _, _ = dagger_rollout(policy, env, images, lines, expert_fraction=1.0)
    with torch.no_grad():
        before = imitation_loss(policy, held_obs, held_labels)[1]["imitation_mse_px2"]
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    buf = LabelBuffer(10_000)
    for _ in range(3):
        stats = imitation_update(policy, opt, env, images, lines, buf, expert_fraction=0.5, steps=20, batch=64)
    with torch.no_grad():
        after = imitation_loss(policy, held_obs, held_labels)[1]["imitation_mse_px2"]
    assert after < 0.5 * before  # the Beta means moved towards the expert's steps
    assert stats["buffer"] == len(buf) > 0 and "coverage_pct" in stats
    assert all(torch.equal(a, b) for a, b in zip(critic_before, policy.critic.parameters()))


def test_train_tracker_imitates_first_then_runs_ppo():
    cfg = PPOConfig(updates=3, imitation_updates=2, imitation_steps=2, imitation_batch=16, episodes_per_batch=4,
                    max_steps=6, update_epochs=1, eval_every=0)
    progress, _ = collect(train_tracker(cfg, "SI", env_config=EnvConfig(max_steps=6)))
    kinds = ["imitation_nll" in p.metrics for p in progress]
    assert kinds == [True, True, False]
    assert "pg_loss" in progress[-1].metrics and progress[0].metrics["expert_fraction"] == cfg.imitation_expert_start


def test_model_card_says_when_the_agent_imitated():
    c = {"imitation_updates": 30, "updates": 40, "imitation_lookahead": 4.0, "imitation_expert_start": 0.5,
         "imitation_expert_decay": 0.97, "imitation_steps": 25, "imitation_batch": 256, "imitation_mean_weight": 50.0}
    assert "first 30 updates imitated the centreline" in _imitation_text(c) and "then 10 updates of " in _imitation_text(c)
    assert "every update imitated the centreline" in _imitation_text(c, ran=20)  # stopped before PPO
    assert _imitation_text({"imitation_updates": 0}) == ""
    assert "recovery starts" not in _imitation_text(c)
    assert "25% of the episodes started 2-7 px beside their fibre" in _imitation_text({**c, "imitation_recovery": 0.25})
    assert "symmetry augmentation" not in _imitation_text(c)
    assert "symmetry augmentation" in _imitation_text({**c, "imitation_symmetries": True})


def test_recovery_starts_lie_beside_a_point_of_the_fibre_and_the_line_goes_on_from_it():
    from napari_medseg.methods.tracking.curves import distance_to_polyline

    imgs = generate_many("SI", 40, seed=8)
    lines = [r.centreline for r in imgs]
    same, starts = recovery_starts(lines, 0.0, np.random.default_rng(0))
    assert all(a is b or np.array_equal(a, b) for a, b in zip(same, lines))
    assert np.array_equal(starts, np.stack([ln[0] for ln in lines]))  # share 0: the usual starts
    moved, starts = recovery_starts(lines, 1.0, np.random.default_rng(1), shape=(128, 128))
    for line, rest, p in zip(lines, moved, starts):
        k = len(line) - len(rest)
        assert 2 <= k <= 0.72 * len(line) and np.array_equal(rest, line[k:])  # the fibre from a point along it on
        off = np.linalg.norm(p - rest[0])
        assert RECOVERY_OFFSET[0] - 1e-6 <= off <= RECOVERY_OFFSET[1] + 1e-6
        t = rest[2] - line[k - 2]
        assert abs(np.dot(p - rest[0], t)) / (off * np.linalg.norm(t)) < 0.2  # beside the fibre, across it
        assert 0 <= p.min() and p.max() <= 127
    def cross(a, b):
        return a[0] * b[1] - a[1] * b[0]

    sides = [np.sign(cross(rest[2] - rest[0], p - rest[0])) for rest, p in zip(moved, starts)]
    assert 0 < sides.count(1.0) < len(sides)  # both sides
    half, _ = recovery_starts(lines, 0.5, np.random.default_rng(2))
    assert 5 < sum(len(a) < len(b) for a, b in zip(half, lines)) < 35


def test_a_recovery_start_is_labelled_back_onto_the_fibre():
    imgs = generate_many("SI", 6, seed=9)
    images, lines = np.stack([r.image for r in imgs]), [r.centreline for r in imgs]
    lines, starts = recovery_starts(lines, 1.0, np.random.default_rng(3), shape=images.shape[1:])
    env = TrackingEnv(EnvConfig(max_steps=10))
    _, labels, traces, _ = dagger_rollout(BetaPolicy(), env, images, lines, expert_fraction=1.0, starts=starts)
    for t, line, p in zip(traces, lines, starts):
        assert np.allclose(t[0], p, atol=1e-4)  # the episode starts beside the fibre
        start_off = np.min(np.linalg.norm(line - p, axis=1))
        end_off = np.min(np.linalg.norm(line - t[-1], axis=1))
        assert start_off >= 1.5 and end_off < 1.0  # and the expert's steps take it back onto it
    first = beta_to_displacement(labels[0]).numpy()
    toward = lines[0][0] - starts[0]
    assert np.dot(first, toward) > 0  # the first label points back towards the fibre


def test_train_tracker_draws_recovery_starts_only_when_asked():
    cfg = PPOConfig(updates=1, imitation_updates=1, imitation_steps=1, imitation_batch=8, episodes_per_batch=4,
                    max_steps=5, eval_every=0)
    runs = {}
    for share in (0.0, 1.0):
        torch.manual_seed(0)
        progress, _ = collect(train_tracker(cfg.replace(imitation_recovery=share), "SI",
                                            env_config=EnvConfig(max_steps=5)))
        runs[share] = progress[0].metrics
    # recovery episodes are shorter fibres started beside them: the rollout covers a different share
    assert runs[0.0]["coverage_pct"] != runs[1.0]["coverage_pct"]


def test_a_share_of_recovery_starts_outside_0_1_is_refused_before_training():
    from napari_medseg.core.errors import InputError

    for share in (-0.1, 1.5):
        with pytest.raises(InputError, match="between 0 and 1; got"):
            next(train_tracker(PPOConfig(updates=1, imitation_updates=1, imitation_recovery=share), "SI"))


def test_symmetry_augmentation_changes_the_actors_training_only_when_asked():
    from napari_medseg.methods.tracking.imitation import LabelBuffer, imitation_update

    images = np.stack([r.image for r in generate_many("DR", 4, seed=12)])
    lines = [r.centreline for r in generate_many("DR", 4, seed=12)]
    weights = {}
    for on in (False, False, True):
        torch.manual_seed(0)
        policy = BetaPolicy()
        opt = torch.optim.Adam(policy.actor.parameters(), lr=1e-3)
        imitation_update(policy, opt, TrackingEnv(EnvConfig(max_steps=6)), images, lines, LabelBuffer(1000),
                         expert_fraction=1.0, steps=2, batch=16, generator=torch.Generator().manual_seed(1),
                         symmetries=on)
        weights.setdefault(on, []).append(policy.actor.head.weight.detach().clone())
    assert torch.equal(weights[False][0], weights[False][1])  # the same run twice: the same weights
    assert not torch.equal(weights[False][0], weights[True][0])  # the turned/mirrored pairs train differently
