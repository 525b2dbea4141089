"""The Segment widget's controller: a registered model over an image layer, tiled; retrain
from corrections.

The dock's buttons call these methods and so can the napari console, e.g.
``w.controller.run(block=True)``. The engine is :mod:`napari_medseg.core.segment`; the
retraining recipes are the methods' own (``RETRAINERS``). See docs/widgets/segment.md.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels

from ...core import paths
from ...core.corrections import autosave_corrections, corrections_dir
from ...core.device import select_device
from ...core.errors import InputError
from ...core.options import SegmentOptions, defaults
from ...core.registry import Registry
from ...core.segment import run_segmentation
from ...core.tiling import open_pyramid_output
from ...methods.tissue import retrain_tissue
from ...methods.tissue.options import DEFAULTS as _TISSUE
from .._common import SMALL_ENOUGH_TO_PAINT, layer_level, layer_unit, level_scale, stored_labels
from .._controller import Controller
from .._runner import JobRunner

RETRAINERS = {"tissue": retrain_tissue}  # meta["method"] -> the recipe that fine-tunes it on corrections
DEFAULT_MODEL = "tissue"
_ENGINE = defaults(SegmentOptions)


@dataclass
class SegmentSettings:
    """Everything a button press uses; the dock's controls mirror it."""

    image: Image | None = None
    model: str | None = None  # a registered model that describes its input and output (meta["io"])
    version: int | None = None  # None: the current version, resolved when a job starts
    level: int = _ENGINE["level"]  # pyramid level
    tile: int = _ENGINE["tile"]
    batch_size: int = _ENGINE["batch_size"]
    device: str = "auto"
    labels: Labels | None = None  # a result of Run, corrected by painting
    steps: int = _TISSUE["steps"]  # retraining steps per round


class SegmentController(Controller):
    """Scriptable state and actions of the Segment widget."""

    def __init__(self, viewer, runner: JobRunner, registry: Registry | None = None):
        super().__init__()  # listeners get ("message", str), ("settings", None), ("result", layer), ("trained", entry)
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = SegmentSettings()
        names = self.model_names()
        if names:  # the reference model first, whatever else is installed
            self.settings.model = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
        self.history: list[dict] = []  # one record per retraining round finished here
        self._lines: list[str] = []  # what the dock shows under its Retrain button
        self.last_result = None  # the Labels layer of the last run

    def model_names(self) -> list[str]:
        return sorted({e.name for e in self.registry.list() if e.meta.get("io")})

    def entry(self):
        """The model version a run would use now: "current" follows roll-backs at once."""
        name = self.settings.model
        if not name:
            raise InputError("No segmentation model found; train one (`napari-medseg train tissue`).")
        return self.registry.get(name, self.settings.version)

    def _device(self):
        return select_device(None if self.settings.device == "auto" else self.settings.device)

    # --------------------------------------------------------------------- run
    def run(self, block: bool = False):
        """Segment the image layer with the chosen model into a new Labels layer (and zarr store)."""
        return self._run(self._start_run, block)

    def _start_run(self):
        self._check_idle()
        s, layer = self.settings, self.settings.image
        if layer is None:
            raise InputError("Open or pick an image layer first.")
        entry = self.entry()
        data, level = layer_level(layer, s.level)
        device = self._device()
        model, meta = entry.load(device)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        safe = paths.safe_name(layer.name, "image")
        out_path = paths.user_data_dir() / "results" / f"{safe}-{entry.name}-v{entry.version}-{stamp}.zarr"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        gen = run_segmentation(model, meta, data, out_path, tile=s.tile, batch_size=s.batch_size, output="labels",
                               device=device, rgb=bool(layer.rgb), pixel_size=level_scale(layer, level),
                               unit=layer_unit(layer))
        info = {"model": entry.name, "version": entry.version, "sha256": entry.meta.get("sha256", ""),
                "prediction": str(out_path), "image_layer": layer.name, "level": level}
        metadata = {"medseg": info, "medseg_io": dict(layer.metadata.get("medseg_io", {}))}
        name = f"{layer.name} [{entry.name} v{entry.version}]"
        scale, translate = level_scale(layer, level), tuple(layer.translate)[: data.ndim - int(layer.rgb)]
        state = {"layer": None}

        def on_progress(_p):
            if state["layer"] is None:  # the store exists from the first tile on: show it filling
                data, multiscale = stored_labels(out_path, in_memory=False)
                nd = (data[0] if multiscale else data).ndim
                state["layer"] = self.viewer.add_labels(data, name=name, scale=scale[:nd], translate=translate[:nd],
                                                        metadata=metadata, multiscale=multiscale)
            else:
                state["layer"].refresh()

        def on_done(result):
            lay = state["layer"]
            self._result = lay
            if result is None or lay is None:
                return
            if not lay.multiscale:
                lay.data = np.asarray(result[0][...])  # in memory, so it can be painted
            lay.refresh()
            self.last_result = lay
            self.set(labels=lay)
            self._emit("result", lay)

        return self.runner.start(gen, on_done=on_done, on_progress=on_progress)

    # ----------------------------------------------------------------- retrain
    def retrain(self, block: bool = False):
        """Fine-tune the model a corrected result came from on the corrections; a new version."""
        return self._run(self._start_retrain, block)

    def _start_retrain(self):
        self._check_idle()
        lay = self.settings.labels
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
        before = entry.version
        gen = retrainer(self.registry, np.asarray(image), corrected, original, steps=self.settings.steps,
                        device=self._device())
        saved = autosave_corrections(corrected, corrections_dir(entry.name),
                                     {"model": entry.name, "version": info["version"], "image_layer": image_layer.name})
        self._say(f"Corrections saved to {saved}")

        def on_done(result):
            saved_entry = result.get("entry") if isinstance(result, dict) else None
            self._result = result
            if saved_entry is not None and not saved_entry.made_current:  # kept, but it validated worse
                self._lines.append(saved_entry.note)
                self._emit("kept", saved_entry)
                self._say(saved_entry.note)
                return
            new = self.registry.get(entry.name)  # also when stopped: the best so far was saved
            if new.version == before:
                return
            record = {k: v for k, v in new.meta.get("metrics", {}).items() if isinstance(v, float)}
            self.history.append({"version": new.version, **record})
            self._lines.append(f"v{new.version}: " + ", ".join(f"{k} {v:.3f}" for k, v in record.items()))
            self.set(version=None)
            self._emit("trained", new)
            self._say(f"Trained {new.label}")

        return self.runner.start(gen, on_done=on_done)

    def rounds_text(self) -> str:
        """One line per retraining round finished here (``v2: val_dice 0.996``), and the note of
        a round whose version was kept but not made current."""
        return "\n".join(self._lines)
