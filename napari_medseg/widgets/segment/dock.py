"""Segment widget: run a registered model over an image layer, tiled; correct; retrain.

Everything here is also scriptable: ``widget.run()``, ``widget.retrain()`` from the
napari console, or ``widget.controller.run(block=True)``, which waits for the result
(see docs/widgets/segment.md). The logic lives in :class:`SegmentController`.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from superqt.utils import ensure_main_thread

from ...core.registry import Registry
from ...core.runstate import interrupted_note
from .._common import CURRENT, device_picker, layer_picker, version_label
from .._dock import MethodDock
from .controller import SegmentController

BOUND = ("image", "model", "level", "tile", "batch_size", "device", "labels", "steps")


class SegmentWidget(MethodDock):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""

    BOUND, VERSIONS_OF = BOUND, "model"

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(napari_viewer, SegmentController, registry)
        c, v = self.controller, napari_viewer
        self.image = layer_picker(v, Image, "image")
        self.model = ComboBox(label="model", choices=lambda _w=None: self.controller.model_names())
        self.version = ComboBox(label="version", choices=self._versions)
        self.level = SpinBox(label="pyramid level", min=0, max=12)
        self.tile = SpinBox(label="tile size", min=128, max=8192, step=64)
        self.batch_size = SpinBox(label="batch size", min=1, max=64)
        self.device = device_picker()
        self.run_button = PushButton(text="Run")
        self.labels = layer_picker(v, Labels, "corrected labels")
        self.steps = SpinBox(label="retrain steps", min=1, max=10000)
        self.retrain_button = PushButton(text="Retrain from corrections")
        self.rounds = Label(value="")  # one line per retraining round finished here
        self.resumable = Label(value="")  # an interrupted (killed) training run of this model, if any
        self.run_button.changed.connect(lambda _=None: self.run())
        self.retrain_button.changed.connect(lambda _=None: self.retrain())
        self._lay_out([
            ("Segment", [self.image, self.model, self.version, self.level, self.tile, self.batch_size, self.device,
                         self.run_button]),
            ("Correct, then retrain", [self.labels, self.steps, self.retrain_button, self.rounds, self.resumable]),
            ("Job", [self.runner])])
        self._show_settings(BOUND)
        for name in BOUND + ("version",):
            getattr(self, name).changed.connect(lambda _=None: self._to_settings())
        self.model.changed.connect(lambda _=None: (self.version.reset_choices(), self._show_resumable()))
        c.listeners.append(self._on_event)
        self._show_resumable()
        self._to_settings()

    # what the console and the tests call on the widget itself
    @property
    def history(self) -> list[dict]:
        return self.controller.history

    @property
    def last_result(self):
        return self.controller.last_result

    def entry(self):
        """The model version a run would use now: "current" follows roll-backs at once."""
        return self.controller.entry()

    def run(self, block: bool = False):
        return self.controller.run(block)

    def retrain(self, block: bool = False):
        return self.controller.retrain(block)

    def _version_label(self, entry) -> str:
        return version_label(entry)

    def _show_resumable(self):
        self.resumable.value = interrupted_note(self.model.value) if self.model.value else ""

    @ensure_main_thread
    def _on_event(self, kind, payload=None):
        if kind == "settings":
            self._show_settings(BOUND, kind)
            self._show_version()
        elif kind in ("trained", "kept"):
            self.version.reset_choices()
            self.rounds.value = self.controller.rounds_text()

    def _show_version(self):
        """The version picker follows the controller (a new round makes "current" the choice)."""
        self._syncing = True
        try:
            self.version.reset_choices()
            version = self.controller.settings.version
            self.version.value = CURRENT if version is None else version
        finally:
            self._syncing = False

    def _on_registry(self, _name):
        self.model.reset_choices()
        self.version.reset_choices()
        self._show_resumable()
