"""Steps averaged over the views' turns and mirrors, and symmetry augmentation of imitation (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.methods.tracking import symmetry as S
from napari_medseg.methods.tracking.policy import BetaPolicy
from napari_medseg.methods.tracking.synthetic import generate_many
from napari_medseg.methods.tracking.track import TrackConfig, track


def _policy():
    torch.manual_seed(3)
    p = BetaPolicy()
    torch.nn.init.normal_(p.actor.head.weight, std=0.2)  # far from the symmetric start: its steps depend on the frame
    return p.eval()


def test_the_eight_symmetries_are_distinct_and_each_step_maps_back():
    v = torch.arange(121.0).reshape(1, 1, 11, 11)
    seen = {tuple(S.apply(v, *s).flatten().tolist()) for s in S.SYMMETRIES}
    assert len(seen) == 8
    d = torch.tensor([[1.5, -0.5]])
    for s in S.SYMMETRIES:
        assert torch.allclose(S.back(S.forward(d, *s), *s), d)
    # a 90-degree turn (transpose, then mirror the rows) moves a step along +x to one along -y
    assert torch.allclose(S.forward(torch.tensor([[0.0, 1.0]]), True, True, False), torch.tensor([[-1.0, 0.0]]))


def test_a_bright_pixel_and_its_step_move_together():
    """Where a pixel to the right of the centre lands under a symmetry, the step towards it lands too."""
    v = torch.zeros(1, 1, 11, 11)
    v[0, 0, 5, 8] = 1.0  # 3 px to the right of the centre
    for s in S.SYMMETRIES:
        y, x = np.argwhere(S.apply(v, *s)[0, 0].numpy() == 1.0)[0]
        assert torch.allclose(S.forward(torch.tensor([[0.0, 3.0]]), *s), torch.tensor([[float(y) - 5.0, float(x) - 5.0]]))


def test_averaging_over_all_eight_makes_any_agent_turn_its_step_with_the_image():
    policy = _policy()
    views = torch.rand(4, 12, 11, 11)
    with torch.no_grad():
        d1, _ = S.steer(policy, views, 1)
        d8, e8 = S.steer(policy, views, 8)
        for s in S.SYMMETRIES[1:]:
            turned, et = S.steer(policy, S.apply(views, *s), 8)
            assert torch.allclose(S.back(turned, *s), d8, atol=1e-5)  # exactly equivariant
            assert torch.allclose(et, e8, atol=1e-5)  # the entropy does not change
            alone, _ = S.steer(policy, S.apply(views, *s), 1)
            assert not torch.allclose(S.back(alone, *s), d1, atol=1e-3)  # the agent alone is not


def test_augmented_pairs_are_views_and_steps_under_the_same_symmetry():
    views, samples = torch.rand(40, 12, 11, 11), torch.rand(40, 2)
    av, au = S.augment(views, samples, torch.Generator().manual_seed(0))
    used = set()
    for i in range(40):
        match = [s for s in S.SYMMETRIES if torch.equal(S.apply(views[i:i + 1], *s), av[i:i + 1])]
        assert match
        used.add(match[0])
        assert torch.allclose(S.back(2 * au[i:i + 1] - 1, *match[0]), 2 * samples[i:i + 1] - 1, atol=1e-6)
    assert len(used) >= 6  # drawn at random among the eight


def test_track_averages_over_symmetries_only_when_asked_and_refuses_other_counts():
    r = generate_many("SI", 1, seed=5)[0]
    policy = _policy()
    heading = r.centreline[5] - r.start
    runs = {k: track(r.image, r.start[None], None, policy=policy, directions=heading[None],
                     config=TrackConfig(max_steps=8, check_starts=False, fit_ridge=False, symmetries=k))[0]
            for k in (1, 8)}
    assert len(runs[1].points) > 2 and len(runs[8].points) > 2
    assert not np.allclose(runs[1].points[1], runs[8].points[1])  # a different first step
    with pytest.raises(InputError, match="symmetries must be one of"):
        track(r.image, r.start[None], None, policy=policy, config=TrackConfig(symmetries=3, check_starts=False))


def test_cli_track_symmetries_reach_the_tracker(track_cli):
    assert track_cli.run("a.swc") == 0
    assert track_cli.run("b.swc", "--symmetries", "4") == 0
    assert [c.symmetries for c in track_cli.configs] == [1, 4] and (track_cli.dir / "b.swc").exists()
    with pytest.raises(SystemExit):  # argparse refuses a count that is not 1, 2, 4 or 8
        track_cli.run("c.swc", "--symmetries", "3")
