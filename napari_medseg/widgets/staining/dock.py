"""Confocal digital staining widget (Combalia et al. 2019): ex-vivo confocal → H&E-like.

Pick the fluorescence (FCM) and reflectance (RCM) layers, or one 2-channel layer;
preview the stain on the field of view, then stain the whole slide tile by tile into
an RGB multiscale layer. "Despeckle" runs the despeckler alone on any single-channel
layer (a new layer in the same units). Despeckling and the CycleGAN can be switched off (Gareau's
linear stain alone). Train or fine-tune either model on your own H&E images. The logic
lives in :class:`StainingController`: ``w.controller.stain(block=True)`` does from the
console what the button does. See docs/widgets/staining.md.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, PushButton, Select, SpinBox
from napari.layers import Image
from superqt.utils import ensure_main_thread

from ...core.registry import Registry
from ...methods.staining.card import MODEL_NAMES
from .._common import device_picker, layer_picker
from .._dock import MethodDock
from .controller import PREVIEW_LAYER, TRAINING_PREVIEW_LAYER, StainingController

OWN = (PREVIEW_LAYER, TRAINING_PREVIEW_LAYER)
BOUND = ("fcm", "rcm", "pair", "speckled", "despeckle", "cyclegan", "normalisation", "tile", "preview_size", "device",
         "cpu_bf16",
         "train_model", "finetune", "steps", "steps_large", "confocal_domain", "distill", "filters", "body")


class StainingWidget(MethodDock):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""
    KILLED_RUNS_OF = "combalia2019"  # its trainers' method: the dock offers their killed runs

    BOUND, LISTS, PATHS = BOUND, ("he_layers",), ("he_folder",)

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(napari_viewer, StainingController, registry)
        c, v = self.controller, napari_viewer
        self.fcm = layer_picker(v, Image, "FCM (nuclei)", nullable=True, exclude=OWN)
        self.rcm = layer_picker(v, Image, "RCM (reflectance)", nullable=True, exclude=OWN)
        self.pair = layer_picker(v, Image, "or 2-channel layer", nullable=True, exclude=OWN)
        self.speckled = layer_picker(v, Image, "image", nullable=True, exclude=OWN)
        self.despeckle = CheckBox(text="despeckle RCM")
        self.cyclegan = CheckBox(text="CycleGAN (H&&E look)")  # &&: Qt shows one &
        self.normalisation = ComboBox(label="normalise", choices=["slide", "tile"])
        self.tile = SpinBox(label="tile", min=128, max=8192, step=128)
        self.preview_size = SpinBox(label="preview size", min=64, max=8192, step=64)
        self.device = device_picker()
        self.cpu_bf16 = CheckBox(text="bfloat16 on CPU (about 2x faster, not bit-exact)")
        self.train_model = ComboBox(label="model", choices=list(MODEL_NAMES))
        self.he_layers = Select(label="H&E layers", choices=lambda _w=None: [
            (lay.name, lay) for lay in v.layers if isinstance(lay, Image) and lay.rgb and lay.name not in OWN])
        for ev in (v.layers.events.inserted, v.layers.events.removed):
            ev.connect(lambda _e=None: self.he_layers.reset_choices())
        self.he_folder = FileEdit(label="or H&E folder", mode="d", value="")
        self.finetune = CheckBox(text="fine-tune the current version")
        self.steps = SpinBox(label="steps", min=1, max=1_000_000)
        self.steps_large = SpinBox(label="512-px steps", min=0, max=1_000_000)
        self.confocal_domain = CheckBox(text="CycleGAN: my FCM/RCM as the confocal domain")
        self.distill = CheckBox(text="despeckle: distil the current version into fewer filters (faster)")
        self.filters = SpinBox(label="filters", min=1, max=256)
        self.body = ComboBox(label="new despeckler", choices=[("paper's 7 convolutions", "conv"),
                                                              ("U-shaped (as shipped v4/v5)", "unet")])
        buttons = {"preview_button": ("Preview field of view", c.preview),
                   "stain_button": ("Stain whole slide", c.stain), "train_button": ("Train", c.train),
                   "despeckle_button": ("Despeckle", c.despeckle)}
        for attr, (text, action) in buttons.items():
            setattr(self, attr, PushButton(text=text))
            getattr(self, attr).changed.connect(lambda _=None, a=action: self._press(a))
        self.models = Label(value="")
        self._lay_out([
            ("Confocal pair", [self.fcm, self.rcm, self.pair]),
            ("Stain", [self.despeckle, self.cyclegan, self.normalisation, self.tile, self.preview_size, self.device,
                       self.cpu_bf16, self.preview_button, self.stain_button, self.runner]),
            ("Despeckle one image (any single-channel layer)", [self.speckled, self.despeckle_button]),
            ("Train or fine-tune (empty: the bundled H&&E)", [self.train_model, self.he_layers, self.he_folder,
                                                              self.finetune, self.steps, self.steps_large,
                                                              self.body, self.confocal_domain, self.distill,
                                                              self.filters, self.train_button,
                                                              *self._killed_runs_row()]),
            ("Models", [self.models])])
        self._from_settings()
        for name in BOUND + ("he_layers", "he_folder"):
            getattr(self, name).changed.connect(lambda _=None: self._to_settings())
        self._show_models()
        self._to_settings()
        c.listeners.append(self._from_settings)

    def _from_settings(self, kind=None, _payload=None):
        self._show_settings(BOUND + ("he_layers",), kind)
        if kind in (None, "settings") and not self._syncing:
            self._syncing = True
            self.he_folder.value = self.controller.settings.he_folder or ""
            self._syncing = False

    def _show_models(self):
        reg, lines = self.controller.registry, []
        for key, name in MODEL_NAMES.items():
            entries = reg.list(name)
            lines.append(f"{key}: {reg.get(name).label}" if entries else f"{key}: none yet (train one)")
        self.models.value = "\n".join(lines)

    @ensure_main_thread
    def _on_registry(self, name):
        if name in MODEL_NAMES.values():
            self._show_models()
