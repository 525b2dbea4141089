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

With an end point given (and ``TrackConfig.both_ways``, the default), the fibre is also
traced from its end towards its start, in the same batch (leaving the end the way the
fibre goes when the end is a fibre's tip, else towards the start). When the two traces
meet (a new point of one comes within ``end_radius`` of the other's path, the two moving
in opposite directions there), the trace from the end stops. If the start's trace then
does not reach its end by itself, the result is the start's path up to the meeting
followed by the end's path reversed: it reaches the end (``meta["joined"]``).
A trace that takes the wrong branch at a junction is met by the one coming from the
end, which has only that junction's other branch to follow back.

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

from .env import END_REACHED, REVISIT_LAG, REVISIT_RADIUS, RUNNING, STOP_REASONS, EnvConfig, TrackingEnv
from .heading import choose_heading, directions_of, stub_behind
from . import symmetry
from .lookahead import Lookahead, Reconsider
from .policy import BetaPolicy
from .prepare import check_starts

UNCERTAIN, REVISIT, STOPPED, PASSED_END = 4, 5, 6, 8
TIP_RATIO = 2.0  # a trace from an end at a fibre's tip leaves the way the ridge continues (heading.choose_heading)
REASONS = {**STOP_REASONS, UNCERTAIN: "uncertain", REVISIT: "revisit", STOPPED: "stopped",
           PASSED_END: "passed the end"}


@dataclass(frozen=True)
class TrackConfig:
    max_steps: int = 200
    end_radius: float = 3.0
    entropy_threshold: float | None = None  # None: never stop on entropy
    entropy_steps: int = 5  # k consecutive steps above the threshold
    revisit_radius: float = REVISIT_RADIUS
    revisit_lag: int = REVISIT_LAG  # path points younger than this many steps do not count
    scale: float = 1.0  # window scale (1.5 on the paper's real data)
    check_starts: bool = True  # refuse starts outside the image or on blank background
    stub_length: float = 6.0  # px of "visited" path drawn behind each start, opposite its heading
    end_slack: float | None = None  # px; None: 2 * end_radius + the largest step (see _stop_at_end)
    both_ways: bool = True  # with an end given, also trace from the end and join where the two meet
    meet_cos: float = -0.5  # the two traces meet only where their steps point opposite ways (cos below this)
    fit_ridge: bool = True  # once finished, move each point across the fibre onto its ridge (.fitting)
    lookahead: Lookahead | None = None  # where the agent is unsure, try alternatives first (.lookahead)
    symmetries: int = 1  # each step averaged over this many symmetries of the views: 1, 2, 4 or 8 (.symmetry)


@dataclass
class Trace:
    """One traced structure: subpixel points (N, 2) (y, x), start first."""

    points: np.ndarray
    entropy: np.ndarray  # (N - 1,): entropy[i] of the step that left points[i]
    stop_reason: str = "running"
    parent: tuple[int, int] | None = None  # (trace index, point index) it branches from
    meta: dict = field(default_factory=dict)
    raw_points: np.ndarray | None = None  # the agent's own points, before ridge fitting (None: not fitted)

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


def _act_running(policy: BetaPolicy, actor_obs: torch.Tensor, active: torch.Tensor, symmetries: int = 1):
    """The deterministic actions (B, 2) and entropies (B,) of the running episodes only
    (the actor is half the time of a step; finished rows get 0 and are not moved)."""
    if bool(active.all()):
        displacement, entropy = symmetry.steer(policy, actor_obs, symmetries)
        return displacement.float(), entropy.float()
    b = actor_obs.shape[0]
    displacement = torch.zeros((b, 2), device=actor_obs.device)
    entropy = torch.zeros(b, device=actor_obs.device)
    d, e = symmetry.steer(policy, actor_obs[active], symmetries)
    displacement[active] = d.float()
    entropy[active] = e.float()
    return displacement, entropy


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
    the end, or it was joined), ``joined`` (it is the join with the trace from its end),
    ``met_trace_from_end`` and ``end_distance_px`` (its closest approach; NaN without an
    end). With ``config.fit_ridge`` the finished traces are fitted onto the ridge
    (:mod:`.fitting`; ``Trace.raw_points`` keeps the agent's own points and
    ``meta["fit_shift_px"]`` the mean move); the traces yielded while tracking are not.
    Closing the generator (Stop) keeps every trace as it is, with reason ``stopped``.
    """
    config = config or TrackConfig()
    image = np.asarray(image, np.float32)
    starts = np.asarray(starts, np.float64).reshape(-1, 2)
    if len(starts) == 0:
        raise InputError("No start points: add at least one point on a structure to trace.")
    if config.symmetries not in symmetry.CHOICES:
        raise InputError(f"symmetries must be one of {symmetry.CHOICES} (turns and mirrors of the views each step "
                         f"is averaged over); got {config.symmetries!r}.")
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
                           max_displacement=policy_cfg["max_displacement"], view_size=policy_cfg["view_size"],
                           agent_input=policy.agent_input)
    env = TrackingEnv(env_config, device)
    policy = policy.to(device).eval()
    if directions is not None:
        directions = np.asarray(directions, np.float64).reshape(-1, 2)
        if len(directions) != len(starts):
            raise InputError(f"{len(starts)} start points but {len(directions)} directions: give one per start.")
    branches = list(branches_of or []) + [None] * (len(starts) - len(branches_of or []))
    n = len(starts)
    img_of = (lambda i: image[i]) if image.ndim == 3 else (lambda i: image)
    heads = [directions_of(img_of(i), starts[i : i + 1], ends[i : i + 1],
                           None if directions is None else directions[i : i + 1])[0] for i in range(n)]
    # episodes n.. trace from the ends back towards the starts (see the module docstring)
    back = [i for i in range(n) if config.both_ways and np.isfinite(ends[i]).all()
            and np.linalg.norm(ends[i] - starts[i]) > config.end_radius]
    for i in back:  # from a fibre's tip the way the fibre goes, else towards the start
        v, why, width = choose_heading(img_of(i), ends[i], starts[i], tip_ratio=TIP_RATIO)
        heads.append({"heading": v, "why": why, "width_px": width})
    ep_image = image if image.ndim == 2 else np.concatenate([image, image[back]])
    ep_starts, ep_ends = np.concatenate([starts, ends[back]]), np.concatenate([ends, starts[back]])
    env.reset(ep_image, starts=ep_starts, ends=ep_ends, initial_directions=np.stack([h["heading"] for h in heads]))
    for i in range(len(ep_starts)):
        existing = branches[i] if i < n else None
        if existing is not None and len(existing) > 1:
            env.mark_visited(i, torch.as_tensor(np.asarray(existing, np.float32), device=env.device))
        elif config.stub_length > 0:
            stub = stub_behind(ep_starts[i], heads[i]["heading"], config.stub_length)
            env.mark_visited(i, torch.as_tensor(stub.astype(np.float32), device=env.device))
    obs = env.refresh_observation()
    last = env.positions.clone()
    total = len(ep_starts)
    nearest_end = torch.full((total,), float("inf"), device=env.device)
    start_dist = (env.positions - env.ends).norm(dim=1)
    any_end = bool(torch.isfinite(env.ends).all(1).any())  # without ends there is nothing to stop at
    slack = config.end_slack if config.end_slack is not None else 2 * config.end_radius + env_config.max_displacement
    entropies = torch.full((total, config.max_steps), float("nan"), device=env.device)
    over = torch.zeros(total, dtype=torch.long, device=env.device)
    met = {}  # start index -> (point index on its own trace, point index on the trace from its end)
    second_thoughts = Reconsider(config.lookahead, total) if config.lookahead is not None else None

    def traces() -> list[Trace]:
        pts = env.traces()
        ent = entropies.cpu().numpy()
        reasons = env.stop_reason.cpu().numpy()
        closest_end = torch.minimum(nearest_end, (env.positions - env.ends).norm(dim=1)).cpu().numpy()
        out = []
        for i in range(n):
            p, e, reason = pts[i], ent[i, : len(pts[i]) - 1].copy(), REASONS[int(reasons[i])]
            h = heads[i]
            meta = {"heading": [float(v) for v in h["heading"]], "heading_chosen": h["why"],
                    "width_px": h["width_px"], "has_end": bool(np.isfinite(ends[i]).all()),
                    "reached_end": int(reasons[i]) == END_REACHED, "joined": False, "met_trace_from_end": i in met,
                    "end_distance_px": float(closest_end[i]) if np.isfinite(ends[i]).all() else float("nan")}
            if i in met and int(reasons[i]) not in (RUNNING, END_REACHED):  # it did not get there on its own
                (a, b), k = met[i], n + back.index(i)
                p = np.concatenate([p[: a + 1], pts[k][: b + 1][::-1]])
                eb = ent[k, :b][::-1]
                join = e[a - 1] if a > 0 else (eb[0] if len(eb) else 0.0)
                e = np.concatenate([e[:a], [join], eb])
                meta.update(reached_end=True, joined=True, end_distance_px=0.0, from_end_steps=int(b))
                reason = REASONS[END_REACHED]
            out.append(Trace(p, e, reason, meta=meta))
        return out

    step = 0
    try:
        while not bool(env.done.all()):
            with torch.no_grad():  # per step, not across the yield: the caller's grad mode stays its own
                active = ~env.done
                displacement, entropy = _act_running(policy, obs.actor, active, config.symmetries)
                k = env.steps.clamp(max=config.max_steps - 1)
                entropies[active, k[active]] = entropy[active]
                if second_thoughts is not None:
                    displacement = second_thoughts(policy, env, displacement, entropy, active)
                result = env.step(displacement)
                obs, step = result.observation, step + 1
                if any_end:
                    _stop_at_end(env, last, active, nearest_end, slack, start_dist)
                _meet_from_ends(env, last, active, n, back, met, heads, config)
                last = env.positions.clone()
                still = env.stop_reason == RUNNING
                over = _entropy_run(over, entropy, config.entropy_threshold, active)
                if config.entropy_threshold is not None:
                    env.stop_reason[still & (over >= config.entropy_steps)] = UNCERTAIN
                env.stop_reason[env.revisited(still & (env.stop_reason == RUNNING), config.revisit_lag,
                                              config.revisit_radius)] = REVISIT
                done = int(env.done[:n].sum())
            yield Progress(step, config.max_steps, f"step {step}: {done}/{n} traces finished",
                           {"traces": traces()} if live else {})
    finally:
        env.stop_reason[env.stop_reason == RUNNING] = STOPPED
    final = traces()
    return _fit_traces(final, image) if config.fit_ridge else final


def _fit_traces(traces: list[Trace], image: np.ndarray) -> list[Trace]:
    """Each finished trace fitted onto its ridge (:mod:`.fitting`), the start (and a joined
    trace's end) kept where it was placed; the agent's own points stay in ``raw_points`` and ``meta["fit_shift_px"]`` is the
    mean distance a point moved."""
    from .fitting import RidgeFitter

    fitters = [RidgeFitter(im) for im in image] if image.ndim == 3 else [RidgeFitter(image)]
    for i, t in enumerate(traces):
        fitted = fitters[i if image.ndim == 3 else 0](t.points, t.meta.get("width_px", 1.0),
                                                      keep_last=bool(t.meta.get("joined")))
        t.raw_points, t.points = t.points, fitted
        moved = np.linalg.norm(fitted - t.raw_points, axis=1) if len(fitted) else np.zeros(0)
        t.meta["fit_shift_px"] = float(moved.mean()) if len(moved) else 0.0
    return traces


def _tangents(points):
    """Central differences along a polyline (N, 2), numpy or torch (one-sided at its ends)."""
    n = len(points)
    return points[[min(i + 1, n - 1) for i in range(n)]] - points[[max(i - 1, 0) for i in range(n)]]


def traces_meet(a, b, radius: float = 3.0, cos_limit: float = -0.5) -> bool:
    """Whether two traces of one fibre, run from its two ends, meet: a point of one within
    ``radius`` px of a point of the other, the two moving opposite ways there (the rule
    :func:`track_iter` joins its traces by; also used to give a baseline the same rule)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return False
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    ta, tb = _tangents(a), _tangents(b)
    cos = (ta @ tb.T) / np.maximum(np.linalg.norm(ta, axis=1)[:, None] * np.linalg.norm(tb, axis=1)[None], 1e-9)
    return bool(((d <= radius) & (cos < cos_limit)).any())


def _meet_from_ends(env: TrackingEnv, last: torch.Tensor, active: torch.Tensor, n: int, back: list[int],
                    met: dict, heads: list[dict], config: TrackConfig) -> None:
    """Join each start's trace with the trace from its end where the two meet: a new point of
    one within ``end_radius`` of the other's path, their steps pointing opposite ways there
    (cos < ``meet_cos``; a crossing fibre is not a meeting). A trace from the end that
    reaches the start has met it too; a start's trace that reached its end needs no
    partner. ``met[i]`` = (point index on trace i, point index on the trace from its end).
    At a meeting only the trace from the end stops: the start's trace goes on, and the
    join is used only if it does not reach its end by itself.
    A trace from the end that reaches the start the same way the start's trace leaves
    (the two ends of a U close together) has not met it."""
    traj, steps, reason = env.trajectory, env.steps, env.stop_reason
    for j, i in enumerate(back):
        k = n + j
        if i in met:
            continue
        if int(reason[i]) == END_REACHED:  # reached on its own
            reason[k] = torch.where(reason[k] == RUNNING, torch.full_like(reason[k], STOPPED), reason[k])
            continue
        if int(reason[k]) == END_REACHED and bool(active[k]):  # the trace from the end came to the start
            v = env.positions[k] - last[k]
            own = traj[i, 1] - traj[i, 0] if int(steps[i]) >= 1 else torch.as_tensor(
                np.asarray(heads[i]["heading"], np.float32), device=v.device)
            if float((v @ own) / (v.norm() * own.norm()).clamp_min(1e-9)) < config.meet_cos:
                met[i] = (0, int(steps[k]))
        for mover, other in ((i, k), (k, i)):
            if i in met or not bool(active[mover]):
                continue
            v = env.positions[mover] - last[mover]
            if float(v.norm()) < 1e-6:
                continue
            q = traj[other, : int(steps[other]) + 1]
            d = (q - env.positions[mover]).norm(dim=1)
            if len(q) > 1:
                tangent = _tangents(q)
            else:
                tangent = torch.as_tensor(np.asarray(heads[other]["heading"], np.float32), device=q.device)[None]
            cos = (tangent @ v) / (tangent.norm(dim=1) * v.norm()).clamp_min(1e-9)
            ok = (d <= config.end_radius) & (cos < config.meet_cos)
            if bool(ok.any()):
                m = int(torch.where(ok, d, torch.full_like(d, float("inf"))).argmin())
                own = int(steps[mover])
                met[i] = (own, m) if mover == i else (m, own)
        if i in met:  # the trace from the end stops; the start's trace goes on, and is kept alone if it
            reason[k] = END_REACHED  # reaches its end by itself (the join is the fallback)


def track(image, starts, ends=None, policy: BetaPolicy | None = None, config: TrackConfig | None = None,
          branches_of=None, device="cpu", directions=None) -> list[Trace]:
    """Trace every start point to its end; see :func:`track_iter`. Without ``policy``
    the current version of the shipped/user ``tracking`` model is used."""
    if policy is None:
        from .model import load_tracker

        policy, _meta = load_tracker()
    return collect(track_iter(policy, image, starts, ends, config, branches_of, device, live=False,
                              directions=directions))[1]
