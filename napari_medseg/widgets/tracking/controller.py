"""The Axon tracking widget's controller: settings and actions, no Qt widgets.

The dock's buttons call these methods, and so can the napari console
(``widget.controller.track(block=True)``). See docs/widgets/tracking.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Points, Shapes

from ...core.device import select_device
from ...core.errors import InputError, MedsegError, NotACheckpointError
from ...core.options import defaults
from ...core.jobs import Progress
from ...core.registry import Registry
from ...core.runstate import find_interrupted_runs
from ...methods.tracking import prepare, swc
from ...methods.tracking.heading import heading_from_point
from ...methods.tracking.model import MODEL_NAME, policy_from_entry, resume_tracking, train_tracking
from ...methods.tracking.options import DEFAULTS as _DEFAULTS, FinetuneOptions, TrackOptions, TrainOptions
from ...methods.tracking.ppo import PPOConfig
from ...methods.tracking.synthetic import check_setting
from ...methods.tracking.track import TrackConfig, track_iter
from .._common import SMALL_ENOUGH_TO_PAINT
from .._controller import Controller
from .._runner import JobRunner
from .plot import TraceLayers
from .rounds import FinetuneRounds

BRANCH_RADIUS = 2.0  # px: a start this close to an existing trace continues it as a branch
DIRECTION_RADIUS = 6.0  # px: a direction line starting this close to a start gives its heading
NO_CHANNEL = -1  # magicgui emits no change for a None choice
CHANNELS = [("none (choose one)", NO_CHANNEL), ("0 red", 0), ("1 green", 1), ("2 blue", 2)]
# the CLI's defaults (methods/tracking/options.py): one source for both
_TRACK, _FINETUNE, _TRAIN = defaults(TrackOptions), defaults(FinetuneOptions), defaults(TrainOptions)


@dataclass
class TrackSettings:
    """Everything a button press uses; the widget's controls mirror it."""

    image: Image | None = None
    starts: Points | None = None
    ends: Points | None = None  # optional: one end per start, same order
    directions: Shapes | None = None  # optional lines: first vertex on a start, second along the fibre
    model: str = MODEL_NAME
    version: int | None = None  # None: the current version
    channel: int | None = None  # RGB layers only
    project: bool = False  # max projection of a 3D layer
    invert: bool = False
    scale: float = _TRACK["scale"]
    max_steps: int = _TRACK["max_steps"]
    device: str = "auto"
    threshold: float = _DEFAULTS["threshold"]
    stop_uncertain: bool = False
    entropy_steps: int = _TRACK["entropy_steps"]
    fit_ridge: bool = True  # move finished traces across the fibre onto its ridge (methods/tracking/fitting.py)
    symmetries: int = _TRACK["symmetries"]  # each step averaged over this many turns/mirrors of the views
    colormap: str = "viridis"
    limits: tuple = (-6.0, 0.0)
    finetune_updates: int = _FINETUNE["updates"]
    setting: str = _TRAIN["setting"]
    train_updates: int = _TRAIN["updates"]
    train_imitation: int = _TRAIN["imitation"]  # of the updates, the first this many imitate the centreline
    train_recovery: float = _TRAIN["recovery"]  # share of imitation episodes started beside their fibre
    train_symmetry_augment: bool = _TRAIN["symmetry_augment"]  # imitation pairs turned/mirrored at random


class TrackingController(FinetuneRounds, Controller):
    """Scriptable state and actions of the Axon tracking widget."""

    def __init__(self, viewer, runner: JobRunner, registry: Registry | None = None):
        super().__init__()
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = TrackSettings()
        self.layers = TraceLayers(viewer, self.settings, on_change=lambda: self._emit("traces"))
        self.rounds: list[dict] = []
        self.train_history: list[dict] = []
        self.last_batch: list[int] = []
        self._latest = None
        self._rollback: list[tuple[str, int]] = []

    @property
    def records(self):
        return self.layers.records

    def current_traces(self):
        return self.layers.current()

    # ------------------------------------------------------------- plumbing
    def set(self, **changes):
        """Change settings (as the controls do); a new image prefills from its metadata."""
        for k, v in changes.items():
            if not hasattr(self.settings, k):
                raise AttributeError(f"no setting {k!r}")
            setattr(self.settings, k, v)
        if "image" in changes:
            self._prefill(changes["image"])
        if {"model", "version"} & changes.keys():
            self.apply_model_defaults()
        self._emit("settings")
        if {"threshold", "limits", "colormap"} & changes.keys():
            self.layers.refresh_overlay()

    def _prefill(self, layer):
        meta = dict((layer.metadata or {}).get("tracking", {})) if layer is not None else {}
        s = self.settings
        s.channel = meta.get("channel") if layer is not None and layer.rgb else None
        s.project = _is3d(layer) and meta.get("project", "max") == "max"  # the paper's choice for stacks
        s.invert, s.scale = bool(meta.get("invert", False)), float(meta.get("scale", 1.0))

    def apply_model_defaults(self):
        """The model's suggested entropy threshold (and colour range) if it has one."""
        try:
            metrics = self.entry().meta.get("metrics", {}) or {}
        except MedsegError:
            return
        s, thr = self.settings, metrics.get("entropy_threshold")
        if isinstance(thr, (int, float)) and math.isfinite(thr):  # otherwise leave the user's choice
            # highlight only: as a stopping rule the midpoint also stops good traces at
            # their uncertain first steps and bends; the user ticks the box to stop on it
            s.threshold = round(float(thr), 3)
        a, b = metrics.get("val_entropy_within"), metrics.get("val_entropy_outside")
        if isinstance(a, float) and isinstance(b, float) and math.isfinite(a) and math.isfinite(b) and b > a:
            gap = max(b - a, 0.5)
            s.limits = (math.floor(a - gap), math.ceil(b + gap))


    # ---------------------------------------------------------------- input
    def entry(self):
        name = self.settings.model or MODEL_NAME
        if name not in self.registry.names():
            raise InputError(f"No model called {name!r} yet: train one under 'Train from scratch' "
                             "(or `napari-medseg train tracking`), or pick another model.")
        return self.registry.get(name, self.settings.version)

    def device(self):
        return select_device(None if self.settings.device == "auto" else self.settings.device)

    def policy(self):
        """The picked agent; a model of another method gives one clear message."""
        entry = self.entry()
        try:
            return policy_from_entry(entry, self.device())
        except NotACheckpointError as exc:
            raise NotACheckpointError(f"{entry.label}: {exc}") from None

    def prepared_image(self) -> np.ndarray:
        s, layer = self.settings, self.settings.image
        if layer is None:
            raise InputError("Open or pick an image layer first.")
        data = layer.data[0] if layer.multiscale else layer.data
        if int(np.prod(data.shape)) > 3 * SMALL_ENOUGH_TO_PAINT:
            raise InputError(f"The image is too large to track in memory ({data.shape}); crop it first.")
        if _is3d(layer) and not s.project:
            raise InputError(f"This is a 3D stack (shape {data.shape}): the tracker works in 2D. Tick 'max projection' "
                             "to trace in its maximum-intensity projection (the paper's choice).")
        return prepare.prepare_image(np.asarray(data), channel=s.channel if layer.rgb else None,
                                     project="max" if s.project else None, invert=s.invert, rgb=bool(layer.rgb))

    def _to_pixels(self, points_layer) -> np.ndarray:
        """Points layer data -> (y, x) pixels of the image (through world coordinates)."""
        img = self.settings.image
        world = np.asarray(points_layer.data, float) * points_layer.scale + points_layer.translate
        return (world[:, -2:] - np.asarray(img.translate)[-2:]) / np.asarray(img.scale)[-2:]

    def start_directions(self, starts: np.ndarray) -> np.ndarray:
        """(B, 2) headings from the direction lines (a line whose first vertex lies within
        ``DIRECTION_RADIUS`` px of a start heads towards its second vertex); NaN: auto."""
        out = np.full((len(starts), 2), np.nan)
        lay = self.settings.directions
        if lay is None or not len(lay.data):
            return out
        img = self.settings.image
        for shape in lay.data:
            world = np.asarray(shape, float)[:, -2:] * np.asarray(lay.scale)[-2:] + np.asarray(lay.translate)[-2:]
            px = (world - np.asarray(img.translate)[-2:]) / np.asarray(img.scale)[-2:]
            if len(px) < 2:
                continue
            d = np.linalg.norm(starts - px[0], axis=1)
            i = int(np.argmin(d))
            if d[i] <= DIRECTION_RADIUS:
                out[i] = heading_from_point(starts[i], px[1])
        return out

    def fit_colours(self):
        """Set the colour range to the 2nd..98th percentile of the overlay's entropies."""
        over = self.layers.overlay_layer()
        if over is None or not len(over.features):
            return self._say("Track something first: there are no entropies to fit.", error=True)
        lo, hi = np.percentile(over.features["entropy"], [2, 98])
        self.set(limits=(round(float(lo), 2), round(float(max(hi, lo + 0.01)), 2)))

    # --------------------------------------------------------------- track
    def track(self, block: bool = False):
        """Track from every start point (button **Track**); ``block``: wait and return the new traces."""
        return self._run(self._start_track, block)

    def _start_track(self):
        self._check_idle()
        s = self.settings
        image = self.prepared_image()
        if s.starts is None or len(s.starts.data) == 0:
            raise InputError("No start points: pick a Points layer with at least one point on a structure to trace.")
        starts = self._to_pixels(s.starts)
        ends = self._to_pixels(s.ends) if s.ends is not None and len(s.ends.data) else None
        if ends is not None and len(ends) != len(starts):
            raise InputError(f"{len(starts)} start points but {len(ends)} end points: give one end per start "
                             "(same order), or pick no end points.")
        prepare.check_starts(image, starts)
        directions = self.start_directions(starts)
        policy, _ = self.policy()
        existing = self.current_traces()
        branches, ids = [], []
        for st in starts:  # a start on an existing trace continues it as a branch
            hit = self.layers.nearest(st, existing, BRANCH_RADIUS)
            branches.append(None if hit is None else hit[2])
            ids.append(self.layers.new(st[None], parent=None if hit is None else hit[:2]).id)
        config = TrackConfig(max_steps=s.max_steps, entropy_threshold=s.threshold if s.stop_uncertain else None,
                             entropy_steps=s.entropy_steps, scale=s.scale, check_starts=False,
                             fit_ridge=s.fit_ridge, symmetries=s.symmetries)
        gen = self._track_job(track_iter(policy, image, starts, ends, config, branches, self.device(),
                                         directions=directions))
        self.last_batch = ids
        # a failure keeps the partial traces too; the runner shows the message
        return self.runner.start(gen, on_progress=lambda p: self._track_progress(ids, p),
                                 on_done=lambda r: self._track_done(ids, r),
                                 on_error=lambda _e: (self._track_done(ids, None), setattr(self, "_result", None)))

    def _track_job(self, inner):
        """Pass the traces on aside, so the runner's metrics line stays short."""
        total = 1
        try:
            while True:
                try:
                    p = next(inner)
                except StopIteration as stop:  # the bar ends full, even if the traces ended early
                    self._latest, n = stop.value, len(stop.value)
                    yield Progress(total, total, "done", {"finished": f"{n}/{n}"})
                    return stop.value
                total = p.total
                self._latest = traces = p.metrics["traces"]
                done = sum(t.stop_reason != "running" for t in traces)
                last = [float(t.entropy[-1]) for t in traces if t.stop_reason == "running" and len(t.entropy)]
                shown = {"finished": f"{done}/{len(traces)}", **({"entropy": float(np.mean(last))} if last else {})}
                yield Progress(p.step, p.total, p.message, shown)
        finally:
            inner.close()

    def _update(self, ids, traces, stopped=False):
        for tid, t in zip(ids, traces or []):
            rec = self.records[tid]
            rec.tracked, rec.entropy = np.array(t.points, np.float64), np.array(t.entropy, np.float64)
            rec.meta = dict(t.meta)
            rec.stop_reason = "stopped" if stopped and t.stop_reason == "running" else t.stop_reason

    def _track_progress(self, ids, _p):
        if self.layers.due():
            self._update(ids, self._latest)
            self.layers.draw(ids)

    def _track_done(self, ids, result):
        self._update(ids, result if result is not None else self._latest, stopped=result is None)
        self._latest = None
        self.layers.draw(ids)
        self._result = [self.records[t] for t in ids]
        self._emit("traces")
        self.message = self.summary(ids)
        self._emit("message", self.message)

    def summary(self, ids=None) -> str:
        return self.layers.summary(self.last_batch if ids is None else ids)

    # ------------------------------------------------------------------ SWC
    def export_swc(self, path):
        """Write the traces layer (branches as SWC parent links) to ``path``."""
        try:
            items = self.current_traces()
            if not items:
                raise InputError("There are no traces to export: track or import some first.")
            self.layers.write_swc(path, items)
        except MedsegError as exc:
            return self._say(str(exc), error=True)
        self._say(f"Exported {len(items)} traces to {path}")
        return path

    def import_swc(self, path):
        """Add the traces of an SWC file to the traces layer (a broken file changes nothing)."""
        try:
            forest = swc.read_swc(path)
        except MedsegError as exc:
            return self._say(str(exc), error=True)
        ids = self.layers.add_forest(forest)
        self._emit("traces")
        self._say(f"Imported {len(ids)} traces from {path}")
        return [self.records[t] for t in ids]

    # ---------------------------------------------------------------- train
    def train(self, setting: str | None = None, updates: int | None = None, block: bool = False, **ppo):
        """Train a new agent on synthetic images (button **Train from scratch**): PPO, after
        ``settings.train_imitation`` updates of imitating the centreline (DAgger) if that is > 0."""

        def start():
            self._check_idle()
            name = setting or self.settings.setting
            check_setting(name)  # the same rule generate_many draws by, refused before the job starts
            cfg = PPOConfig(updates=updates or self.settings.train_updates, device=str(self.device()),
                            imitation_updates=self.settings.train_imitation,
                            imitation_recovery=self.settings.train_recovery,
                            imitation_symmetries=self.settings.train_symmetry_augment,
                            imitation_steps=_TRAIN["imitation_steps"]).replace(**ppo)
            self.train_history = []
            self._emit("train_start")
            return self.runner.start(train_tracking(self.registry, cfg, setting=name), on_progress=self._train_progress,
                                     on_done=self._train_done)

        return self._run(start, block)

    def continue_training(self, block: bool = False):
        """Continue the newest interrupted (killed) training run of ``tracking`` with its own
        settings (button **Continue interrupted run**; ``napari-medseg train tracking --resume``)."""

        def start():
            self._check_idle()
            runs = [r for r in find_interrupted_runs(MODEL_NAME) if r["settings"].get("resumable")]
            if not runs:
                raise InputError("There is no interrupted tracking training to continue.")
            self.train_history = []
            self._emit("train_start")
            self._say(f"Continuing run {runs[0]['folder'].name} from update {runs[0]['step']} of "
                      f"{runs[0]['total_steps']}")
            return self.runner.start(resume_tracking(self.registry, runs[0]["folder"]),
                                     on_progress=self._train_progress, on_done=self._train_done)

        return self._run(start, block)

    def _train_progress(self, p):
        row = {"update": p.step, **{k: v for k, v in p.metrics.items() if isinstance(v, (int, float))}}
        self.train_history.append(row)
        self._emit("train", row)

    def _train_done(self, result):
        new = self.registry.get(MODEL_NAME) if MODEL_NAME in self.registry.names() else None
        self._result = result
        self.settings.version = None
        self._emit("settings")
        if new is not None:
            coverage = new.meta.get("metrics", {}).get("val_coverage_pct", math.nan)
            self._say(f"Trained {new.label}: validation coverage {coverage:.1f} %")


def _is3d(layer) -> bool:
    return layer is not None and not layer.rgb and layer.ndim == 3
