"""Adversarial segmentation widget (Chen et al. 2019): LV, myocardium and RV on LGE cardiac
MR, learnt from the labels of the other sequences (bSSFP, T2) of the same patients.

Map each patient's sequences to layers (annotated bSSFP and T2 with their labels, the LGE
target, optionally LGE labels for validation), add several patients and optionally phantom
ones, pick U-Net, adversarial, or adversarial + weak transfer, train with live losses of
G and D and the validation Dice, and predict LGE labels. **Show pseudo-masks** draws the
bSSFP/T2 labels that weak transfer puts on the LGE slices. The logic lives in
:class:`AdversarialController`: ``w.controller.train(block=True)`` does from the console
what the button does. See docs/widgets/adversarial_segmentation.md.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from qtpy.QtWidgets import QComboBox
from superqt.utils import ensure_main_thread

from ...core.registry import Registry
from .controller import D_LOSSES, DICE, G_LOSSES, METHOD_LABELS, MODEL_NAME, AdversarialController
from .._common import device_picker, layer_picker
from .._dock import MethodDock
from .._plot import LivePlot

BOUND = ("bssfp", "bssfp_labels", "t2", "t2_labels", "lge", "lge_labels", "slice_axis", "phantoms", "size",
         "method", "steps", "pretrain_steps", "batch_size", "lr", "adv_weight", "device", "predict_image")


def caption(text: str):
    label = Label(value=text).native
    label.setWordWrap(True)
    return label


def narrow(combo: ComboBox) -> ComboBox:
    """A combo box as wide as the dock, not as its longest layer name."""
    combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.native.setMinimumContentsLength(10)
    return combo


class AdversarialSegmentationWidget(MethodDock):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""
    KILLED_RUNS_OF = "chen2019"  # its trainers' method: the dock offers their killed runs

    BOUND, MODEL_NAME = BOUND, MODEL_NAME  # the module's names, for MethodDock's _to_settings and _versions

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(napari_viewer, AdversarialController, registry)
        c, v = self.controller, napari_viewer
        self.patient = ComboBox(label="patient", choices=lambda _w=None: c.patient_ids(), nullable=True)
        self.bssfp = layer_picker(v, Image, "bSSFP image", nullable=True)
        self.bssfp_labels = layer_picker(v, Labels, "bSSFP labels", nullable=True)
        self.t2 = layer_picker(v, Image, "T2 image", nullable=True)
        self.t2_labels = layer_picker(v, Labels, "T2 labels", nullable=True)
        self.lge = layer_picker(v, Image, "LGE image (target)", nullable=True)
        self.lge_labels = layer_picker(v, Labels, "LGE labels (validation only)", nullable=True)
        self.slice_axis = ComboBox(label="slice axis", choices=["first", "last"])
        self.phantoms = SpinBox(label="extra phantom patients", min=0, max=200)
        self.size = SpinBox(label="common size (0: as is)", min=0, max=1024, step=16)
        self.method = ComboBox(label="method", choices=[(label, key) for key, label in METHOD_LABELS.items()])
        self.steps = SpinBox(label="steps (all)", min=1, max=1_000_000)
        self.pretrain_steps = SpinBox(label="pre-training steps", min=0, max=1_000_000)
        self.batch_size = SpinBox(label="batch size", min=1, max=256)
        self.lr = FloatSpinBox(label="learning rate", min=1e-5, max=0.1, step=1e-5)
        self.adv_weight = FloatSpinBox(label="adversarial weight", min=0.0, max=10.0, step=0.01)
        self.device = device_picker()
        self.predict_image = layer_picker(v, Image, "segment (empty: the LGE)", nullable=True)
        self.version = ComboBox(label="version", choices=self._versions)
        buttons = {"add_button": ("Add patient", c.add_patient), "clear_button": ("Clear list", c.clear_patients),
                   "pseudo_button": ("Show pseudo-masks", c.show_pseudo_masks), "train_button": ("Train", c.train),
                   "predict_button": ("Predict", c.predict)}
        for attr, (text, action) in buttons.items():
            setattr(self, attr, PushButton(text=text))
            getattr(self, attr).changed.connect(lambda _=None, a=action: self._press(a))
        self.patients = Label(value="")
        self.g_plot = LivePlot(G_LOSSES)
        self.d_plot = LivePlot(D_LOSSES)
        self.dice_plot = LivePlot(DICE, y_range=(0.0, 1.0), markers=True)
        self.models = Label(value="")
        for combo in (self.patient, self.bssfp, self.bssfp_labels, self.t2, self.t2_labels, self.lge,
                      self.lge_labels, self.slice_axis, self.method, self.device, self.predict_image, self.version):
            narrow(combo)
        for label in (self.patients, self.models):
            label.native.setWordWrap(True)
        self._lay_out([
            ("Patient: sequences and labels", [self.patient, self.bssfp, self.bssfp_labels, self.t2, self.t2_labels,
                                               self.lge, self.lge_labels, self.slice_axis, self.pseudo_button,
                                               self.add_button, self.clear_button, self.patients]),
            ("Training set", [self.phantoms, self.size]),
            ("Train", [self.method, self.steps, self.pretrain_steps, self.batch_size, self.lr, self.adv_weight,
                       self.device,
                       self.train_button, *self._killed_runs_row(), self.runner, caption("G: loss_g = λ·L_ID + (1−λ)·L_DT + adversarial"),
                       self.g_plot, caption("D: loss_d, and loss_adv, the adversarial term of G"), self.d_plot,
                       caption("validation Dice on the LGE labels"), self.dice_plot]),
            ("Predict", [self.predict_image, self.version, self.predict_button, self.models])])
        self._show_settings(BOUND)
        for name in BOUND + ("version",):
            getattr(self, name).changed.connect(lambda _=None: self._to_settings())
        self.patient.changed.connect(self._fill_patient)
        for ev in (v.layers.events.inserted, v.layers.events.removed):
            ev.connect(lambda _e=None: self.patient.reset_choices())
        c.listeners.append(self._on_event)
        self._on_registry(MODEL_NAME)
        self._show_patients(c.patient_list())
        self._to_settings()

    def _fill_patient(self, pid=None):
        if pid and not self._syncing:
            self._press(lambda: self.controller.map_patient(pid))

    def _show_patients(self, ids):
        self.patients.value = (f"added: {', '.join(ids)}" if ids else
                               "added: none (Train uses the patient mapped above)")

    @ensure_main_thread
    def _on_event(self, kind, payload=None):
        if kind == "settings":
            self._show_settings(BOUND, kind)
            self._show_patients(self.controller.patient_list())
        elif kind == "patients":
            self._show_patients(payload or [])
        elif kind == "progress":
            if payload.get("step") == 1:
                for plot in (self.g_plot, self.d_plot, self.dice_plot):
                    plot.clear()
            for plot in (self.g_plot, self.d_plot, self.dice_plot):
                plot.add(payload["step"], payload)

    @ensure_main_thread
    def _on_registry(self, name):
        if name != MODEL_NAME:
            return
        self._show_versions(lambda cur: (cur.meta.get("config") or {}).get("paper_name", ""))
