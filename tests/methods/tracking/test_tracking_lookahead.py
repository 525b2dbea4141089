"""The entropy-triggered lookahead (issue 15): trial continuations from a copy of the
environment, and the step of the one the agent is surest of."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.methods.tracking import lookahead as LA
from napari_medseg.methods.tracking.env import EnvConfig, TrackingEnv
from napari_medseg.methods.tracking.lookahead import Lookahead, Reconsider, candidates, reconsider
from napari_medseg.methods.tracking.model import load_tracker
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track


def _started(image, start, heading, n=1):
    env = TrackingEnv(EnvConfig())
    env.reset(np.stack([image] * n), starts=np.repeat(start[None], n, 0), ends=None,
              initial_directions=np.repeat(heading[None], n, 0))
    return env


def test_a_fork_continues_exactly_as_the_episode_it_copies():
    r = generate_many("SI", 1, seed=77)[0]
    heading = r.centreline[5] - r.start
    env = _started(r.image, r.start, heading / np.linalg.norm(heading), n=2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(torch.as_tensor(rng.uniform(-3, 3, (2, 2)), dtype=torch.float32))
    fork = env.fork(1, 3)
    assert fork.batch_size == 3 and bool(torch.isnan(fork.ends).all()) and not bool(fork.done.any())
    move = torch.tensor([[2.0, -1.5]])
    a = env.step(move.repeat(2, 1)).observation.actor[1]
    b = fork.step(move.repeat(3, 1)).observation.actor
    for k in range(3):
        torch.testing.assert_close(b[k], a)
    torch.testing.assert_close(fork.positions[0], env.positions[1])
    assert int(fork.steps[0]) == int(env.steps[1]) == 4
    fork.step(torch.tensor([[3.0, 3.0]] * 3))  # the copy moving does not move the original
    torch.testing.assert_close(env.positions[1], fork.positions[0] - torch.tensor([3.0, 3.0]))


def test_candidates_turn_about_the_last_movement_at_the_own_steps_length():
    own = torch.tensor([0.0, 3.0])
    c = candidates(own, torch.tensor([1.0, 0.0]), (-45.0, 0.0, 90.0))
    torch.testing.assert_close(c[0], own)
    torch.testing.assert_close(c[2], torch.tensor([3.0, 0.0]))  # along the last movement
    torch.testing.assert_close(c[3], torch.tensor([0.0, 3.0]), atol=1e-6, rtol=0)
    assert c[1].norm().item() == pytest.approx(3.0) and c[1][0].item() == pytest.approx(3.0 / np.sqrt(2))
    assert candidates(torch.tensor([0.1, 0.0]), torch.tensor([0.0, 1.0]), (0.0,))[1].norm().item() == pytest.approx(2.0)


def test_a_step_off_the_fibre_is_replaced_by_one_along_it():
    policy, _ = load_tracker()
    r = generate_many("SI", 1, seed=78)[0]
    heading = r.centreline[6] - r.centreline[2]
    heading = heading / np.linalg.norm(heading)
    env = _started(r.image, r.centreline[2], heading)
    env.previous_action = torch.as_tensor(heading[None], dtype=torch.float32)
    off = torch.as_tensor(4.0 * np.array([-heading[1], heading[0]]), dtype=torch.float32)  # straight across
    step, switched = reconsider(policy, env, 0, off, Lookahead())
    assert switched
    cos = float(step @ torch.as_tensor(heading, dtype=torch.float32)) / float(step.norm())
    assert cos > np.cos(np.deg2rad(46))
    # the same, demanding an impossible margin: the agent's own step stands
    kept, switched = reconsider(policy, env, 0, off, Lookahead(margin=1e6))
    assert not switched and torch.equal(kept, off)
    # along the fibre already: nothing better to find
    along = torch.as_tensor(4.0 * heading, dtype=torch.float32)
    kept, switched = reconsider(policy, env, 0, along, Lookahead())
    assert not switched and torch.equal(kept, along)


def test_checks_only_unsure_running_steps_and_pauses_after_each(monkeypatch):
    calls = []

    def fake(policy, env, index, own, look):
        calls.append((index, int(env.steps[index])))
        return own + 1.0, index == 1

    monkeypatch.setattr(LA, "reconsider", fake)
    r = generate_many("SI", 1, seed=79)[0]
    env = _started(r.image, r.start, np.array([0.0, 1.0]), n=3)
    look = Lookahead(entropy=-2.0, steps=5, max_switches=1)
    second = Reconsider(look, 3)
    d = torch.zeros(3, 2)
    active = torch.tensor([True, True, False])
    out = second(None, env, d, torch.tensor([-1.0, -1.0, -1.0]), active)  # episode 2 is not running
    assert calls == [(0, 0), (1, 0)]
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))  # only the switch moves
    assert torch.equal(d, torch.zeros(3, 2))  # the caller's tensor is left alone
    for _ in range(5):
        env.step(torch.zeros(3, 2))
    second(None, env, d, torch.tensor([-1.0, -1.0, -1.0]), active)  # steps 5: still within the pause
    env.step(torch.zeros(3, 2))
    second(None, env, d, torch.tensor([-1.0, -3.0, -1.0]), active)  # 6: past it; episode 1 is sure now
    assert calls == [(0, 0), (1, 0), (0, 6)]
    env.step(torch.zeros(3, 2))
    for _ in range(7):
        env.step(torch.zeros(3, 2))
    second(None, env, d, torch.tensor([-1.0, -1.0, -1.0]), active)  # episode 1 has used its one switch
    assert calls[-1] == (0, 14) and len(calls) == 4


def test_track_with_the_lookahead_follows_a_fibre_the_agent_would_leave():
    """A fibre that starts beside a wider, brighter vessel (DRp): the lookahead keeps more
    of it on average (32 images; +6 to +10 points on 48-96 in docs/benchmarks.md)."""
    from napari_medseg.methods.tracking.metrics import trace_metrics

    imgs = generate_many("DRp", 32, seed=4711)
    policy, _ = load_tracker()
    heads = np.stack([r.centreline[5] - r.start for r in imgs])
    cov = {}
    for label, look in (("off", None), ("on", Lookahead())):
        found = track(np.stack([r.image for r in imgs]), np.stack([r.start for r in imgs]), None, policy=policy,
                      config=TrackConfig(check_starts=False, both_ways=False, lookahead=look), directions=heads)
        cov[label] = np.array([trace_metrics(t.points, r.centreline)["coverage_pct"] for t, r in zip(found, imgs)])
        assert all(np.isfinite(t.entropy).all() for t in found)
    assert (cov["on"] != cov["off"]).any()
    assert cov["on"].mean() > cov["off"].mean()


def test_cli_track_lookahead_turns_it_on(track_cli):
    assert track_cli.run("a.swc") == 0
    assert track_cli.run("b.swc", "--lookahead") == 0
    assert [c.lookahead for c in track_cli.configs] == [None, Lookahead()]
    assert (track_cli.dir / "a.swc").exists() and (track_cli.dir / "b.swc").exists()
