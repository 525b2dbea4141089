"""Segment widget: run a registered model over an image layer, tiled; correct; retrain.

Everything here is also scriptable: ``widget.run()``, ``widget.retrain()`` from the
napari console, or the engine's generators directly (see docs/widgets/segment.md).
"""

from __future__ import annotations

import datetime as _dt

import dask.array as da
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from ..core import paths
from ..core.corrections import autosave_corrections, corrections_dir
from ..core.device import select_device
from ..core.errors import InputError, MedsegError
from ..core.registry import Registry
from ..core.segment import run_segmentation
from ..methods.tissue import retrain_tissue
from ._common import SMALL_ENOUGH_TO_PAINT, device_picker, layer_level, layer_picker, level_scale
from ._runner import JobRunner

RETRAINERS = {"tissue": retrain_tissue}


class SegmentWidget(Container):
    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.registry = registry or Registry()
        self.image = layer_picker(napari_viewer, Image, "image")
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.level = SpinBox(label="pyramid level", value=0, min=0, max=12)
        self.tile = SpinBox(label="tile size", value=1024, min=128, max=8192, step=64)
        self.batch_size = SpinBox(label="batch size", value=1, min=1, max=64)
        self.device = device_picker()
        self.run_button = PushButton(text="Run")
        self.labels = layer_picker(napari_viewer, Labels, "corrected labels")
        self.steps = SpinBox(label="retrain steps", value=60, min=1, max=10000)
        self.retrain_button = PushButton(text="Retrain from corrections")
        self.rounds = Label(value="")
        self.extend([self.image, self.model, self.level, self.tile, self.batch_size, self.device,
                     self.run_button, self.labels, self.steps, self.retrain_button, self.rounds])
        self.runner = JobRunner()
        self.native.layout().addWidget(self.runner)
        self.run_button.changed.connect(lambda _=None: self.run())
        self.retrain_button.changed.connect(lambda _=None: self.retrain())
        self.history: list[dict] = []
        self.last_result = None

    # ------------------------------------------------------------------ choices
    def _model_choices(self, _w=None):
        out = []
        for e in self.registry.list():
            if e.meta.get("io"):
                out.append((e.label, e))
        return out

    def refresh_models(self, select=None):
        self.model.reset_choices()
        if select is not None:
            for label, entry in self._model_choices():
                if entry.path == select.path:
                    self.model.value = entry

    # --------------------------------------------------------------------- run
    def run(self):
        try:
            return self._start_run()
        except MedsegError as exc:
            show_error(str(exc))
        return None

    def _start_run(self):
        layer, entry = self.image.value, self.model.value
        if layer is None:
            raise InputError("Open or pick an image layer first.")
        if entry is None:
            raise InputError("No segmentation model found; train one (`napari-medseg train tissue`).")
        data, level = layer_level(layer, self.level.value)
        device = select_device(None if self.device.value == "auto" else self.device.value)
        model, meta = entry.load(device)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out_path = paths.user_data_dir() / "results" / f"{layer.name}-{entry.name}-v{entry.version}-{stamp}.zarr"
        gen = run_segmentation(model, meta, data, out_path, tile=self.tile.value, batch_size=self.batch_size.value,
                               output="labels", device=device, rgb=bool(layer.rgb))
        info = {"model": entry.name, "version": entry.version, "sha256": entry.meta.get("sha256", ""),
                "prediction": str(out_path), "image_layer": layer.name, "level": level}
        name = f"{layer.name} [{entry.name} v{entry.version}]"
        scale, translate = level_scale(layer, level), tuple(layer.translate)[: data.ndim - int(layer.rgb)]
        state = {"layer": None}

        def on_progress(_p):
            if state["layer"] is None:  # the store exists from the first tile on: show it filling
                arr = da.from_zarr(str(out_path))
                state["layer"] = self.viewer.add_labels(arr, name=name, scale=scale[: arr.ndim],
                                                        translate=translate[: arr.ndim], metadata={"medseg": info})
            else:
                state["layer"].refresh()

        def on_done(result):
            lay = state["layer"]
            if result is None or lay is None:
                return
            if int(np.prod(result.shape)) <= SMALL_ENOUGH_TO_PAINT:
                lay.data = np.asarray(result[...])  # in memory, so it can be painted
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
        lay = self.labels.value
        if lay is None or "medseg" not in lay.metadata:
            raise InputError("Pick a labels layer that a model produced (and that you corrected).")
        info = lay.metadata["medseg"]
        entry = self.registry.get(info["model"])
        retrainer = RETRAINERS.get(entry.meta.get("method"))
        if retrainer is None:
            raise InputError(f"Model {entry.name} has no retraining recipe.")
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
        import zarr

        original = np.asarray(zarr.open_array(info["prediction"], mode="r")[...])
        saved = autosave_corrections(corrected, corrections_dir(entry.name),
                                     {"model": entry.name, "version": entry.version, "image_layer": image_layer.name})
        device = select_device(None if self.device.value == "auto" else self.device.value)
        gen = retrainer(self.registry, np.asarray(image), corrected, original, steps=self.steps.value, device=device)
        show_info(f"Corrections saved to {saved}")

        def on_done(result):
            if not result or result.get("entry") is None:
                return
            new = result["entry"]
            self.history.append({"version": new.version, **result.get("best_metrics", {})})
            self.rounds.value = "\n".join(
                f"v{h['version']}: " + ", ".join(f"{k} {v:.3f}" for k, v in h.items() if k != "version")
                for h in self.history
            )
            self.refresh_models(select=new)
            show_info(f"Trained {new.label}")

        return self.runner.start(gen, on_done=on_done)

