"""The tracking environment of Dai et al. 2019 (§3.1), batched on the device.

Many episodes step together as tensors: subpixel agent positions (B, 2) in (y, x),
the historical path as a raster per episode, 4 stacked timesteps of egocentric views.
Hand-written: MONAI has no RL environments.

Per timestep the actor sees 3 views (11×11 window, 21×21 window downsampled to
11×11, historical path); the asymmetric critic also sees the centreline view. With 4
timesteps that is 12 actor and 16 critic channels (Appendix A).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from napari_medseg.core.errors import InputError

from .curves import arc_length, distance_to_polyline
from .reward import step_reward
from .views import egocentric_views, offset_grid, sample_points, window_offsets

RUNNING, END_REACHED, IMAGE_EDGE, MAX_STEPS, OFF_TRACK = 0, 1, 2, 3, 7
#: The revisit rule's defaults (``TrackConfig.revisit_lag`` / ``revisit_radius`` and the lookahead use
#: them): path points younger than ``REVISIT_LAG`` steps do not count; within ``REVISIT_RADIUS`` px is back.
REVISIT_LAG, REVISIT_RADIUS = 4, 1.0
STOP_REASONS = {RUNNING: "running", END_REACHED: "end reached", IMAGE_EDGE: "image edge", MAX_STEPS: "max steps",
                OFF_TRACK: "off track"}


@dataclass(frozen=True)
class EnvConfig:
    window: int = 11  # full-resolution window (px)
    coarse_window: int = 21  # window downsampled to view_size
    view_size: int = 11
    path_window: int = 11  # window of the historical-path view
    centreline_window: int = 11  # window of the critic's centreline view
    history: int = 4  # stacked timesteps
    scale: float = 1.0  # stretches every window (1.5 on the paper's real data)
    max_displacement: float = 4.0  # actions are displacements in [-4, 4] px per axis
    max_steps: int = 200
    end_radius: float = 3.0  # the episode ends this close to the far end
    reward_samples: int = 100
    reward_sigma: float = 1.0  # width of the centreline image I_G (px)
    still_threshold: float = 1e-3  # shorter steps count as not moving (-1)
    start_direction_length: float = 4.0  # v0 points this far along the centreline
    # training only (needs the centreline): the episode ends once the agent is this far
    # from the centreline. Not in the paper, which runs every episode to 200 steps; the
    # rewards out there are ~0 and these transitions were most of an early batch.
    off_track: float | None = 8.0
    # not in the paper: px of "visited" path drawn behind each start, opposite its initial
    # direction, as inference does (tracking.heading); 0 leaves the path empty at the start
    start_stub: float = 0.0
    # not in the paper: what the views are sampled from, "image" or "image+ridge"
    # (prepare.agent_input); a policy's own choice, BetaPolicy.agent_input
    agent_input: str = "image"


class Observation(NamedTuple):
    actor: torch.Tensor  # (B, 3 * history, S, S)
    critic: torch.Tensor | None  # (B, 4 * history, S, S); None without centrelines


class StepResult(NamedTuple):
    observation: Observation
    reward: torch.Tensor  # (B,); 0 for episodes that had already ended
    done: torch.Tensor  # (B,) bool: the episode has ended (now or before)
    stop_reason: torch.Tensor  # (B,) int, see STOP_REASONS
    stepped: torch.Tensor  # (B,) bool: the episode was running before this step


def beta_to_displacement(sample: torch.Tensor, max_displacement: float = 4.0) -> torch.Tensor:
    """Policy samples in [0, 1] -> pixel displacements in [-max, max]."""
    return (2.0 * sample - 1.0) * max_displacement


def _as_maps(images, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    t = t.to(device=device, dtype=torch.float32)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or min(t.shape[-2:]) < 2:
        raise InputError(f"images must be (H, W) or (B, H, W) greyscale, got shape {tuple(t.shape)}")
    return t[:, None]


def _start_direction(line: np.ndarray, length: float) -> np.ndarray:
    """Unit vector from the first centreline point towards the point ``length`` px along."""
    s = arc_length(line)
    j = min(int(np.searchsorted(s, length)), len(line) - 1)
    v = line[j] - line[0]
    n = np.linalg.norm(v)
    return v / n if n > 0 else np.zeros(2)


def check_agent_input(policy, env: "TrackingEnv") -> None:
    """An agent (:class:`~.policy.BetaPolicy`) runs only on the input it learned on
    (:func:`~.prepare.agent_input`)."""
    if env.config.agent_input != policy.agent_input:
        raise ValueError(f"this agent learned on '{policy.agent_input}' views, the environment gives "
                         f"'{env.config.agent_input}': build the EnvConfig with agent_input=policy.agent_input")


class TrackingEnv:
    """Batched axon-tracking episodes on one device."""

    def __init__(self, config: EnvConfig | None = None, device: str | torch.device = "cpu"):
        self.config = config or EnvConfig()
        self.device = torch.device(device)
        c, d = self.config, self.device
        self.offsets = {
            "window": window_offsets(c.window, c.view_size, c.scale, d),
            "coarse": window_offsets(c.coarse_window, c.view_size, c.scale, d),
            "path": window_offsets(c.path_window, c.view_size, c.scale, d),
            "centreline": window_offsets(c.centreline_window, c.view_size, c.scale, d),
        }
        self._grids = {k: offset_grid(v) for k, v in self.offsets.items()}
        # points per step marked on the path raster: spacing <= 0.5 px
        self._path_points = 2 * math.ceil(c.max_displacement * math.sqrt(2)) + 1

    # ------------------------------------------------------------------ reset
    def reset(self, images, centrelines=None, starts=None, ends=None, initial_directions=None, centreline_images=None):
        """Start B episodes.

        ``images``: (B, H, W), or (H, W) / (1, H, W) shared by all episodes.
        ``centrelines``: B polylines (N_i, 2) (y, x), ordered from start to end; they
        give the reward, the critic's view and the default starts, ends and initial
        directions v0. Without them rewards are 0 and ``Observation.critic`` is None.
        ``starts``/``ends`` (B, 2); an end of NaN never ends the episode.
        """
        c, dev = self.config, self.device
        if c.agent_input != "image":
            from .prepare import agent_input

            images = agent_input(images.cpu().numpy() if torch.is_tensor(images) else images, c.agent_input)
        self.images = _as_maps(images, dev)
        h, w = self.shape = tuple(self.images.shape[-2:])
        if centrelines is not None:
            centrelines = [np.asarray(line, np.float64) for line in centrelines]
        n = len(centrelines) if centrelines is not None else (len(starts) if starts is not None else self.images.shape[0])
        if self.images.shape[0] not in (1, n):
            raise InputError(f"{self.images.shape[0]} images for {n} episodes")
        if centrelines is not None:
            starts = np.stack([ln[0] for ln in centrelines]) if starts is None else starts
            ends = np.stack([ln[-1] for ln in centrelines]) if ends is None else ends
            if initial_directions is None:
                initial_directions = np.stack([_start_direction(ln, c.start_direction_length) for ln in centrelines])
            if centreline_images is None or c.off_track:  # rendered once per episode, in numpy
                cap = max(6 * c.reward_sigma + 1, (c.off_track or 0) + 1)
                d = np.stack([distance_to_polyline(ln, (h, w), max_distance=cap)[0] for ln in centrelines])
                if centreline_images is None:
                    centreline_images = np.where(np.isfinite(d), np.exp(-np.nan_to_num(d, posinf=cap) ** 2
                                                                        / (2 * c.reward_sigma**2)), 0.0)
                self.distance_maps = _as_maps(np.where(np.isfinite(d), d, cap), dev) if c.off_track else None
            else:
                self.distance_maps = None
            self.centreline_images = _as_maps(centreline_images, dev)
        else:
            self.centreline_images = self.distance_maps = None
        if starts is None:
            raise InputError("give start points or centrelines")

        def vec(a, fill):
            if a is None:
                a = torch.full((n, 2), fill)
            a = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a, np.float32))
            return a.to(dev, torch.float32).reshape(n, 2).clone()

        self.positions = vec(starts, 0.0)
        self.ends = vec(ends, float("nan"))
        self.previous_action = vec(initial_directions, 0.0)
        self.reversals = torch.zeros(n, dtype=torch.long, device=dev)
        self.steps = torch.zeros(n, dtype=torch.long, device=dev)
        self.stop_reason = torch.zeros(n, dtype=torch.long, device=dev)
        self.trajectory = torch.full((n, c.max_steps + 1, 2), float("nan"), device=dev)
        self.trajectory[:, 0] = self.positions
        self.path = torch.zeros((n, 1, h, w), device=dev)
        self._mark_path(self.positions, self.positions, torch.ones(n, dtype=torch.bool, device=dev))
        if c.start_stub > 0:
            v = torch.nn.functional.normalize(self.previous_action, dim=1)
            t = torch.linspace(c.start_stub, 0.0, max(2, int(round(c.start_stub)) + 1), device=dev)
            for i in range(n):
                if bool(v[i].abs().sum() > 0):
                    self.mark_visited(i, self.positions[i][None] - t[:, None] * v[i][None])
        frame = self._frame()
        self.frames = frame[:, None].repeat(1, c.history, 1, 1, 1)
        return self.observation()

    @property
    def done(self) -> torch.Tensor:
        return self.stop_reason != RUNNING

    @property
    def batch_size(self) -> int:
        return self.positions.shape[0]

    # ------------------------------------------------------------------- step
    def step(self, displacements) -> StepResult:
        """Move every running episode by ``displacements`` (B, 2) px (dy, dx), clamped to
        [-max_displacement, max_displacement]. Ended episodes stay where they are."""
        c = self.config
        a = torch.as_tensor(displacements, dtype=torch.float32, device=self.device).reshape(-1, 2)
        a = a.clamp(-c.max_displacement, c.max_displacement)
        running = ~self.done
        a = torch.where(running[:, None], a, torch.zeros_like(a))
        new = self.positions + a
        if self.centreline_images is not None:
            reward, reversals = step_reward(
                self.centreline_images, self.positions, new, self.previous_action, self.reversals,
                c.reward_samples, c.still_threshold,
            )
            reward = torch.where(running, reward, torch.zeros_like(reward))
            self.reversals = torch.where(running, reversals, self.reversals)
        else:
            reward = torch.zeros(self.batch_size, device=self.device)
        moved = running & (a.norm(dim=1) > c.still_threshold)
        self.previous_action = torch.where(moved[:, None], a, self.previous_action)  # last movement
        self._mark_path(self.positions, new, running)
        self.positions = new
        self.steps = self.steps + running.long()
        idx = self.steps.clamp(max=c.max_steps)
        self.trajectory[running, idx[running]] = new[running]
        self.stop_reason = torch.where(running, self._stop_reason(new), self.stop_reason)
        self.frames = torch.where(
            running[:, None, None, None, None],
            torch.cat([self.frames[:, 1:], self._frame()[:, None]], 1),
            self.frames,
        )
        return StepResult(self.observation(), reward, self.done, self.stop_reason.clone(), running)

    def _stop_reason(self, p: torch.Tensor) -> torch.Tensor:
        h, w = self.shape
        c = self.config
        at_end = (p - self.ends).norm(dim=1) <= c.end_radius  # NaN ends compare False
        outside = (p[:, 0] < 0) | (p[:, 0] > h - 1) | (p[:, 1] < 0) | (p[:, 1] > w - 1)
        reason = torch.full_like(self.steps, RUNNING)
        reason = torch.where(self.steps >= c.max_steps, torch.full_like(reason, MAX_STEPS), reason)
        if self.distance_maps is not None:
            off = sample_points(self.distance_maps, p[:, None, None, :]).reshape(-1) > c.off_track
            reason = torch.where(off, torch.full_like(reason, OFF_TRACK), reason)
        reason = torch.where(outside, torch.full_like(reason, IMAGE_EDGE), reason)
        return torch.where(at_end, torch.full_like(reason, END_REACHED), reason)

    # ----------------------------------------------------------- observation
    def _mark_path(self, p0: torch.Tensor, p1: torch.Tensor, which: torch.Tensor) -> None:
        """Mark the pixels the straight step p0 -> p1 passes through as visited."""
        h, w = self.shape
        t = torch.linspace(0.0, 1.0, self._path_points, device=self.device)
        pts = torch.round(p0[:, None] + t[None, :, None] * (p1 - p0)[:, None]).long()  # (B, K, 2)
        b = torch.arange(self.batch_size, device=self.device)[:, None].expand(-1, pts.shape[1])
        ok = which[:, None] & (pts[..., 0] >= 0) & (pts[..., 0] < h) & (pts[..., 1] >= 0) & (pts[..., 1] < w)
        flat = (b * h + pts[..., 0]) * w + pts[..., 1]
        self.path.view(-1)[flat[ok]] = 1.0

    def mark_visited(self, index: int, polyline: torch.Tensor) -> None:
        """Draw an existing trace (N, 2) into episode ``index``'s historical path (a
        branch start: the agent sees where it has already been)."""
        h, w = self.shape
        seg = polyline[1:] - polyline[:-1]
        n = max(2, int(2 * float(seg.norm(dim=1).max()) + 2)) if len(seg) else 1
        t = torch.linspace(0.0, 1.0, n, device=self.device)
        pts = torch.round(polyline[:-1, None] + t[None, :, None] * seg[:, None]).reshape(-1, 2).long()
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)
        self.path[index, 0, pts[ok, 0], pts[ok, 1]] = 1.0

    def revisited(self, active: torch.Tensor, lag: int = REVISIT_LAG, radius: float = REVISIT_RADIUS) -> torch.Tensor:
        """(B,) bool: ``active`` episodes now within ``radius`` px of their own path older
        than ``lag`` steps (turning back, looping, standing still)."""
        traj, steps = self.trajectory, self.steps
        idx = torch.arange(traj.shape[1], device=traj.device)
        old = idx[None, :] < (steps - lag)[:, None]  # (B, T)
        d = (traj - self.positions[:, None]).norm(dim=2)
        d = torch.where(old & torch.isfinite(d), d, torch.full_like(d, float("inf")))
        return active & (d.min(1).values <= radius)

    def fork(self, index: int, copies: int) -> "TrackingEnv":
        """A new environment of ``copies`` episodes, each a copy of episode ``index`` as it
        is now (position, path raster, stacked views, history), with no end and no
        centreline: for trying several next steps from one state (tracking's lookahead)."""
        c, k = self.config, int(copies)
        out = TrackingEnv.__new__(TrackingEnv)
        out.config, out.device, out.offsets, out._grids = c, self.device, self.offsets, self._grids
        out._path_points, out.shape = self._path_points, self.shape
        out.images = self.images if self.images.shape[0] == 1 else self.images[index : index + 1]
        out.centreline_images = out.distance_maps = None

        def rep(t):
            return t[index : index + 1].repeat(k, *([1] * (t.ndim - 1)))

        out.positions, out.previous_action = rep(self.positions), rep(self.previous_action)
        out.reversals, out.steps, out.trajectory = rep(self.reversals), rep(self.steps), rep(self.trajectory)
        out.path, out.frames = rep(self.path), rep(self.frames)
        out.ends = torch.full((k, 2), float("nan"), device=self.device)
        out.stop_reason = torch.full((k,), RUNNING, dtype=torch.long, device=self.device)
        return out

    def refresh_observation(self) -> Observation:
        """Rebuild the stacked views from the current state (after :meth:`mark_visited`)."""
        self.frames = self._frame()[:, None].repeat(1, self.config.history, 1, 1, 1)
        return self.observation()

    def _frame(self) -> torch.Tensor:
        """The views of one timestep: (B, C, S, S), C = 3, or 4 with the centreline."""
        p, g = self.positions, self._grids
        views = [*egocentric_views(self.images, p, [g["window"], g["coarse"]]),  # one sampling call for both
                 *egocentric_views(self.path, p, [g["path"]])]
        if self.centreline_images is not None:
            views += egocentric_views(self.centreline_images, p, [g["centreline"]])
        return torch.cat(views, 1)

    def observation(self) -> Observation:
        b, t, ch, s, _ = self.frames.shape
        actor = self.frames[:, :, :3].reshape(b, 3 * t, s, s)
        critic = self.frames.reshape(b, ch * t, s, s) if ch == 4 else None
        return Observation(actor, critic)

    def traces(self) -> list[np.ndarray]:
        """The visited positions of each episode, start included: (n_i + 1, 2) arrays."""
        traj = self.trajectory.cpu().numpy()
        return [traj[i, : int(k) + 1] for i, k in enumerate(self.steps.cpu())]
