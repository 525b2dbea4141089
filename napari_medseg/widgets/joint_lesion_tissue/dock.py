"""Joint lesion + tissue widget (Dorent et al. 2019): brain tissues and white-matter
lesions in one Labels layer, from T1 alone or T1 + FLAIR.

Map image layers to modalities (any but T1 may be missing), segment with the shipped or
your own model, read the per-class volumes in mL, paint corrections and retrain a new
version from them (autosaved, with rollback), or train from a control and a patient
dataset folder with live losses and validation Dice. The logic lives in
:class:`JointController`: ``w.controller.segment(block=True)`` does from the console what
the button does. See docs/widgets/joint_lesion_tissue.md.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem
from superqt.utils import ensure_main_thread

from ...core.registry import Registry
from ...methods.joint_lesion_tissue.jobs import LOSSES
from ...methods.joint_lesion_tissue.models import BASELINE_NAMES
from .._common import device_picker, layer_picker
from .._dock import MethodDock
from .controller import JointController
from .._plot import LivePlot

DICE = ("val_dice", "val_dice_grey_matter", "val_dice_white_matter", "val_dice_lesion")
BOUND = ("t1", "flair", "t2", "t1c", "mask", "resample", "refine", "min_lesion_ml", "model", "device", "retrain_steps", "mode", "steps", "warmup",
         "patch", "finetune")
FILES = ("controls", "patients", "validation")


class JointWidget(MethodDock):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""
    KILLED_RUNS_OF = "dorent2019"  # its trainers' method: the dock offers their killed runs

    BOUND, PATHS, VERSIONS_OF, CURRENT_CHOICE = BOUND, FILES, "model", False  # no pick: the current version

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(napari_viewer, JointController, registry)
        c, v = self.controller, napari_viewer
        self.t1 = layer_picker(v, Image, "T1", nullable=True)
        self.flair = layer_picker(v, Image, "FLAIR", nullable=True)
        self.t2 = layer_picker(v, Image, "T2", nullable=True)
        self.t1c = layer_picker(v, Image, "T1c", nullable=True)
        self.mask = layer_picker(v, (Image, Labels), "brain mask", nullable=True)
        self.resample = CheckBox(text="resample onto T1 when grids differ")
        self.refine = CheckBox(text="refine at the scan's resolution")
        self.min_lesion_ml = FloatSpinBox(label="min lesion (mL)", min=0.0, max=100.0, step=0.005)
        self.model = ComboBox(label="model", choices=list(BASELINE_NAMES.values()))
        self.version = ComboBox(label="version", choices=self._versions, nullable=True)
        self.device = device_picker()
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["class", "value", "unit"])
        self.table.setMinimumHeight(170)
        self.export_path = FileEdit(label="export to", mode="w", filter="*.nii.gz", value="")
        self.csv_path = FileEdit(label="volumes to", mode="w", filter="*.csv", value="")
        self.retrain_steps = SpinBox(label="retrain steps", min=1, max=100_000)
        self.controls = FileEdit(label="controls (T1 + tissue)", mode="r", filter="*.csv *.yaml *.yml", value="")
        self.patients = FileEdit(label="patients (T1+FLAIR + lesion)", mode="r", filter="*.csv *.yaml *.yml", value="")
        self.validation = FileEdit(label="validation (fully labelled)", mode="r", filter="*.csv *.yaml *.yml", value="")
        self.mode = ComboBox(label="train", choices=list(BASELINE_NAMES))
        self.steps = SpinBox(label="steps", min=1, max=1_000_000)
        self.warmup = SpinBox(label="inter-modality after", min=0, max=1_000_000)
        self.patch = SpinBox(label="patch", min=16, max=256, step=8)
        self.finetune = CheckBox(text="fine-tune the current version")
        buttons = {"segment_button": ("Segment", c.segment), "export_button": ("Export labels", self._export),
                   "csv_button": ("Export volumes (CSV)", self._export_csv),
                   "retrain_button": ("Retrain from corrections", c.retrain),
                   "rollback_button": ("Roll back", c.rollback), "train_button": ("Train", c.train)}
        for attr, (text, action) in buttons.items():
            setattr(self, attr, PushButton(text=text))
            getattr(self, attr).changed.connect(lambda _=None, a=action: self._press(a))
        self.used = Label(value="")
        self.versions = Label(value="")
        self.loss_plot = LivePlot(LOSSES)
        self.dice_plot = LivePlot(DICE, y_range=(0.0, 1.0))
        self._lay_out([
            ("Scans (any modality but T1 may be missing)", [self.t1, self.flair, self.t2, self.t1c, self.mask,
                                                            self.resample]),
            ("Segment", [self.model, self.version, self.device, self.refine, self.min_lesion_ml, self.segment_button, self.runner, self.used,
                         self.table, self.export_path, self.export_button, self.csv_path, self.csv_button]),
            ("Correct and retrain", [self.retrain_steps, self.retrain_button, self.rollback_button, self.versions]),
            ("Train from dataset descriptions", [self.controls, self.patients, self.validation, self.mode,
                                                 self.steps, self.warmup, self.patch, self.finetune,
                                                 self.train_button, *self._killed_runs_row(), self.loss_plot,
                                                 self.dice_plot])])
        self._show_settings(BOUND)
        for name in BOUND + FILES + ("version",):
            getattr(self, name).changed.connect(lambda _=None: self._to_settings())
        self.model.changed.connect(lambda _=None: self._on_registry(self.controller.settings.model))
        c.listeners.append(self._on_event)
        self._on_registry(c.settings.model)
        self._to_settings()

    def _version_label(self, entry) -> str:
        return entry.label

    def _export(self):
        path = str(self.export_path.value or "")
        self.controller.export("" if path in ("", ".") else path)

    def _export_csv(self):
        path = str(self.csv_path.value or "")
        self.controller.export_volumes("" if path in ("", ".") else path)

    @ensure_main_thread
    def _on_event(self, kind, payload=None):
        if kind == "settings":
            self._show_settings(BOUND, kind)
        elif kind == "volumes":
            self._show_table(payload or [])
        elif kind == "progress":
            if payload.get("step") == 1:
                self.loss_plot.clear()
                self.dice_plot.clear()
            self.loss_plot.add(payload["step"], payload)
            self.dice_plot.add(payload["step"], payload)
        elif kind == "message" and self.controller.result is not None:
            r = self.controller.result
            self.used.value = f"used: {' + '.join(r.used)}" + (f"; ignored: {', '.join(r.ignored)}" if r.ignored else "")

    def _show_table(self, rows):
        self.table.setRowCount(len(rows))
        for i, (name, value) in enumerate(rows):
            count = name == "lesion count"
            text = f"{int(value)}" if count else f"{value:.3f}" if name.startswith("min lesion") else f"{value:.2f}"
            label = "min lesion size" if name.startswith("min lesion") else name
            for j, cell in enumerate((label, text, "lesions" if count else "mL")):
                self.table.setItem(i, j, QTableWidgetItem(cell))

    @ensure_main_thread
    def _on_registry(self, name):
        if name != self.controller.settings.model:
            return
        self.version.reset_choices()
        entries = self.controller.registry.list(name)
        if entries:
            self.versions.value = f"current: {self.controller.registry.get(name).label}; {len(entries)} version(s)"
        else:
            self.versions.value = f"{name}: none yet (train one)"
