"""Tracking with a trained agent: ``track(image, starts, ...)`` (Dai et al. 2019, §3).

The deterministic policy (the Beta means) moves every start point at once through
the batched environment. Each trace stops at the first of:

- ``end reached``: its step passed within ``end_radius`` px of its given end point;
- ``passed the end``: having come within ``end_slack`` px of its end (default
  2 × ``end_radius`` + the largest step), it moves away from it, or the end lies behind
  its step: it never runs on past a given end by more than one step;
- ``image edge``: it left the image;
- ``max steps``;
- ``uncertain``: the policy entropy stayed above ``entropy_threshold`` for
  ``entropy_steps`` consecutive steps;
- ``revisit``: it came back within ``revisit_radius`` px of its own path (older than
  ``revisit_lag`` steps), i.e. it turned back or started to loop.

A trace can start on an existing trace to follow a branch: the existing trace is
drawn into the historical-path view first, so the agent moves away from it.
:func:`track_iter` yields the traces after every step (the widget draws them live).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_medseg.core.errors import InputError
from napari_medseg.core.jobs import Progress, collect

from .env import END_REACHED, RUNNING, STOP_REASONS, EnvConfig, TrackingEnv
from .heading import directions_of, stub_behind
from .policy import BetaPolicy
from .prepare import check_starts

UNCERTAIN, REVISIT, STOPPED, PASSED_END = 4, 5, 6, 8
REASONS = {**STOP_REASONS, UNCERTAIN: "uncertain", REVISIT: "revisit", STOPPED: "stopped",
           PASSED_END: "passed the end"}


@dataclass(frozen=True)
class TrackConfig:
    max_steps: int = 200
    end_radius: float = 3.0
    entropy_threshold: float | None = None  # None: never stop on entropy
    entropy_steps: int = 5  # k consecutive steps above the threshold
    revisit_radius: float = 1.0
    revisit_lag: int = 4  # path points younger than this many steps do not count
    scale: float = 1.0  # window scale (1.5 on the paper's real data)
    check_starts: bool = True  # refuse starts outside the image or on blank background
    stub_length: float = 6.0  # px of "visited" path drawn behind each start, opposite its heading
    end_slack: float | None = None  # px; None: 2 * end_radius + the largest step (see _stop_at_end)


@dataclass
class Trace:
    """One traced structure: subpixel points (N, 2) (y, x), start first."""

    points: np.ndarray
    entropy: np.ndarray  # (N - 1,): entropy[i] of the step that left points[i]
    stop_reason: str = "running"
    parent: tuple[int, int] | None = None  # (trace index, point index) it branches from
    meta: dict = field(default_factory=dict)

    @property
    def length_px(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum()) if len(self.points) > 1 else 0.0


def _entropy_run(running_count: torch.Tensor, entropy: torch.Tensor, threshold, active) -> torch.Tensor:
    if threshold is None:
        return running_count
    over = (entropy > threshold) & active
    return torch.where(over, running_count + 1, torch.where(active, torch.zeros_like(running_count), running_count))


def _stop_at_end(env: TrackingEnv, last: torch.Tensor, active: torch.Tensor, nearest: torch.Tensor,
                 slack: float, start_dist: torch.Tensor) -> None:
    """``end reached`` when this step's segment passed within the end radius (not only
    its new point). ``passed the end`` when the trace is or has been within ``slack`` px of
    its end and now moves away from it (the distance grew by > 0.5 px over its closest,
    or the end lies behind this step): a trace never runs more than one step past its
    end. Only once it has come closer to the end than it started (``start_dist``), so a
    fibre whose two ends lie close together (a U) is still followed away from the end
    first. ``nearest`` (B,) keeps each trace's closest approach (segment distance)."""
    ends, new = env.ends, env.positions
    seg = new - last
    t = (((ends - last) * seg).sum(1) / (seg * seg).sum(1).clamp_min(1e-12)).clamp(0, 1)
    closest = (last + t[:, None] * seg - ends).norm(dim=1)  # NaN for traces without an end
    dist = (new - ends).norm(dim=1)
    c = env.config
    has_end = torch.isfinite(dist)
    passed = closest <= c.end_radius
    so_far = torch.minimum(nearest, closest)
    near = (so_far <= slack) & (so_far < start_dist - 0.5)
    behind = ((ends - new) * seg).sum(1) < 0
    away = near & ((dist > so_far + 0.5) | behind)
    free = active & has_end & (env.stop_reason != END_REACHED)
    env.stop_reason[free & passed] = END_REACHED
    env.stop_reason[free & ~passed & away] = PASSED_END
    nearest.copy_(torch.where(has_end & active, torch.minimum(nearest, closest), nearest))


def _revisited(env: TrackingEnv, config: TrackConfig, active: torch.Tensor) -> torch.Tensor:
    """Running episodes now within ``revisit_radius`` of their own older path."""
    traj, steps = env.trajectory, env.steps
    idx = torch.arange(traj.shape[1], device=traj.device)
    old = idx[None, :] < (steps - config.revisit_lag)[:, None]  # (B, T)
    d = (traj - env.positions[:, None]).norm(dim=2)
    d = torch.where(old & torch.isfinite(d), d, torch.full_like(d, float("inf")))
    return active & (d.min(1).values <= config.revisit_radius)


def track_iter(policy: BetaPolicy, image: np.ndarray, starts, ends=None, config: TrackConfig | None = None,
               branches_of: Sequence[np.ndarray | None] | None = None, device="cpu",
               live: bool = True, directions=None) -> Iterator[Progress]:
    """Trace from every start point together; yield :class:`Progress` after each step
    with ``metrics["traces"]``: the list of :class:`Trace` so far. Returns the final list.

    ``image``: (H, W) float, prepared with :func:`~.prepare.prepare_image`; or (B, H, W),
    one image per start (batch evaluation). ``live=False`` leaves the traces out of the
    progress reports (they cost O(steps) each).
    ``starts``/``ends``: (B, 2) (y, x); an end of NaN (or no ``ends``) never ends a trace.
    ``branches_of[i]``: the existing trace (N, 2) that start ``i`` branches from, or None.
    ``directions`` (B, 2): the heading (dy, dx) of each start; a NaN row, or no
    ``directions``, lets the tracker choose it along the ridge (towards the end when one
    is given; see :mod:`.heading`). A short stub of visited path is drawn behind each
    start (not for branch starts), so the agent never starts by walking backwards.
    Every trace's ``meta`` holds its ``heading``, ``heading_chosen`` (why),
    ``width_px``, ``has_end``, ``reached_end`` (its path passed within ``end_radius`` of
    the end) and ``end_distance_px`` (its closest approach; NaN without an end).
    Closing the generator (Stop) keeps every trace as it is, with reason ``stopped``.
    """
    config = config or TrackConfig()
    image = np.asarray(image, np.float32)
    starts = np.asarray(starts, np.float64).reshape(-1, 2)
    if len(starts) == 0:
        raise InputError("No start points: add at least one point on a structure to trace.")
    ends = np.full_like(starts, np.nan) if ends is None else np.asarray(ends, np.float64).reshape(-1, 2)
    if len(ends) != len(starts):
        raise InputError(f"{len(starts)} start points but {len(ends)} end points: give one end per start, or none.")
    if image.ndim == 3 and len(image) != len(starts):
        raise InputError(f"{len(image)} images for {len(starts)} start points: give one image, or one per start.")
    if config.check_starts:
        for i, img in enumerate(image if image.ndim == 3 else [image]):
            check_starts(img, starts[i : i + 1] if image.ndim == 3 else starts)
    policy_cfg = policy.arch["kwargs"]
    env_config = EnvConfig(max_steps=config.max_steps, end_radius=config.end_radius, scale=config.scale,
                           max_displacement=policy_cfg["max_displacement"], view_size=policy_cfg["view_size"])
    env = TrackingEnv(env_config, device)
    policy = policy.to(device).eval()
    if directions is not None:
        directions = np.asarray(directions, np.float64).reshape(-1, 2)
        if len(directions) != len(starts):
            raise InputError(f"{len(starts)} start points but {len(directions)} directions: give one per start.")
    branches = list(branches_of or []) + [None] * (len(starts) - len(branches_of or []))
    heads = [directions_of(image[i] if image.ndim == 3 else image, starts[i : i + 1], ends[i : i + 1],
                           None if directions is None else directions[i : i + 1])[0] for i in range(len(starts))]
    env.reset(image, starts=starts, ends=ends, initial_directions=np.stack([h["heading"] for h in heads]))
    for i, existing in enumerate(branches):
        if existing is not None and len(existing) > 1:
            env.mark_visited(i, torch.as_tensor(np.asarray(existing, np.float32), device=env.device))
        elif config.stub_length > 0:
            stub = stub_behind(starts[i], heads[i]["heading"], config.stub_length)
            env.mark_visited(i, torch.as_tensor(stub.astype(np.float32), device=env.device))
    obs = env.refresh_observation()
    last = env.positions.clone()
    nearest_end = torch.full((len(starts),), float("inf"), device=env.device)
    start_dist = (env.positions - env.ends).norm(dim=1)
    slack = config.end_slack if config.end_slack is not None else 2 * config.end_radius + env_config.max_displacement
    n = len(starts)
    entropies = torch.full((n, config.max_steps), float("nan"), device=env.device)
    over = torch.zeros(n, dtype=torch.long, device=env.device)

    def traces() -> list[Trace]:
        pts = env.traces()
        ent = entropies.cpu().numpy()
        reasons = env.stop_reason.cpu().numpy()
        closest_end = torch.minimum(nearest_end, (env.positions - env.ends).norm(dim=1)).cpu().numpy()
        out = []
        for i, p in enumerate(pts):
            h = heads[i]
            meta = {"heading": [float(v) for v in h["heading"]], "heading_chosen": h["why"],
                    "width_px": h["width_px"], "has_end": bool(np.isfinite(ends[i]).all()),
                    "reached_end": int(reasons[i]) == END_REACHED,
                    "end_distance_px": float(closest_end[i]) if np.isfinite(ends[i]).all() else float("nan")}
            out.append(Trace(p, ent[i, : len(p) - 1].copy(), REASONS[int(reasons[i])], meta=meta))
        return out

    step = 0
    try:
        with torch.no_grad():
            while not bool(env.done.all()):
                active = ~env.done
                out = policy.act(obs.actor, deterministic=True)
                k = env.steps.clamp(max=config.max_steps - 1)
                entropies[active, k[active]] = out.entropy[active].float()
                result = env.step(out.displacement)
                obs, step = result.observation, step + 1
                _stop_at_end(env, last, active, nearest_end, slack, start_dist)
                last = env.positions.clone()
                still = env.stop_reason == RUNNING
                over = _entropy_run(over, out.entropy.float(), config.entropy_threshold, active)
                if config.entropy_threshold is not None:
                    env.stop_reason[still & (over >= config.entropy_steps)] = UNCERTAIN
                env.stop_reason[_revisited(env, config, still & (env.stop_reason == RUNNING))] = REVISIT
                done = int(env.done.sum())
                yield Progress(step, config.max_steps, f"step {step}: {done}/{n} traces finished",
                               {"traces": traces()} if live else {})
    finally:
        env.stop_reason[env.stop_reason == RUNNING] = STOPPED
    return traces()


def track(image, starts, ends=None, policy: BetaPolicy | None = None, config: TrackConfig | None = None,
          branches_of=None, device="cpu", directions=None) -> list[Trace]:
    """Trace every start point to its end; see :func:`track_iter`. Without ``policy``
    the current version of the shipped/user ``tracking`` model is used."""
    if policy is None:
        from .model import load_tracker

        policy, _meta = load_tracker()
    return collect(track_iter(policy, image, starts, ends, config, branches_of, device, live=False,
                              directions=directions))[1]
