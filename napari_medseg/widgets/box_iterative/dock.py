"""Box-supervised training widget (Gupta et al. 2019): glomerulus outlines from rectangles.

Draw boxes around glomeruli, run Stage 1 (rounds of training on the boxes, refined by
Cues 1), optionally Stage 2 on unlabelled slides (Cues 2), watch each round's outlines
and scores, paint corrections on a round's labels and train on. The logic lives in
:class:`BoxController`: ``w.controller.stage1(rounds=2, block=True)`` does from the
console what the button does. See docs/widgets/box_iterative.md.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, Select, SpinBox
from napari.layers import Image, Labels, Shapes
from superqt.utils import ensure_main_thread

from ...core.registry import Registry
from ...core.runstate import interrupted_note
from ...methods.box_iterative.model import MODEL_NAME
from .controller import METRICS, BoxController
from .._common import device_picker, layer_picker
from .._dock import MethodDock
from .._plot import LivePlot

BOUND = ("image", "boxes", "val_image", "val_labels", "rounds1", "rounds2", "steps", "patch", "batch_size",
         "clip_boxes", "polarity", "device", "predict_image", "instances", "object_radius")


class BoxIterativeWidget(MethodDock):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""

    BOUND, MODEL_NAME = BOUND, MODEL_NAME  # the module's names, for MethodDock's _to_settings and _versions
    LISTS = ("unlabelled",)

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(napari_viewer, BoxController, registry)
        c, v = self.controller, napari_viewer
        self.image = layer_picker(v, Image, "slide")
        self.boxes = layer_picker(v, Shapes, "boxes")
        self.unlabelled = Select(label="unlabelled slides",
                                 choices=lambda _w=None: [(lay.name, lay) for lay in v.layers
                                                          if isinstance(lay, Image) and lay.rgb])
        for ev in (v.layers.events.inserted, v.layers.events.removed):
            ev.connect(lambda _e=None: self.unlabelled.reset_choices())
        self.val_image = layer_picker(v, Image, "validation slide", nullable=True)
        self.val_labels = layer_picker(v, Labels, "validation labels", nullable=True)
        self.rounds1 = SpinBox(label="Stage 1 rounds", min=1, max=50)
        self.rounds2 = SpinBox(label="Stage 2 rounds", min=1, max=50)
        self.steps = SpinBox(label="steps per round", min=1, max=100_000)
        self.patch = SpinBox(label="patch (0: auto)", min=0, max=2048, step=16)
        self.batch_size = SpinBox(label="batch (0: auto)", min=0, max=64)
        self.clip_boxes = CheckBox(text="clip boxes crossing the border")
        self.instances = CheckBox(text="split touching objects (instances)")
        self.object_radius = FloatSpinBox(label="object radius (px, 0: from boxes)", min=0.0, max=10_000.0)
        self.polarity = ComboBox(label="grey images", choices=[("dark background: invert", "auto"),
                                                                ("keep as is", "keep"), ("always invert", "invert")])
        self.device = device_picker()
        self.predict_image = layer_picker(v, Image, "slide to segment")
        self.version = ComboBox(label="version", choices=self._versions)
        buttons = {"add_button": ("Add slide to Stage 1", c.add_stage1_pair),
                   "stage1_button": ("Run Stage 1", c.stage1), "stage2_button": ("Run Stage 2", c.stage2),
                   "rollback_button": ("Roll back", c.rollback), "predict_button": ("Predict", c.predict)}
        for attr, (text, action) in buttons.items():
            setattr(self, attr, PushButton(text=text))
            getattr(self, attr).changed.connect(lambda _=None, a=action: self._press(a))
        self.rounds = Label(value="")
        # a round killed (kill -9, a crash) before it ended: how to let it go on from its last saved step
        self.interrupted = Label(value="")
        self.interrupted.native.setWordWrap(True)
        self.discard_button = PushButton(text="Forget the killed round")
        self.discard_button.changed.connect(lambda _=None: self._press(self.discard_interrupted))
        self.plot = LivePlot(names=METRICS, y_range=(0.0, 1.0), markers=True, x_label="round")
        self._lay_out([
            ("Stage 1: slides with boxes", [self.image, self.boxes, self.add_button, self.clip_boxes, self.polarity]),
            ("Stage 2 and validation", [self.unlabelled, self.val_image, self.val_labels]),
            ("Train", [self.rounds1, self.rounds2, self.steps, self.patch, self.batch_size, self.device,
                       self.stage1_button, self.stage2_button, self.runner, self.interrupted,
                       self.discard_button]),
            ("Rounds (paint a round's labels, then run more rounds)", [self.plot, self.rounds, self.rollback_button]),
            ("Predict", [self.predict_image, self.version, self.instances, self.object_radius, self.predict_button])])
        self._from_settings()
        self._show_interrupted()
        for name in BOUND:
            getattr(self, name).changed.connect(lambda _=None: self._to_settings())
        self.unlabelled.changed.connect(lambda _=None: self._to_settings())
        self.version.changed.connect(lambda _=None: self._to_settings())
        c.listeners.append(self._on_event)
        c.listeners.append(lambda kind, payload: self._show_settings(BOUND + ("unlabelled",), kind))
        self._to_settings()

    def _from_settings(self):
        self._show_settings(("rounds1", "rounds2", "steps", "patch", "batch_size", "clip_boxes", "polarity", "instances",
                             "object_radius"))

    def _show_interrupted(self):
        note = interrupted_note(MODEL_NAME, self.controller.registry.user_root)
        self.interrupted.value = note
        self.interrupted.visible = self.discard_button.visible = bool(note)

    def discard_interrupted(self) -> int:
        """Button **Forget the killed round**: remove the saved steps of every killed round (its
        start version and all finished rounds stay); returns how many were removed."""
        from ...methods.box_iterative.resume import forget_killed_rounds

        n = forget_killed_rounds(self.controller.registry, MODEL_NAME)
        self._show_interrupted()
        self.controller._say(f"forgot {n} killed round(s); every finished round is still a version")
        return n

    @ensure_main_thread
    def _on_registry(self, name):
        if name == MODEL_NAME:
            self.version.reset_choices()
            self._show_interrupted()

    def _on_event(self, kind, payload):
        if kind == "round":
            rec = payload
            x = len([h for h in self.controller.session.history if h.stage != 0])
            self.plot.add(x, rec.metrics)
            lines = []
            for h in self.controller.session.history:
                m = h.metrics
                score = (f"P {m['object_precision']:.2f} R {m['object_recall']:.2f} F1 {m['object_f1']:.2f}"
                         if "object_f1" in m else "no validation labels")
                lines.append(f"stage {h.stage} round {h.round} (v{h.version}): {score}")
            self.rounds.value = "\n".join(lines)

