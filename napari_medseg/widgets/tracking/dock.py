"""Axon tracking widget (Dai et al. 2019): track from start points with a deep-RL agent,
watch each trace grow with its per-step policy entropy, correct, fine-tune, roll back.

The logic lives in :class:`TrackingController` (napari layers, no Qt widgets): the
buttons call its methods and so can the console, e.g.
``w.controller.track(block=True)``. See docs/widgets/tracking.md.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Points, Shapes
from qtpy.QtWidgets import QFileDialog, QLabel, QScrollArea, QVBoxLayout, QWidget
from superqt.utils import ensure_main_thread

from ...core import registry as registry_mod
from ...core.registry import Registry
from ...core.runstate import interrupted_note
from ...methods.tracking.model import MODEL_NAME
from ...methods.tracking.synthetic import TRAINING_CHOICES
from .._common import CURRENT, device_picker, layer_picker, version_choices
from .._runner import JobRunner
from .controller import CHANNELS, NO_CHANNEL, TrackingController, _is3d
from .._plot import LivePlot, section
from .plot import OVERLAY, TRACES, ColorBar

BOUND = ("image", "starts", "ends", "directions", "model", "project", "invert", "scale", "max_steps", "device",
         "threshold", "stop_uncertain", "entropy_steps", "fit_ridge", "finetune_updates", "setting", "train_updates",
         "train_imitation", "train_recovery", "symmetries", "train_symmetry_augment")


class TrackingWidget(QWidget):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__()
        self.viewer, self.runner, self._syncing = napari_viewer, JobRunner(), False
        self.controller = c = TrackingController(napari_viewer, self.runner, registry)
        own = (TRACES, OVERLAY)  # the widget's output layers are never its input
        self.image = layer_picker(napari_viewer, Image, "image", exclude=own)
        self.starts = layer_picker(napari_viewer, Points, "start points", exclude=own)
        self.ends = layer_picker(napari_viewer, Points, "end points", nullable=True, exclude=own)
        # optional: short lines from a start along its fibre (else the heading follows the ridge)
        self.directions = layer_picker(napari_viewer, Shapes, "direction lines", nullable=True, exclude=own)
        self.model = ComboBox(label="model", choices=lambda _w=None: sorted({MODEL_NAME, *c.registry.names()}))
        self.version = ComboBox(label="version", choices=self._versions)
        self.channel = ComboBox(label="channel", choices=CHANNELS)
        self.project = CheckBox(text="max projection (3D stack)")
        self.invert = CheckBox(text="invert (dark structures)")
        self.scale = FloatSpinBox(label="window scale", min=0.25, max=4.0, step=0.25)
        self.max_steps = SpinBox(label="max steps", min=1, max=100_000)
        self.device = device_picker()
        self.lo = FloatSpinBox(label="colour min", min=-100.0, max=100.0, step=0.5)
        self.hi = FloatSpinBox(label="colour max", min=-100.0, max=100.0, step=0.5)
        self.threshold = FloatSpinBox(label="entropy threshold", min=-100.0, max=100.0, step=0.1)
        self.stop_uncertain = CheckBox(text="stop a trace when uncertain")
        self.entropy_steps = SpinBox(label="for k steps", min=1, max=1000)
        self.fit_ridge = CheckBox(text="fit finished traces onto the ridge centre")
        self.symmetries = ComboBox(label="average steps over", choices=[("1 view (the agent alone)", 1),
                                                                        ("2 views", 2), ("4 views", 4),
                                                                        ("8 views (slower)", 8)],
                                   tooltip="each step is the mean of the agent's steps on the image turned by "
                                           "multiples of 90 degrees and mirrored (not in the paper)")
        self.finetune_updates = SpinBox(label="fine-tune updates", min=1, max=100_000)
        self.setting = ComboBox(label="setting", choices=list(TRAINING_CHOICES))
        self.train_updates = SpinBox(label="updates", min=1, max=1_000_000)
        self.train_imitation = SpinBox(label="of which imitation", min=0, max=1_000_000,
                                       tooltip="the first updates imitate the centreline (DAgger, not in the paper), "
                                               "the rest are PPO")
        self.train_recovery = FloatSpinBox(label="recovery starts", min=0.0, max=1.0, step=0.05,
                                           tooltip="share of the imitation episodes that start 2-7 px beside their "
                                                   "fibre, so the agent learns the way back (not in the paper)")
        self.train_symmetry_augment = CheckBox(text="symmetry augmentation",
                                               tooltip="imitation pairs turned by multiples of 90 degrees or "
                                                       "mirrored at random (not in the paper)")
        buttons = {"track_button": ("Track", c.track), "fit_button": ("Fit colours to traces", c.fit_colours),
                   "finetune_button": ("Fine-tune on corrected traces", c.finetune),
                   "rollback_button": ("Roll back", c.rollback), "train_button": ("Train from scratch", c.train),
                   "continue_button": ("Continue interrupted run", c.continue_training),
                   "import_button": ("Import SWC…", self._import), "export_button": ("Export SWC…", self._export)}
        for attr, (text, action) in buttons.items():
            setattr(self, attr, PushButton(text=text))
            getattr(self, attr).changed.connect(lambda _=None, a=action: a())
        self.trace_info, self.rounds, self.resumable = Label(value=""), Label(value=""), Label(value="")
        self.colorbar, self.plot, self.status = ColorBar(), LivePlot(x_label="PPO update"), QLabel("")
        self.status.setWordWrap(True)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        for title, items in [
            ("Input", [self.image, self.starts, self.ends, self.directions, self.model, self.version, self.channel, self.project,
                       self.invert, self.scale, self.max_steps, self.device]),
            ("Track and read the entropy", [self.colorbar, self.lo, self.hi, self.fit_button, self.threshold,
                                            self.stop_uncertain, self.entropy_steps, self.fit_ridge,
                                            self.symmetries, self.track_button,
                                            self.trace_info]),
            ("Correct and fine-tune", [self.finetune_updates, self.finetune_button, self.rollback_button,
                                       self.rounds]),
            ("Train from scratch (synthetic)", [self.setting, self.train_updates, self.train_imitation, self.train_recovery,
                                                self.train_symmetry_augment, self.train_button,
                                                self.resumable, self.continue_button, self.plot]),
            ("SWC files", [self.import_button, self.export_button])]:
            lay.addWidget(section(title, items))
        lay.addStretch()
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        for w in (self.scroll, self.runner, self.status):
            outer.addWidget(w)
        for name in BOUND:
            getattr(self, name).changed.connect(lambda v, n=name: self._push(**{n: v}))
        self.version.changed.connect(lambda v: self._push(version=None if v == CURRENT else v))
        self.channel.changed.connect(lambda v: self._push(channel=None if v in (None, NO_CHANNEL) else v))
        for w in (self.lo, self.hi):
            w.changed.connect(lambda _=None: self._push(limits=(self.lo.value, self.hi.value)))
        self.model.changed.connect(lambda _=None: self.version.reset_choices())
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        c.listeners.append(self._on_event)
        layers = napari_viewer.layers
        c.set(image=self.image.value, model=MODEL_NAME,
              starts=layers["start points"] if "start points" in layers else self.starts.value,
              ends=layers["end points"] if "end points" in layers else None)
        self._show_resumable()
        token = registry_mod.subscribe(self._on_registry_changed)
        self.destroyed.connect(lambda *_: registry_mod.unsubscribe(token))

    def _versions(self, _w=None):
        return version_choices(self.controller.registry, self.model.value if hasattr(self, "model") else MODEL_NAME)

    def _push(self, **changes):
        if not self._syncing:
            self.controller.set(**changes)

    def _sync(self):
        """Show the controller's settings in the controls."""
        s, self._syncing = self.controller.settings, True
        try:
            values = {n: getattr(s, n) for n in BOUND}
            values.update(version=CURRENT if s.version is None else s.version, lo=s.limits[0], hi=s.limits[1],
                          channel=NO_CHANNEL if s.channel is None else s.channel)
            for name, value in values.items():
                w = getattr(self, name)
                if w.value != value:
                    try:
                        w.value = value
                    except (ValueError, TypeError):  # e.g. a layer no longer in the list
                        pass
            self.channel.visible = s.image is not None and bool(s.image.rgb)
            self.project.visible = _is3d(s.image)
            self.colorbar.set_limits(*s.limits)
            self.colorbar.set_threshold(s.threshold)
        finally:
            self._syncing = False

    def _on_event(self, kind, payload=None):
        c = self.controller
        if kind == "settings":
            self._sync()
            self._show_resumable()
        elif kind == "message":
            self.status.setText(payload)
        elif kind == "traces":
            self.trace_info.value = c.summary()
        elif kind == "rounds":
            self.rounds.value = "\n".join(c.round_text(r) for r in c.rounds)
        elif kind == "train_start":
            self.plot.clear()
            self._show_resumable()
        elif kind == "train":
            self.plot.add(payload["update"], payload)

    def _show_resumable(self):
        """A killed training run of the tracker, and how to continue it (the button)."""
        note = interrupted_note(MODEL_NAME)
        self.resumable.value = note.replace("continue it with `napari-medseg train tracking --resume`",
                                            "Continue interrupted run continues it")
        self.continue_button.enabled = bool(note)

    def _on_inserted(self, event):
        lay = event.value
        if lay.name == "end points" and isinstance(lay, Points) and self.controller.settings.ends is None:
            self.controller.set(ends=lay)

    @ensure_main_thread
    def _on_registry_changed(self, _name=None):
        self.model.reset_choices()
        self.version.reset_choices()
        self.controller.apply_model_defaults()
        self._sync()

    def _import(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import traces (SWC)", "", "SWC files (*.swc);;All files (*)")
        return self.controller.import_swc(path) if path else None

    def _export(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export traces as SWC", "traces.swc", "SWC files (*.swc)")
        return self.controller.export_swc(path) if path else None

