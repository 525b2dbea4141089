"""The agent's input (issue 15): the image, or the mean of the image and its ridge map;
a version is always trained, fine-tuned and tracked on the input it carries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.core.registry import Registry
from napari_medseg.methods.tracking.env import EnvConfig, TrackingEnv
from napari_medseg.methods.tracking.model import MODEL_NAME, load_tracker
from napari_medseg.methods.tracking.policy import BetaPolicy
from napari_medseg.methods.tracking.ppo import PPOConfig, collect_rollout, train_tracker
from napari_medseg.methods.tracking.prepare import agent_input, normalise_like_training
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track


def _scene(size=96):
    """A fibre (row 30), a round blob of the same contrast (centre 70, 60) and uneven illumination."""
    y, x = np.mgrid[:size, :size].astype(np.float32)
    img = (0.1 + 0.002 * x + 0.4 * np.exp(-((y - 30) ** 2) / 2)
           + 0.4 * np.exp(-((y - 70) ** 2 + (x - 60) ** 2) / (2 * 16)))
    return normalise_like_training(img.astype(np.float32))


def test_the_ridge_half_keeps_the_fibre_and_drops_illumination_and_blobs():
    img = _scene()
    both = agent_input(img, "image+ridge")
    for a, flat, blob_vs_fibre in ((img, False, 1.0), (2 * both - img, True, 0.75)):  # the image, the ridge half
        between = float(np.median(a[45:55, 55:65]))
        fibre, blob = a[30, 60] - between, a[70, 60] - between
        left, right = float(np.median(a[50:55, 5:15])), float(np.median(a[50:55, 80:90]))
        assert fibre > 0.3
        if flat:  # no trace of the illumination gradient; the blob well below the fibre
            assert abs(left - right) < 0.01 and blob < blob_vs_fibre * fibre
        else:
            assert right - left > 0.1 and blob == pytest.approx(fibre, rel=0.05)
    assert both.shape == img.shape and both.dtype == np.float32
    np.testing.assert_array_equal(agent_input(img, "image"), img)
    stack = np.stack([img, img[::-1]])
    np.testing.assert_array_equal(agent_input(stack, "image+ridge")[1], agent_input(img[::-1], "image+ridge"))
    with pytest.raises(InputError, match="agent input"):
        agent_input(img, "ridge only")


def test_the_environment_samples_its_views_from_the_agents_input():
    img = _scene()
    start, end = np.array([[30.0, 10.0]]), np.array([[np.nan, np.nan]])
    views = {}
    for mode in ("image", "image+ridge"):
        env = TrackingEnv(EnvConfig(agent_input=mode))
        views[mode] = env.reset(img, starts=start, ends=end, initial_directions=np.array([[0.0, 1.0]])).actor
    plain = TrackingEnv(EnvConfig()).reset(agent_input(img, "image+ridge"), starts=start, ends=end,
                                           initial_directions=np.array([[0.0, 1.0]])).actor
    torch.testing.assert_close(views["image+ridge"], plain)
    assert not torch.equal(views["image"], views["image+ridge"])


def test_an_agent_runs_only_on_the_input_it_learned_on():
    policy = BetaPolicy(agent_input="image+ridge")
    imgs = generate_many("SI", 2, seed=3)
    env = TrackingEnv(EnvConfig(max_steps=5))
    with pytest.raises(ValueError, match="image\\+ridge"):
        collect_rollout(policy, env, np.stack([r.image for r in imgs]), [r.centreline for r in imgs])
    # the trainer builds its environment from the agent, whatever EnvConfig it is given
    config = PPOConfig(updates=1, episodes_per_batch=2, eval_every=0, max_steps=5, update_epochs=1)
    out = list(train_tracker(config, "SI", policy=policy, env_config=EnvConfig(max_steps=5)))
    assert len(out) == 1 and policy.agent_input == "image+ridge"


def test_the_input_travels_with_the_saved_version_and_tracking_uses_it():
    torch.manual_seed(0)
    ridge_agent = BetaPolicy(agent_input="image+ridge")
    with torch.no_grad():  # steps of a few px, as a trained agent takes
        ridge_agent.actor.head.weight.normal_(0, 0.5)
    assert BetaPolicy().agent_input == "image" and "agent_input" not in BetaPolicy().arch["kwargs"]
    Registry().save_new_version(MODEL_NAME, ridge_agent.state_dict(), method="dai2019-tracking",
                                arch=ridge_agent.arch)
    loaded, _ = load_tracker()
    assert loaded.agent_input == "image+ridge"
    r = generate_many("SI", 1, seed=5)[0]
    cfg = TrackConfig(max_steps=15, check_starts=False, fit_ridge=False)
    head = np.array([[0.0, 1.0]])  # the same heading for all three (an auto heading reads the image given)
    ours = track(r.image, r.start[None], policy=loaded, config=cfg, directions=head)[0]
    same = BetaPolicy()  # the same weights, told to take the image: given the blended image it traces the same
    same.load_state_dict(loaded.state_dict())
    by_hand = track(agent_input(r.image, "image+ridge"), r.start[None], policy=same, config=cfg, directions=head)[0]
    np.testing.assert_allclose(ours.points, by_hand.points, atol=1e-5)
    on_image = track(r.image, r.start[None], policy=same, config=cfg, directions=head)[0]
    k = min(len(ours.points), len(on_image.points))
    assert k > 2 and np.abs(ours.points[:k] - on_image.points[:k]).max() > 1e-3


def test_cli_trains_on_the_input_asked_for_and_fine_tunes_onto_it():
    from napari_medseg.cli import main

    torch.manual_seed(0)
    saved = Registry().save_new_version(MODEL_NAME, BetaPolicy().state_dict(), method="dai2019-tracking",
                                        arch=BetaPolicy().arch, make_current=True)  # an image agent is current
    args = ["train", "tracking", "--updates", "1", "--eval-every", "1", "--val-episodes", "2", "--minibatches", "1"]
    assert main([*args, "--init", "current", "--agent-input", "image+ridge"]) == 0
    tuned, meta = load_tracker()
    assert tuned.agent_input == "image+ridge" and meta["version"] == saved.version + 1
    assert main([*args, "--init", "current"]) == 0  # without the option it keeps the agent's own input
    assert load_tracker()[0].agent_input == "image+ridge"
