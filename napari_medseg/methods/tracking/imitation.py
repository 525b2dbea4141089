"""Imitation of the centreline (DAgger, Ross et al. 2011): a warm start for PPO.

Not in Dai et al. 2019, whose agent learns from the reward alone. On a CPU a PPO update
costs ~11 s and the agent's remaining failures (leaving a faint fibre for a brighter one
crossing it) are rare states that a reward signal reaches slowly. The training images
have a known centreline, so every state the agent visits has an obvious right action:
step ``lookahead`` px further along the centreline from the nearest point on it (which
also steers back onto it). DAgger labels the states the *agent* reaches with that
action, so it also learns to recover from its own mistakes, and the actor is fitted to
the aggregated labels by maximum likelihood under its Beta policy (plus a squared error
on the Beta means, the deterministic policy used at test time). The critic is not
touched; PPO can take over from the imitated actor (``PPOConfig.imitation_updates``).

Recovery starts (:func:`recovery_starts`, also not in the paper): a share of the episodes
start beside their fibre, at a random point along it, so that the states of an agent that
has drifted a few px off a fibre (the coarse view still shows it) get the expert's way back.
Otherwise such states are labelled only when the agent happens to drift there itself.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from napari_medseg.core import distributed

from . import symmetry
from .curves import arc_length
from .env import TrackingEnv, check_agent_input
from .metrics import mean_metrics, trace_metrics
from .policy import SAMPLE_EPS, BetaPolicy


class CentrelineExpert:
    """The expert of B episodes: at a position, the displacement to the centreline point
    ``lookahead`` px beyond the nearest one (the far end at most), clamped to the action
    range. After the first call, the nearest point is searched near the expert's last
    projection (``window`` px back and ahead along the line), so a fibre passing close to itself, or a crossing
    distractor, does not make it jump along the line."""

    def __init__(self, centrelines, lookahead: float = 4.0, max_displacement: float = 4.0,
                 window: tuple[float, float] = (5.0, 15.0)):
        if lookahead <= 0:
            raise ValueError(f"lookahead must be > 0 px, got {lookahead}")
        self.lines = [np.asarray(line, np.float64) for line in centrelines]
        self.arcs = [arc_length(line) for line in self.lines]
        self.progress = np.full(len(self.lines), np.nan)  # NaN: not yet projected, search the whole line
        self.lookahead, self.max_displacement, self.window = float(lookahead), float(max_displacement), window

    def _project(self, i: int, p: np.ndarray) -> float:
        line, s = self.lines[i], self.arcs[i]
        a, b = line[:-1], line[1:]
        ab = b - a
        length2 = np.maximum((ab**2).sum(1), 1e-12)
        t = np.clip(((p - a) * ab).sum(1) / length2, 0.0, 1.0)
        dist = np.linalg.norm(a + t[:, None] * ab - p, axis=1)
        if np.isfinite(self.progress[i]):
            near = (s[1:] >= self.progress[i] - self.window[0]) & (s[:-1] <= self.progress[i] + self.window[1])
            dist = np.where(near, dist, np.inf)
        j = int(np.argmin(dist))
        return float(s[j] + t[j] * (s[j + 1] - s[j]))

    def displacement(self, positions, which=None) -> np.ndarray:
        """(B, 2) expert displacements (dy, dx) px for positions (B, 2); rows outside the
        optional mask ``which`` (B,) (ended episodes) are left 0 and not projected."""
        pos = positions.detach().cpu().numpy() if torch.is_tensor(positions) else np.asarray(positions)
        which = np.ones(len(self.lines), bool) if which is None else np.asarray(which, bool)
        out = np.zeros((len(self.lines), 2))
        for i, p in enumerate(pos.astype(np.float64)):
            if not which[i] or not np.all(np.isfinite(p)):
                continue
            s_here = self._project(i, p)
            self.progress[i] = s_here
            s, line = self.arcs[i], self.lines[i]
            goal = min(s_here + self.lookahead, s[-1])
            target = np.array([np.interp(goal, s, line[:, 0]), np.interp(goal, s, line[:, 1])])
            out[i] = target - p
        return np.clip(out, -self.max_displacement, self.max_displacement)


#: Recovery starts lie this many px (uniform) beside the fibre: inside ``EnvConfig.off_track``
#: (8 px), within the coarse view's reach (10 px at scale 1).
RECOVERY_OFFSET = (2.0, 7.0)
#: ... at a point this far along the fibre (share of its arc length, uniform).
RECOVERY_ALONG = (0.0, 0.7)


def recovery_starts(centrelines, share: float, rng: np.random.Generator, offset=RECOVERY_OFFSET,
                    shape: tuple[int, int] | None = None):
    """``(lines, starts (B, 2))``: each episode with probability ``share`` starts ``offset`` px
    beside a random point of its fibre (``RECOVERY_ALONG``), on a random side, and its line
    begins at that point (the expert, the reward and the episode's end follow the rest of the
    fibre); the others keep their line and start at its first point. ``shape``: starts are
    kept inside an image of this shape."""
    lines, starts = [], []
    for line in centrelines:
        line = np.asarray(line, np.float64)
        if share > 0 and len(line) > 8 and rng.random() < share:
            s = arc_length(line)
            i = int(np.clip(np.searchsorted(s, rng.uniform(*RECOVERY_ALONG) * s[-1]), 2, len(line) - 6))
            t = line[i + 2] - line[i - 2]
            t = t / max(float(np.linalg.norm(t)), 1e-9)
            side = np.array([-t[1], t[0]]) * rng.choice([-1.0, 1.0])
            start = line[i] + rng.uniform(*offset) * side
            if shape is not None:
                start = np.clip(start, 0.0, np.array(shape, np.float64) - 1.0)
            lines.append(line[i:])
            starts.append(start)
        else:
            lines.append(line)
            starts.append(line[0])
    return lines, np.stack(starts)


def displacement_to_sample(d: torch.Tensor, max_displacement: float = 4.0) -> torch.Tensor:
    """Pixel displacements -> the Beta policy's unscaled samples in (0, 1) (inverse of
    :func:`~.env.beta_to_displacement`), kept ``0.01`` inside the ends."""
    return ((d / max_displacement + 1.0) / 2.0).clamp(0.01, 0.99)


class LabelBuffer:
    """The aggregated data set of DAgger: actor observations (stored in float16) and
    expert samples in a ring of ``capacity``, the oldest overwritten first.

    With ``journal`` on, every :meth:`add` is also kept (on the CPU) until
    :meth:`take_journal` hands it over, so that a training run can write the data set to
    disk chunk by chunk; :meth:`replay` rebuilds the very same ring from those chunks."""

    def __init__(self, capacity: int, journal: bool = False):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.obs: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.size = self.next = 0
        self.total = 0  # states ever added
        self.journal: list[dict] | None = [] if journal else None

    def __len__(self) -> int:
        return self.size

    def take_journal(self) -> list[dict]:
        """The adds since the last call: ``[{"offset": states added before it, "obs", "labels"}]``."""
        out, self.journal = self.journal or [], [] if self.journal is not None else None
        return out

    def replay(self, chunks: list[dict]) -> None:
        """Rebuild the ring from journal chunks, in order; chunks older than the first given
        must be ones the given chunks overwrite entirely (so a run may delete those)."""
        for i, c in enumerate(chunks):
            if i == 0:
                self.total = int(c["offset"])
                self.next, self.size = self.total % self.capacity, min(self.capacity, self.total)
            elif int(c["offset"]) != self.total:
                raise ValueError("the imitation data set's chunks are not consecutive")
            self.add(c["obs"], c["labels"])

    def add(self, obs: torch.Tensor, labels: torch.Tensor) -> None:
        if self.journal is not None:
            self.journal.append({"offset": self.total, "obs": obs.detach().to("cpu", torch.float16),
                                 "labels": labels.detach().float().cpu()})
        self.total += int(obs.shape[0])
        obs, labels = obs.detach()[-self.capacity:], labels.detach()[-self.capacity:]
        if self.obs is None:
            self.obs = torch.zeros((self.capacity, *obs.shape[1:]), dtype=torch.float16, device=obs.device)
            self.labels = torch.zeros((self.capacity, *labels.shape[1:]), dtype=torch.float32, device=obs.device)
        idx = (self.next + torch.arange(obs.shape[0], device=obs.device)) % self.capacity
        self.obs[idx], self.labels[idx] = obs.to(torch.float16), labels.float()
        self.next = (self.next + obs.shape[0]) % self.capacity
        self.size = min(self.capacity, self.size + obs.shape[0])

    def sample(self, n: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size == 0:
            raise ValueError("the buffer is empty")
        idx = torch.randint(self.size, (n,), generator=generator).to(self.obs.device)
        return self.obs[idx].float(), self.labels[idx]


@torch.no_grad()
def dagger_rollout(policy: BetaPolicy, env: TrackingEnv, images, centrelines, expert_fraction: float,
                   lookahead: float = 4.0, generator=None, precision=None, starts=None):
    """Run a batch of episodes, each step the expert's action with probability
    ``expert_fraction``, else the agent's deterministic one; every state visited gets the
    expert's action as its label. Returns ``(obs (N, C, S, S), labels (N, 2) in (0, 1), traces,
    returns (B,))``, the last the episodes' summed rewards (of the actions taken). ``starts``
    (B, 2): where the episodes start (default: each centreline's first point)."""
    precision = precision or contextlib.nullcontext()
    check_agent_input(policy, env)
    obs = env.reset(images, centrelines, starts=starts)
    expert = CentrelineExpert(centrelines, lookahead, env.config.max_displacement)
    xs, us = [], []
    returns = torch.zeros(env.batch_size, device=env.device)
    while not bool(env.done.all()):
        running = ~env.done
        target = torch.as_tensor(expert.displacement(env.positions, running.cpu().numpy()), dtype=torch.float32,
                                 device=env.device)
        with precision:
            agent = policy.act(obs.actor, deterministic=True).displacement
        take = torch.rand(env.batch_size, generator=generator).to(env.device) < expert_fraction
        xs.append(obs.actor[running])
        us.append(displacement_to_sample(target[running], env.config.max_displacement))
        out = env.step(torch.where(take[:, None], target, agent))
        obs, returns = out.observation, returns + out.reward
    return torch.cat(xs), torch.cat(us), env.traces(), returns


def imitation_loss(policy: BetaPolicy, obs: torch.Tensor, labels: torch.Tensor, mean_weight: float = 50.0):
    """Negative log-likelihood of the expert's samples under the Beta policy plus
    ``mean_weight`` × the squared error of the Beta means (the test-time action)."""
    dist = policy.distribution(obs)
    nll = -dist.log_prob(labels.clamp(SAMPLE_EPS, 1 - SAMPLE_EPS)).sum(-1).mean()
    mse = ((dist.mean - labels) ** 2).sum(-1).mean()
    px2 = (2.0 * policy.max_displacement) ** 2  # a sample's unit is 2 * max px
    return nll + mean_weight * mse, {"imitation_nll": nll.item(), "imitation_mse_px2": mse.item() * px2}


def imitation_update(policy: BetaPolicy, optimizer, env: TrackingEnv, images, centrelines, buffer: LabelBuffer,
                     *, expert_fraction: float, steps: int = 25, batch: int = 256, lookahead: float = 4.0,
                     mean_weight: float = 50.0, max_grad_norm: float = 0.5, generator=None, precision=None,
                     recovery: float = 0.0, rng: np.random.Generator | None = None, symmetries: bool = False) -> dict:
    """One DAgger iteration: a rollout labelled by the expert into ``buffer``, then
    ``steps`` minibatches of the actor's imitation loss on the aggregate. ``recovery``: the
    share of episodes that start beside their fibre (:func:`recovery_starts`, drawn from ``rng``).
    ``symmetries``: each minibatch pair turned or mirrored at random (:func:`.symmetry.augment`)."""
    starts = None
    if recovery > 0:
        shape = tuple(np.shape(images)[-2:])
        centrelines, starts = recovery_starts(centrelines, recovery, rng or np.random.default_rng(), shape=shape)
    obs, labels, traces, returns = dagger_rollout(policy, env, images, centrelines, expert_fraction, lookahead,
                                                  generator, precision, starts)
    buffer.add(obs, labels)
    stats: dict = {}
    for _ in range(steps):
        x, u = buffer.sample(batch, generator)
        if symmetries:
            x, u = symmetry.augment(x, u, generator)
        with precision or contextlib.nullcontext():
            loss, stats = imitation_loss(policy, x, u, mean_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(policy.actor)  # the ranks' mean (nothing on one process)
        torch.nn.utils.clip_grad_norm_(policy.actor.parameters(), max_grad_norm)
        optimizer.step()
    rows = [trace_metrics(t, c) for t, c in zip(traces, centrelines)]
    m = mean_metrics(rows)
    return {"mean_reward": float(returns.mean()), "coverage_pct": m["coverage_pct"], "error_px": m["error_px"],
            "transitions": float(obs.shape[0]),
            "expert_fraction": float(expert_fraction), "buffer": float(len(buffer)), **stats}
