"""The Modality transfer widget's controller (Giacomello et al. 2020): layers in, SegAN
source models, fine-tuned versions, labels and a comparison table out; no Qt widgets.

The dock's buttons call these methods and so can the napari console, e.g.
``c.set(target_images=[...], target_labels=[...]); c.compare(block=True)``. The method is
:mod:`napari_medseg.methods.modality_transfer.segan`. See docs/widgets/modality_transfer.md.

Every image layer is read as a stack of 2-D slices along its first axis (napari's slider
axis), clipped to its own 2nd and 98th percentiles and rescaled to [0, 1] (the paper's
preprocessing). Slices with less than a tenth of their pixels non-zero and no tumour
(outside a skull-stripped brain) are left out, as the phantom dataset does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from napari.layers import Image, Labels

from ...core.device import select_device
from ...core.errors import InputError
from ...core.intensity import percentile_scale
from ...core.jobs import Progress
from ...core.registry import Registry
from ...methods.modality_transfer import segan
from ...methods.modality_transfer.compare import MODES, ROW_NAMES, compare_transfer
from ...methods.modality_transfer.data import has_tumour, phantom_volumes, source_split, target_split
from ...methods.modality_transfer.networks import CRITIC_MODES
from ...methods.modality_transfer.tumour import MODALITIES
from ...core.options import defaults
from ...methods.modality_transfer.options import DEFAULTS as _DEFAULTS, TrainOptions
from .._controller import Controller
from .layers import _info, layer_stack, layer_volumes
from .display import TransferDisplay

SOURCE_NAME = segan.MODEL_NAME  # "segan_tumour": source models (one modality each)
TRANSFER_NAME = segan.MODEL_NAME + "_transfer"  # fine-tuned and from-scratch target models
MODEL_NAMES = (SOURCE_NAME, TRANSFER_NAME)


@dataclass
class TransferConfig(segan.SeganConfig):
    """SegAN's configuration plus what the widget records in every saved version's config."""

    transfer: str | None = None  # "full" / "frozen_critic" / "scratch"; None for a source model
    source: dict | None = None  # {"name", "version", "modality"} of the source model


@dataclass
class TransferSettings:
    """Everything a button press uses; the dock's controls mirror it."""

    # source model
    source_modality: str = "FLAIR"
    source_images: list = field(default_factory=list)  # image layers of the source modality
    source_labels: list = field(default_factory=list)  # their tumour Labels layers
    phantom_subjects: int = 0  # extra source data: seeded phantom subjects
    phantom_seed: int = _DEFAULTS["phantom_seed"]
    phantom_shape: tuple = _DEFAULTS["phantom_shape"]  # (x, y, axial) voxels of a phantom subject, 2.25 mm
    critic_input: str = defaults(TrainOptions)["variant"]  # the paper's; "multiply" is the original SegAN
    source_steps: int = _DEFAULTS["source_steps"]
    source_name: str = SOURCE_NAME  # the model to transfer from
    source_version: int | None = None  # None: its current version
    # transfer
    target_modality: str = "T2"
    target_images: list = field(default_factory=list)
    target_labels: list = field(default_factory=list)
    split: str = "layers"  # "layers": held_out layers are validation + test; "fraction": of each layer's slices
    held_out: list = field(default_factory=list)
    fraction: float = _DEFAULTS["fraction"]
    steps: int = _DEFAULTS["steps"]  # per mode
    scratch: bool = True  # Compare also trains from scratch
    show_on: Image | None = None  # the target image the result layers go on
    # both
    optimizer: str = _DEFAULTS["optimizer"]
    lr: float = _DEFAULTS["lr"]
    batch_size: int = _DEFAULTS["batch_size"]
    val_every: int | None = None  # None: a tenth of the steps
    seed: int = _DEFAULTS["seed"]
    device: str = "auto"
    seg_features: tuple = _DEFAULTS["seg_features"]
    critic_features: tuple = _DEFAULTS["critic_features"]
    # predict
    predict_image: Image | None = None
    predict_name: str = TRANSFER_NAME
    predict_version: int | None = None


# ------------------------------------------------------------------ the controller
class TransferController(TransferDisplay, Controller):
    """Scriptable state and actions of the Modality transfer widget. Listeners get
    ("settings", None), ("message", str), ("job", {"section", "modes"}),
    ("progress", {"section", "mode", "step", **metrics}) and ("table", rows)."""

    def __init__(self, viewer, runner, registry: Registry | None = None):
        super().__init__()
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = TransferSettings()
        self.rows: dict[str, dict] = {}  # mode -> {"dice", "hd95", "precision", "sensitivity", "model", ...}
        self.result_layers: dict[str, Labels] = {}  # mode -> its Labels layer on the show_on image
        self.views: list = []  # image views the side-by-side grid added
        self._done: list[dict] = []  # finished modes of the running job (filled in the job's thread)

    def _ordered(self, layers) -> list:
        """Layers in layer-list order (the order they were added; the dock's lists may
        give them in the order they were clicked)."""
        layers = list(layers or [])
        index = {id(lay): i for i, lay in enumerate(self.viewer.layers)}
        return sorted(layers, key=lambda lay: index.get(id(lay), len(index)))

    def device(self):
        s = self.settings.device
        return select_device(None if s in (None, "auto") else s)

    def _config(self, steps: int, **changes) -> TransferConfig:
        s = self.settings
        if s.optimizer not in ("adam", "rmsprop"):
            raise InputError(f"Unknown optimizer {s.optimizer!r}; choose 'adam' or 'rmsprop'.")
        steps = int(steps)
        return TransferConfig(steps=steps, batch_size=int(s.batch_size), optimizer=s.optimizer, lr=float(s.lr),
                              seed=int(s.seed), device=str(self.device()),
                              val_every=int(s.val_every or max(1, steps // 10)), **changes)

    def _emit_progress(self, section: str, mode: str | None):
        def cb(p: Progress):
            m = dict(p.metrics)
            self._emit("progress", {"section": section, "mode": m.pop("mode", mode), "step": m.pop("mode_step", p.step),
                                    **m})
        return cb

    # -------------------------------------------------------------- source
    def source_data(self):
        """(train, val, volumes) of the source modality: its layers and phantom subjects."""
        s = self.settings
        if s.source_modality not in MODALITIES:
            raise InputError(f"Unknown source modality {s.source_modality!r}; choose one of {list(MODALITIES)}.")
        vols = []
        if s.source_images or s.source_labels:
            vols = layer_volumes(self._ordered(s.source_images), self._ordered(s.source_labels), s.source_modality,
                                 "source")
        if int(s.phantom_subjects) > 0:
            vols += phantom_volumes(s.phantom_subjects, s.source_modality, s.phantom_seed, s.phantom_shape, len(vols))
        if not vols:
            raise InputError(f"There is no source data: pick {s.source_modality} image layers and their tumour labels, "
                             "or set 'phantom subjects' above 0.")
        return (*source_split(vols, s.fraction, s.seed, s.source_modality), vols)

    def train_source(self, block: bool = False):
        """Button **Train source model**: a SegAN on the source modality, saved as a new
        version of ``segan_tumour`` (segmentor) and ``segan_tumour_critic``."""
        return self._run(self._start_source, block)

    def _start_source(self):
        self._check_idle()
        s = self.settings
        if s.critic_input not in CRITIC_MODES:
            raise InputError(f"Unknown critic input {s.critic_input!r}; choose one of {list(CRITIC_MODES)}.")
        train, val, vols = self.source_data()
        cfg = self._config(s.source_steps, modality=s.source_modality, critic_input=s.critic_input)
        val = val if has_tumour(val) else None
        what = f"{len(vols)} {s.source_modality} volume(s): " + ", ".join(v["name"] for v in vols)
        gen = segan.train_segan_model(self.registry, train, val, cfg, name=SOURCE_NAME,
                                      seg_features=tuple(s.seg_features), critic_features=tuple(s.critic_features),
                                      data_name=what)

        def on_done(result):
            entry = (result or {}).get("entry")
            self._result = entry
            if entry is None:
                self._say("Source training saved nothing (stopped before its first validation).")
                return
            dice = (entry.meta.get("metrics") or {}).get("dice")
            score = f"; best validation Dice {dice:.3f} at step {entry.meta['metrics'].get('best_step')}" \
                if isinstance(dice, float) and math.isfinite(dice) else " (no validation slices with tumour)"
            self.settings.source_name, self.settings.source_version = SOURCE_NAME, entry.version
            self._emit("settings")
            self._say(f"Trained {entry.label} on {s.source_modality} ({s.critic_input} critic input, "
                      f"{len(train['mask'])} training slices){score}. It is the source model now.")

        self._emit("job", {"section": "source", "modes": ["source"]})
        self._say(f"Training a {s.critic_input} SegAN on {len(train['mask'])} {s.source_modality} slices "
                  f"({'no validation' if val is None else str(len(val['mask'])) + ' validation'}) for "
                  f"{s.source_steps} steps.")
        return self.runner.start(gen, on_done=on_done, on_progress=self._emit_progress("source", "source"))

    def source_model(self) -> dict:
        """The source SegAN (``load_segan``'s dict), with its critic; one clear error if
        there is none or its critic is missing."""
        s = self.settings
        if not self.registry.list(s.source_name):
            raise InputError(f"There is no source model ({s.source_name}) yet: train one in 'Source model' first, "
                             "or pick another.")
        entry = self.registry.get(s.source_name, s.source_version)
        ref = entry.meta.get("critic")
        if not ref:
            raise InputError(f"The source model {entry.label} has no critic saved with it, so it cannot be "
                             "fine-tuned adversarially; pick another version or train a source model.")
        if not any(e.version == ref.get("version") for e in self.registry.list(ref.get("name"))):
            raise InputError(f"The critic of the source model {entry.label} ({ref.get('name')} v{ref.get('version')}) "
                             "is missing from the registry; pick another version or train a source model.")
        src = segan.load_segan(self.registry, entry.name, entry.version)
        mods = src["meta"].get("modality")
        if isinstance(mods, list) and len(mods) != 1:
            raise InputError(f"The source model {entry.label} reads {len(mods)} modalities ({mods}); transfer "
                             "starts from a single-modality model.")
        src["entry"] = entry
        return src

    # ------------------------------------------------------------- transfer
    def target_data(self):
        """(train, val, test, volumes) of the target modality, split as set."""
        s = self.settings
        if s.target_modality not in MODALITIES:
            raise InputError(f"Unknown target modality {s.target_modality!r}; choose one of {list(MODALITIES)}.")
        images = self._ordered(s.target_images)
        vols = layer_volumes(images, self._ordered(s.target_labels), s.target_modality, "target")
        if s.split == "layers":
            if not s.held_out:
                raise InputError("Pick the held-out target layers (validation and test), or split by fraction.")
            others = [x.name for x in s.held_out if x not in images]
            if others:
                raise InputError(f"The held-out layers {others} are not among the target images; pick them there too.")
            if len(s.held_out) == len(images):
                raise InputError("Every target layer is held out: leave at least one for fine-tuning.")
            held = [images.index(x) for x in self._ordered(s.held_out)]
        elif s.split == "fraction":
            held = None
        else:
            raise InputError(f"Unknown split {s.split!r}; choose 'layers' or 'fraction'.")
        return (*target_split(vols, held, s.fraction, s.seed, s.target_modality), vols)

    def fine_tune_full(self, block: bool = False):
        """Button **Fine-tune (full)**: both nets of the source model train on the target."""
        return self.transfer(("full",), block)

    def fine_tune_frozen(self, block: bool = False):
        """Button **Fine-tune (critic frozen)**: the segmentor trains, the critic stays as it was."""
        return self.transfer(("frozen_critic",), block)

    def from_scratch(self, block: bool = False):
        """Button **From scratch**: the source's architecture, freshly initialised, trained on the target."""
        return self.transfer(("scratch",), block)

    def compare(self, block: bool = False):
        """Button **Compare**: full, critic frozen (and from scratch) one after another,
        each saved, scored on the held-out test slices and shown."""
        return self.transfer(MODES if self.settings.scratch else MODES[:2], block)

    def transfer(self, modes=MODES, block: bool = False):
        """Run ``modes`` (of "full", "frozen_critic", "scratch") in turn; returns the table rows."""
        return self._run(lambda: self._start_transfer(tuple(modes)), block)

    def _start_transfer(self, modes):
        self._check_idle()
        s = self.settings
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise InputError(f"Unknown transfer mode(s) {bad}; choose from {list(MODES)}.")
        src = self.source_model()
        train, val, test, vols = self.target_data()
        show = s.show_on
        show_stack = None if show is None else percentile_scale(layer_stack(show, "Show results on"))
        entry, mod = src["entry"], s.target_modality
        source_ref = {"name": entry.name, "version": entry.version, "modality": src["meta"].get("modality")}
        device = str(self.device())
        self._done = done = []
        test_names = sorted({vols[i]["name"] for i in set(test["subject"].tolist())}) if len(test["mask"]) else []

        def config_for(mode):
            return self._config(s.steps, modality=mod, critic_input=src["critic"].mode,
                                finetune=None if mode == "scratch" else mode, transfer=mode, source=source_ref)

        job = compare_transfer(self.registry, src, (train, val, test), vols, modes, config_for, name=TRANSFER_NAME,
                               steps=int(s.steps), device=device, show_stack=show_stack, done=done)

        def on_done(_result):
            self._show_results(list(done), show)
            stopped = [r["mode"] for r in done if r["stopped"]]
            rows = " · ".join(f"{ROW_NAMES[r['mode']]} {r['dice']:.3f}" for r in done if math.isfinite(r["dice"]))
            saved = [r["model"] for r in done if r["mode"] != "source_only"]
            note = f" Stopped during {ROW_NAMES[stopped[0]]}: its best weights so far are saved and scored." if stopped else ""
            if len(done) <= 1:
                self._say(f"Stopped before any {mod} model was saved; the table shows the source model only.")
            else:
                self._say(f"Test Dice on {len(test['mask'])} held-out {mod} slices ({', '.join(test_names)}): {rows}. "
                          f"Saved {', '.join(saved)}.{note}")
            self._result = dict(self.rows)

        self._emit("job", {"section": "transfer", "modes": list(modes)})
        self._say(f"Transfer {entry.label} ({source_ref['modality']}) to {mod}: {len(train['mask'])} training, "
                  f"{len(val['mask'])} validation and {len(test['mask'])} test slices; "
                  f"{' then '.join(ROW_NAMES[m] for m in modes)}, {s.steps} steps each.")
        return self.runner.start(job, on_done=on_done, on_progress=self._emit_progress("transfer", None))

    # --------------------------------------------------------------- predict
    def predict(self, block: bool = False):
        """Button **Predict**: the whole-tumour mask of any image layer with any version."""
        return self._run(self._start_predict, block)

    def _start_predict(self):
        self._check_idle()
        s = self.settings
        if s.predict_image is None:
            raise InputError("Pick the image layer to segment.")
        stack = percentile_scale(layer_stack(s.predict_image, "Predict on"))
        entry = self.registry.get(s.predict_name, s.predict_version)
        model, meta = entry.load()
        image, device = s.predict_image, self.device()
        trained = meta.get("modality")
        layer_mod = _info(image).get("modality")
        note = (f" Note: the model was trained on {trained}, the layer is {layer_mod}."
                if layer_mod and trained and layer_mod != trained else "")

        def job():
            yield Progress(0, 1, f"segmenting {image.name!r} with {entry.label}")
            out = segan.predict_slices(model, stack, device)
            yield Progress(1, 1, "done")
            return out

        def on_done(labels):
            if labels is None:
                return
            data = labels[0] if image.ndim == 2 else labels
            layer = self.viewer.add_labels(data, name=f"{image.name} [{entry.name} v{entry.version}]", opacity=0.5,
                                           scale=tuple(image.scale), translate=tuple(image.translate),
                                           metadata={"medseg": {"model": entry.label, "image": image.name}})
            self._result = layer
            self._say(f"Segmented {image.name!r} with {entry.label}: {int(data.sum())} tumour pixels.{note}")

        return self.runner.start(job(), on_done=on_done)

    def describe(self, name: str, version: int | None = None) -> str:
        """One line about a saved version: modality, critic input, transfer mode, Dice."""
        try:
            e = self.registry.get(name, version)
        except InputError:
            return f"{name}: none yet"
        cfg = e.meta.get("config") or {}
        dice = (e.meta.get("metrics") or {}).get("dice")
        how = cfg.get("transfer")
        src = cfg.get("source") or {}
        parts = [e.label, str(e.meta.get("modality", "?")), f"{e.meta.get('critic_input', '?')} critic"]
        if how:
            parts.append(f"{how} from {src.get('name')} v{src.get('version')}")
        if isinstance(dice, float) and math.isfinite(dice):
            parts.append(f"val Dice {dice:.3f}")
        return " · ".join(parts)


__all__ = ["TransferController", "TransferSettings", "TransferConfig", "MODEL_NAMES", "SOURCE_NAME", "TRANSFER_NAME"]
