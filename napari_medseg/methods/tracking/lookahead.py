"""Second thoughts where the agent is unsure: an entropy-triggered lookahead (issue 15).

Not in the paper. Dai et al. show that the policy's entropy separates steps on an axon
from steps off it (the uncertainty overlay); on real images the agent's mistakes at
junctions and faint stretches start with exactly such a rise (on the fibres of
``bench tracking --real`` that it left, from about −3.8 on the fibre to −1 after it). So
when a running trace's step has an entropy above ``entropy`` (nats), the tracker does
not take it at once: from the same state it tries the agent's own step and the same
step's length along ``angles`` around the trace's last movement (up to ±45°), lets the agent run
``steps`` further steps from each (deterministically, in a copy of the environment:
:meth:`~.env.TrackingEnv.fork`), and takes the first step of the continuation the agent
was surest of (lowest mean entropy), if it beats the agent's own by more than
``margin`` nats. A continuation that comes back onto its own path loses; one that
leaves the image within ``steps`` counts as no better than chance. After a check
the trace is not checked again for ``steps`` steps. Only the agent and its entropy
decide: no ridge filter, no centreline. The entropies recorded for the trace stay the
agent's own at each state, so the overlay still shows where it was unsure.

Off by default (``TrackConfig.lookahead = None``; ``napari-medseg track --lookahead``): on
fresh synthetic images it lifted fibres that start beside a wider vessel by 6–10 coverage
points and crossings by 1.6, but general domain-randomised fibres by only about 1, short of
the rule written down before the runs, and it costs 5–10× the time (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .env import RUNNING, TrackingEnv
from .policy import BetaPolicy

REVISIT_LOSS = 1e3  # the score of a continuation that came back onto its own path


@dataclass(frozen=True)
class Lookahead:
    entropy: float = -2.0  # check a step whose entropy is above this (nats)
    steps: int = 16  # length of each trial continuation, and the pause before the next check
    margin: float = 0.3  # an alternative must be surer than the agent's own step by this much
    angles: tuple = (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)  # degrees from the last movement
    max_switches: int = 20  # per trace


def candidates(own: torch.Tensor, last_move: torch.Tensor, angles) -> torch.Tensor:
    """(1 + len(angles), 2): the agent's own step first, then steps of its length (at least
    2 px) at each angle from the last movement."""
    length = max(float(own.norm()), 2.0)
    v = last_move / last_move.norm().clamp_min(1e-9)
    a = torch.deg2rad(torch.as_tensor(angles, dtype=torch.float32, device=own.device))
    rot = torch.stack([torch.cos(a) * v[0] - torch.sin(a) * v[1], torch.sin(a) * v[0] + torch.cos(a) * v[1]], 1)
    return torch.cat([own[None].float(), length * rot], 0)


@torch.no_grad()
def reconsider(policy: BetaPolicy, env: TrackingEnv, index: int, own: torch.Tensor, look: Lookahead) -> tuple[torch.Tensor, bool]:
    """The step episode ``index`` should take from its current state: ``(step (2,), switched)``."""
    trial = candidates(own, env.previous_action[index], look.angles)
    k = len(trial)
    fork = env.fork(index, k)
    obs = fork.step(trial).observation
    total = torch.zeros(k, device=trial.device)
    count = torch.zeros(k, device=trial.device)
    alive = ~fork.done
    lost = torch.zeros(k, dtype=torch.bool, device=trial.device)
    for _ in range(look.steps):
        if not bool(alive.any()):
            break
        d, e = policy.steer(obs.actor)
        total += torch.where(alive, e.float(), torch.zeros_like(total))
        count += alive.float()
        obs = fork.step(torch.where(alive[:, None], d.float(), torch.zeros_like(d, dtype=torch.float32))).observation
        back = fork.revisited(alive & (fork.stop_reason == RUNNING))
        lost |= back
        alive = alive & ~fork.done & ~back
    score = total / count.clamp_min(1.0)
    score = torch.where(count < look.steps, score.clamp_min(0.0), score)  # ended early (image edge): no evidence
    score = torch.where(lost, torch.full_like(score, REVISIT_LOSS), score)
    best = int(torch.argmin(score))
    if best == 0 or float(score[best]) > float(score[0]) - look.margin:
        return own, False
    return trial[best], True


class Reconsider:
    """Per-trace state of the lookahead inside :func:`~.track.track_iter`."""

    def __init__(self, look: Lookahead, episodes: int):
        self.look = look
        self.quiet_until = np.zeros(episodes, np.int64)
        self.switches = np.zeros(episodes, np.int64)

    def __call__(self, policy: BetaPolicy, env: TrackingEnv, displacement: torch.Tensor, entropy: torch.Tensor,
                 active: torch.Tensor) -> torch.Tensor:
        look = self.look
        steps = env.steps.cpu().numpy()
        unsure = (active & (entropy > look.entropy)).cpu().numpy()
        out = displacement
        for i in np.flatnonzero(unsure):
            if steps[i] < self.quiet_until[i] or self.switches[i] >= look.max_switches:
                continue
            step, switched = reconsider(policy, env, int(i), displacement[i], look)
            if switched:
                out = out.clone() if out is displacement else out
                out[i] = step
                self.switches[i] += 1
            self.quiet_until[i] = steps[i] + 1 + look.steps
        return out
