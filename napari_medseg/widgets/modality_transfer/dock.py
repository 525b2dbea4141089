"""Modality transfer widget (Giacomello et al. 2020): move a SegAN brain tumour model
from one MR modality to another.

Train a source SegAN on one modality (image + tumour Labels layers, or phantom subjects),
with the concatenated or the multiplied critic input, or pick a saved one; then fine-tune
it on target-modality layers fully or with its critic frozen (and from scratch, the
baseline), or Compare them: each is saved as a registry version, scored on held-out
target slices (Dice, HD95) in a table, and shown as a Labels layer on a target image,
side by side if you like. Predict on any image layer with any version. The logic lives
in :class:`TransferController`: ``w.controller.compare(block=True)`` does from the console
what the button does. See docs/widgets/modality_transfer.md.
"""

from __future__ import annotations

import math

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, Select, SpinBox
from napari.layers import Image, Labels
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem
from superqt.utils import ensure_main_thread

from ...core.registry import Registry
from ...methods.modality_transfer.networks import CRITIC_MODES
from ...methods.modality_transfer.tumour import MODALITIES
from .._common import device_picker, layer_picker
from .._dock import MethodDock
from .._plot import LivePlot
from .controller import MODEL_NAMES, MODES, TransferController

LOSSES = ("loss_s", "loss_c", "l1")
BOUND = ("device", "optimizer", "lr", "batch_size", "source_modality", "source_images", "source_labels",
         "phantom_subjects", "critic_input", "source_steps", "source_name", "target_modality", "target_images",
         "target_labels", "split", "held_out", "fraction", "steps", "scratch", "show_on", "predict_image",
         "predict_name")
VERSIONS = {"source_version": "source_name", "predict_version": "predict_name"}
COLUMNS = ("mode", "Dice", "HD95", "prec.", "sens.", "saved")
TIPS = ("source only: the source model as it is", "Dice per held-out layer, averaged",
        "95th-percentile Hausdorff distance, in the layers' scale units (mm for the sample)",
        "precision per held-out layer, averaged", "sensitivity per held-out layer, averaged",
        "the saved registry version")


def _views(layer) -> bool:
    return bool((layer.metadata or {}).get("medseg_view"))


class ModalityTransferWidget(MethodDock):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""
    KILLED_RUNS_OF = "giacomello2020"  # its trainers' method: the dock offers their killed runs

    BOUND, VERSION_FIELDS, CURRENT_CHOICE = BOUND, tuple(VERSIONS), False  # no pick: the current version

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(napari_viewer, TransferController, registry)
        c, v = self.controller, napari_viewer

        def select(label, kind):
            box = Select(label=label, choices=lambda _w=None: [
                (lay.name, lay) for lay in v.layers if isinstance(lay, kind) and not _views(lay)])
            for ev in (v.layers.events.inserted, v.layers.events.removed, v.layers.events.reordered):
                ev.connect(lambda _e=None, b=box: b.reset_choices())
            box.native.setMinimumHeight(70)
            return box

        self.device = device_picker()
        self.optimizer = ComboBox(label="optimizer", choices=["adam", "rmsprop"])
        self.lr = FloatSpinBox(label="learning rate", min=1e-5, max=1.0, step=1e-5)
        self.batch_size = SpinBox(label="batch", min=1, max=512)
        # source
        self.source_modality = ComboBox(label="source modality", choices=list(MODALITIES))
        self.source_images = select("source images", Image)
        self.source_labels = select("their tumour labels", Labels)
        self.phantom_subjects = SpinBox(label="+ phantom subjects", min=0, max=200)
        self.critic_input = ComboBox(label="critic input", choices=list(CRITIC_MODES))
        self.source_steps = SpinBox(label="steps", min=1, max=1_000_000)
        self.source_name = ComboBox(label="source model", choices=list(MODEL_NAMES))
        self.source_version = ComboBox(label="version", choices=lambda _w=None: self._versions_of("source_name"),
                                       nullable=True)
        self.source_info = Label(value="")
        self.source_info.native.setWordWrap(True)
        # transfer
        self.target_modality = ComboBox(label="target modality", choices=list(MODALITIES))
        self.target_images = select("target images", Image)
        self.target_labels = select("their tumour labels", Labels)
        self.split = ComboBox(label="hold out", choices=[("these layers", "layers"), ("a fraction", "fraction")])
        self.held_out = select("held-out layers", Image)
        self.fraction = FloatSpinBox(label="fraction", min=0.05, max=0.9, step=0.05)
        self.steps = SpinBox(label="steps per mode", min=1, max=1_000_000)
        self.scratch = CheckBox(text="Compare also trains from scratch")
        self.show_on = layer_picker(v, Image, "show results on", nullable=True)
        self.side = CheckBox(text="side by side (grid)")
        # predict
        self.predict_image = layer_picker(v, Image, "image", nullable=True)
        self.predict_name = ComboBox(label="model", choices=list(MODEL_NAMES))
        self.predict_version = ComboBox(label="version", choices=lambda _w=None: self._versions_of("predict_name"),
                                        nullable=True)
        buttons = {"train_source_button": ("Train source model", c.train_source),
                   "full_button": ("Fine-tune (full)", c.fine_tune_full),
                   "frozen_button": ("Fine-tune (critic frozen)", c.fine_tune_frozen),
                   "scratch_button": ("From scratch", c.from_scratch), "compare_button": ("Compare", c.compare),
                   "predict_button": ("Predict", c.predict)}
        for attr, (text, action) in buttons.items():
            setattr(self, attr, PushButton(text=text))
            getattr(self, attr).changed.connect(lambda _=None, a=action: self._press(a))
        self.source_loss_plot = LivePlot(LOSSES)
        self.source_dice_plot = LivePlot(("val_dice",), y_range=(0.0, 1.0), markers=True)
        self.loss_plot = LivePlot(LOSSES)
        self.dice_plot = LivePlot(MODES, y_range=(0.0, 1.0), markers=True)  # validation Dice per mode
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for j, tip in enumerate(TIPS):
            self.table.horizontalHeaderItem(j).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(150)
        self._lay_out([
            ("Training (both parts)", [self.device, self.optimizer, self.lr, self.batch_size, self.runner,
                                       *self._killed_runs_row()]),
            ("Source model", [self.source_modality, self.source_images, self.source_labels, self.phantom_subjects,
                              self.critic_input, self.source_steps, self.train_source_button,
                              self.source_loss_plot, self.source_dice_plot,
                              self.source_name, self.source_version, self.source_info]),
            ("Transfer to the target modality", [
                self.target_modality, self.target_images, self.target_labels, self.split, self.held_out,
                self.fraction, self.steps, self.show_on, self.full_button, self.frozen_button, self.scratch_button,
                self.scratch, self.compare_button, self.loss_plot, self.dice_plot, self.table, self.side]),
            ("Predict", [self.predict_image, self.predict_name, self.predict_version, self.predict_button]),
        ])
        self._show_settings(BOUND)
        self._show_versions()
        for name in BOUND + tuple(VERSIONS):
            getattr(self, name).changed.connect(lambda _=None: self._to_settings())
        for name in VERSIONS.values():
            getattr(self, name).changed.connect(lambda _=None: self._on_registry(None))
        self.side.changed.connect(lambda on: self._press(lambda: self.controller.side_by_side(bool(on))))
        c.listeners.append(self._on_event)
        self._on_registry(None)
        self._to_settings()

    def _versions_of(self, which: str):
        """Versions of the model the setting ``which`` names (source or predict model)."""
        return self._versions(name=getattr(self.controller.settings, which))

    def _version_label(self, entry) -> str:
        return f"v{entry.version} · " + self.controller.describe(entry.name, entry.version).split(" · ", 1)[-1]

    def _show_versions(self):
        """The version pickers follow the controller (e.g. a freshly trained source)."""
        self._syncing = True
        try:
            for name in VERSIONS:
                box = getattr(self, name)
                box.reset_choices()
                value = getattr(self.controller.settings, name)
                if value is None or value in [v for v in box.choices if v is not None]:
                    box.value = value
        finally:
            self._syncing = False

    @ensure_main_thread
    def _on_event(self, kind, payload=None):
        if kind == "settings":
            self._show_settings(BOUND, kind)
            self._show_versions()
            self._show_info()
        elif kind == "job":
            plots = ((self.source_loss_plot, self.source_dice_plot) if payload["section"] == "source"
                     else (self.loss_plot, self.dice_plot))
            for plot in plots:
                plot.clear()
        elif kind == "progress" and payload.get("mode") is not None:
            if payload["section"] == "source":
                self.source_loss_plot.add(payload["step"], payload)
                self.source_dice_plot.add(payload["step"], payload)
            else:
                if payload["step"] == 1:
                    self.loss_plot.clear()
                self.loss_plot.add(payload["step"], payload)
                if "val_dice" in payload:
                    self.dice_plot.add(payload["step"], {payload["mode"]: payload["val_dice"]})
        elif kind == "table":
            self._show_table(payload or [])

    def _show_table(self, rows):
        self.table.setRowCount(len(rows))

        def num(x, fmt):
            return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else format(x, fmt)

        for i, r in enumerate(rows):
            model = ("source " if r["mode"] == "source_only" else "") + f"v{r['version']}"
            cells = (r["name"] + (" (stopped)" if r.get("stopped") else ""), num(r["dice"], ".3f"),
                     num(r.get("hd95"), ".1f"), num(r["precision"], ".3f"), num(r["sensitivity"], ".3f"), model)
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(r["model"])
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()

    def _show_info(self):
        s = self.controller.settings
        self.source_info.value = self.controller.describe(s.source_name, s.source_version)

    @ensure_main_thread
    def _on_registry(self, name):
        if name is not None and name.endswith("_critic"):
            return
        self._show_versions()
        self._show_info()
