"""Segment widget: run a registered model over an image layer, tiled; correct; retrain.

Everything here is also scriptable: ``widget.run()``, ``widget.retrain()`` from the
napari console, or the engine's generators directly (see docs/widgets/segment.md).
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from ..core import paths, registry as registry_mod
from ..core.corrections import autosave_corrections, corrections_dir
from ..core.device import select_device
from ..core.errors import InputError, MedsegError
from ..core.registry import Registry
from ..core.runstate import interrupted_note
from ..core.segment import run_segmentation
from ..core.tiling import open_pyramid_output
from ..methods.tissue import retrain_tissue
from ._common import CURRENT, SMALL_ENOUGH_TO_PAINT, device_picker, layer_level, layer_picker, layer_unit, level_scale, \
    stored_labels, version_choices
from ._runner import JobRunner

RETRAINERS = {"tissue": retrain_tissue}
DEFAULT_MODEL = "tissue"


def _safe(name: str) -> str:
    return paths.safe_name(name, "image")


class SegmentWidget(Container):
    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.registry = registry or Registry()
        self.image = layer_picker(napari_viewer, Image, "image")
        self.model = ComboBox(label="model", choices=self._model_names)
        self.version = ComboBox(label="version", choices=self._versions)
        self.level = SpinBox(label="pyramid level", value=0, min=0, max=12)
        self.tile = SpinBox(label="tile size", value=1024, min=128, max=8192, step=64)
        self.batch_size = SpinBox(label="batch size", value=1, min=1, max=64)
        self.device = device_picker()
        self.run_button = PushButton(text="Run")
        self.labels = layer_picker(napari_viewer, Labels, "corrected labels")
        self.steps = SpinBox(label="retrain steps", value=60, min=1, max=10000)
        self.retrain_button = PushButton(text="Retrain from corrections")
        self.rounds = Label(value="")
        self.resumable = Label(value="")  # an interrupted (killed) training run of this model, if any
        self.extend([self.image, self.model, self.version, self.level, self.tile, self.batch_size, self.device,
                     self.run_button, self.labels, self.steps, self.retrain_button, self.rounds, self.resumable])
        self.runner = JobRunner()
        self.native.layout().addWidget(self.runner)
        if DEFAULT_MODEL in self._model_names():  # the reference model first, whatever else is installed
            self.model.value = DEFAULT_MODEL
        self.model.changed.connect(lambda _=None: (self.version.reset_choices(), self._show_resumable()))
        self._show_resumable()
        self.run_button.changed.connect(lambda _=None: self.run())
        self.retrain_button.changed.connect(lambda _=None: self.retrain())
        self.history: list[dict] = []
        self.last_result = None
        token = registry_mod.subscribe(self._on_registry_changed)
        self.native.destroyed.connect(lambda *_: registry_mod.unsubscribe(token))

    # ------------------------------------------------------------------ choices
    def _model_names(self, _w=None):
        return sorted({e.name for e in self.registry.list() if e.meta.get("io")})

    def _versions(self, _w=None):
        return version_choices(self.registry, self.model.value if hasattr(self, "model") else None)

    def entry(self):
        """The model version a run would use now: 'current' follows roll-backs at once."""
        name = self.model.value
        if not name:
            raise InputError("No segmentation model found; train one (`napari-medseg train tissue`).")
        version = self.version.value
        return self.registry.get(name, None if version == CURRENT else int(version))

    def _show_resumable(self):
        self.resumable.value = interrupted_note(self.model.value) if self.model.value else ""

    @ensure_main_thread
    def _on_registry_changed(self, _name=None):
        self.model.reset_choices()
        self.version.reset_choices()
        self._show_resumable()

    def _check_idle(self):
        if self.runner.running:
            raise InputError("A job is already running; press Stop or wait for it to finish.")

    # --------------------------------------------------------------------- run
    def run(self):
        try:
            return self._start_run()
        except MedsegError as exc:
            show_error(str(exc))
        return None

    def _start_run(self):
        self._check_idle()
        layer = self.image.value
        if layer is None:
            raise InputError("Open or pick an image layer first.")
        entry = self.entry()
        data, level = layer_level(layer, self.level.value)
        device = select_device(None if self.device.value == "auto" else self.device.value)
        model, meta = entry.load(device)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out_path = paths.user_data_dir() / "results" / f"{_safe(layer.name)}-{entry.name}-v{entry.version}-{stamp}.zarr"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        gen = run_segmentation(model, meta, data, out_path, tile=self.tile.value, batch_size=self.batch_size.value,
                               output="labels", device=device, rgb=bool(layer.rgb),
                               pixel_size=level_scale(layer, level), unit=layer_unit(layer))
        info = {"model": entry.name, "version": entry.version, "sha256": entry.meta.get("sha256", ""),
                "prediction": str(out_path), "image_layer": layer.name, "level": level}
        metadata = {"medseg": info, "medseg_io": dict(layer.metadata.get("medseg_io", {}))}
        name = f"{layer.name} [{entry.name} v{entry.version}]"
        scale, translate = level_scale(layer, level), tuple(layer.translate)[: data.ndim - int(layer.rgb)]
        state = {"layer": None}

        def on_progress(_p):
            if state["layer"] is None:  # the store exists from the first tile on: show it filling
                data, multiscale = stored_labels(out_path, in_memory=False)  # shown while it fills
                nd = (data[0] if multiscale else data).ndim
                state["layer"] = self.viewer.add_labels(data, name=name, scale=scale[:nd], translate=translate[:nd],
                                                        metadata=metadata, multiscale=multiscale)
            else:
                state["layer"].refresh()

        def on_done(result):
            lay = state["layer"]
            if result is None or lay is None:
                return
            if not lay.multiscale:
                lay.data = np.asarray(result[0][...])  # in memory, so it can be painted
            lay.refresh()
            self.last_result = lay
            self.labels.reset_choices()
            self.labels.value = lay

        return self.runner.start(gen, on_done=on_done, on_progress=on_progress)

    # ----------------------------------------------------------------- retrain
    def retrain(self):
        try:
            return self._start_retrain()
        except MedsegError as exc:
            show_error(str(exc))
        return None

    def _start_retrain(self):
        self._check_idle()
        lay = self.labels.value
        info = (lay.metadata.get("medseg") or {}) if lay is not None else {}
        if "model" not in info:
            raise InputError("Pick a labels layer that a model produced (and that you corrected).")
        entry = self.registry.get(info["model"])
        retrainer = RETRAINERS.get(entry.meta.get("method"))
        if retrainer is None:
            boxes = entry.meta.get("method") == "gupta2019-box-iterative"
            where = " (retrain it in the Box-supervised training dock)" if boxes else ""
            raise InputError(f"Model {entry.name} has no retraining recipe in this dock{where}.")
        if info["image_layer"] not in self.viewer.layers:
            raise InputError(f"The image layer {info['image_layer']!r} this result came from is gone.")
        image_layer = self.viewer.layers[info["image_layer"]]
        image, _ = layer_level(image_layer, int(info["level"]))
        corrected = lay.data
        if isinstance(corrected, list) or int(np.prod(corrected.shape)) > SMALL_ENOUGH_TO_PAINT:
            raise InputError("This result is too large to retrain from in memory; segment a coarser pyramid level.")
        corrected = np.asarray(corrected)
        if not corrected.any():
            raise InputError("The corrected labels are empty: paint the tissue (label 1) first.")
        original = np.asarray(open_pyramid_output(info["prediction"])[0][...])
        device = select_device(None if self.device.value == "auto" else self.device.value)
        before = entry.version
        gen = retrainer(self.registry, np.asarray(image), corrected, original, steps=self.steps.value, device=device)
        saved = autosave_corrections(corrected, corrections_dir(entry.name),
                                     {"model": entry.name, "version": info["version"], "image_layer": image_layer.name})
        show_info(f"Corrections saved to {saved}")

        def on_done(result):
            saved_entry = result.get("entry") if isinstance(result, dict) else None
            if saved_entry is not None and not saved_entry.made_current:  # kept, but it validated worse
                self.rounds.value = "\n".join(filter(None, [self.rounds.value, saved_entry.note]))
                self.version.reset_choices()
                show_info(saved_entry.note)
                return
            new = self.registry.get(entry.name)  # also when stopped: the best so far was saved
            if new.version == before:
                return
            self.history.append({"version": new.version, **{k: v for k, v in new.meta.get("metrics", {}).items()
                                                             if isinstance(v, float)}})
            self.rounds.value = "\n".join(
                f"v{h['version']}: " + ", ".join(f"{k} {v:.3f}" for k, v in h.items() if k != "version")
                for h in self.history
            )
            self.version.reset_choices()
            self.version.value = CURRENT
            show_info(f"Trained {new.label}")

        return self.runner.start(gen, on_done=on_done)
