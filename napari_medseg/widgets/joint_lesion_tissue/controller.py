"""The Joint lesion + tissue widget's controller: layers in, labels and volumes out; no Qt widgets.

The dock's buttons call these methods and so can the napari console, e.g.
``w.controller.set(t1=viewer.layers["T1"]); w.controller.segment(block=True)``. The
method itself is :mod:`napari_medseg.methods.joint_lesion_tissue`. See
docs/widgets/joint_lesion_tissue.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels, Layer

from ...core.corrections import autosave_corrections, corrections_dir
from ...core.device import select_device
from ...core.errors import InputError
from ...core.jobs import Progress
from ...core.registry import Registry
from ...methods.joint_lesion_tissue import inference, jobs
from ...methods.joint_lesion_tissue.datasets import check_brain, resample_to
from ...methods.joint_lesion_tissue.metrics import lesion_stats, volumes_ml
from ...methods.joint_lesion_tissue.models import MODEL_NAME, label_set_of
from ...methods.joint_lesion_tissue.options import DEFAULTS as _DEFAULTS
from .._controller import Controller

MODALITY_SETTINGS = {"T1": "t1", "FLAIR": "flair", "T2": "t2", "T1c": "t1c"}


@dataclass
class JointSettings:
    """Everything a button press uses; the dock's controls mirror it."""

    t1: Image | None = None
    flair: Image | None = None
    t2: Image | None = None
    t1c: Image | None = None
    mask: Layer | None = None  # brain mask (Labels or Image; non-zero = brain), e.g. for skull-stripped scans
    resample: bool = False  # put other modalities (and the mask) onto the T1 grid instead of refusing
    refine: bool = True  # native-resolution refinement of the network's probabilities
    min_lesion_ml: float = 0.01  # smaller lesion components are removed
    model: str = MODEL_NAME  # or a baseline: joint_tissue_only, joint_lesion_only, joint_supervised
    version: int | None = None  # None: the current version
    device: str = "auto"
    retrain_steps: int = _DEFAULTS["retrain_steps"]
    controls: str = ""  # dataset descriptions (CSV/YAML) for training from folders
    patients: str = ""
    validation: str = ""
    mode: str = "joint"
    steps: int = _DEFAULTS["steps"]
    warmup: int = _DEFAULTS["warmup"]
    patch: int = _DEFAULTS["patch"]
    finetune: bool = True  # start from the current version rather than from scratch


def layer_affine(layer: Image) -> np.ndarray:
    """The layer's voxel-to-world affine: the NIfTI affine when the reader kept it, else
    napari's scale and translate."""
    io = (layer.metadata or {}).get("medseg_io") or {}
    if io.get("affine") is not None:
        return np.asarray(io["affine"], float)
    aff = np.eye(4)
    nd = min(3, layer.ndim)
    aff[:nd, :nd] = np.diag(np.asarray(layer.scale, float)[-nd:])
    aff[:nd, 3] = np.asarray(layer.translate, float)[-nd:]
    return aff


class JointController(Controller):
    """Scriptable state and actions of the Joint lesion + tissue widget."""

    def __init__(self, viewer, runner, registry: Registry | None = None):
        super().__init__()  # listeners get ("volumes", rows), ("progress", metrics), ("message", str), ("settings", None)
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = JointSettings()
        self.result: inference.ScanResult | None = None
        self.labels_layer: Labels | None = None
        self.scan: dict | None = None  # the volumes, affine and T1 layer the labels belong to
        self.corrected: list[dict] = []  # corrected scans gathered for retraining

    def device(self):
        s = self.settings.device
        return select_device(None if s == "auto" else s)

    # ----------------------------------------------------------- layers in
    def volumes(self) -> tuple[dict, np.ndarray, Image]:
        """The mapped modalities as arrays on the T1 grid, the T1 affine and the T1 layer."""
        s = self.settings
        layers = {m: getattr(s, attr) for m, attr in MODALITY_SETTINGS.items() if getattr(s, attr) is not None}
        if "T1" not in layers:
            given = ", ".join(layers) or "none"
            raise InputError(f"Map a T1 layer (mapped: {given}). The model segments tissue from T1 alone and "
                             "tissue + lesions from T1 + FLAIR; without T1 it has nothing it was trained on.")
        t1 = layers["T1"]
        ref_aff, vols = layer_affine(t1), {}
        for mod, lay in layers.items():
            if lay.multiscale or lay.rgb:
                raise InputError(f"The {mod} layer {lay.name!r} is multiscale or RGB; map a grey 3-D volume.")
            vol = np.asarray(lay.data, np.float32)
            if vol.ndim != 3:
                raise InputError(f"The {mod} layer {lay.name!r} is {vol.ndim}-D (shape {vol.shape}); map a 3-D "
                                 "volume (a 4-D file holds several volumes: open them as separate layers).")
            if not np.isfinite(vol).all():
                raise InputError(f"The {mod} layer {lay.name!r} has NaN or infinite values; fix or mask them first.")
            check_brain(vol, f"The {mod} layer {lay.name!r}")
            aff = layer_affine(lay)
            same = vol.shape == np.shape(t1.data) and np.allclose(aff, ref_aff, atol=1e-3)
            if not same and mod != "T1":
                if not s.resample:
                    raise InputError(f"{mod} ({lay.name!r}, shape {vol.shape}) is not on the T1 grid (shape "
                                     f"{np.shape(t1.data)}, or another affine). Tick 'resample onto T1' to "
                                     "resample it, or co-register the scans first.")
                vol = resample_to(ref_aff, np.shape(t1.data), vol, aff, order=1)
            vols[mod] = vol
        return vols, ref_aff, t1

    def mask_array(self, t1: Image, ref_aff) -> np.ndarray | None:
        """The brain mask on the T1 grid (resampled when 'resample' is ticked), or None."""
        lay = self.settings.mask
        if lay is None:
            return None
        if lay.multiscale or getattr(lay, "rgb", False):
            raise InputError(f"The mask layer {lay.name!r} is multiscale or RGB; map a 3-D mask.")
        m = np.asarray(lay.data)
        aff = layer_affine(lay)
        if m.shape != np.shape(t1.data) or not np.allclose(aff, ref_aff, atol=1e-3):
            if not self.settings.resample or m.ndim != 3:
                raise InputError(f"The mask {lay.name!r} (shape {m.shape}) is not on the T1 grid (shape "
                                 f"{np.shape(t1.data)}); tick 'resample onto T1' or give a mask on the T1 grid.")
            m = resample_to(ref_aff, np.shape(t1.data), (m != 0).astype(np.uint8), aff, order=0)
        return inference.check_mask(m, np.shape(t1.data))

    def model_entry(self):
        return self.registry.get(self.settings.model, self.settings.version)

    # -------------------------------------------------------------- actions
    def segment(self, block: bool = False):
        """Button **Segment**: one Labels layer with the named classes, and the volume table."""
        return self._run(self._start_segment, block)

    def _start_segment(self):
        self._check_idle()
        vols, affine, t1 = self.volumes()
        mask = self.mask_array(t1, affine)
        entry = self.model_entry()
        model, meta = entry.load()
        label_set, device, s = label_set_of(meta), self.device(), self.settings

        def job():
            yield Progress(0, 1, f"segmenting with {entry.label}")
            result = inference.segment_scan(model, meta, label_set, vols, affine, device, mask=mask,
                                            refine=s.refine, min_lesion_ml=s.min_lesion_ml)
            yield Progress(1, 1, "done")
            return result

        def on_done(result):
            if result is None:
                return
            self.result, self.scan = result, {"volumes": vols, "affine": affine, "t1": t1, "entry": entry}
            self._show_labels(result, t1, entry)
            self._result = self.labels_layer
            note = f" Ignored (not inputs of this model): {', '.join(result.ignored)}." if result.ignored else ""
            extra = (f" {result.rejected_lesions} lesion candidate(s) removed (smaller than {result.min_lesion_ml:g} mL "
                     "or not supported by the images)." if result.rejected_lesions else "")
            self._say(f"Segmented {t1.name!r} with {entry.label} from {' + '.join(result.used)}"
                      f"{' inside the brain mask' if result.masked else ''}.{note}{extra}"
                      f"{' ' + result.warning if result.warning else ''}")

        return self.runner.start(job(), on_done=on_done)

    def _show_labels(self, result, t1: Image, entry):
        from napari.utils.colormaps import DirectLabelColormap

        ls = result.label_set
        colours = {i: c for i, c in enumerate(ls.colours)}
        colours[None] = "transparent"
        place = {"affine": t1.affine.affine_matrix} if not np.allclose(t1.affine.affine_matrix, np.eye(4)) else {}
        name = f"{t1.name} [{entry.name} v{entry.version}]"
        self.labels_layer = self.viewer.add_labels(
            result.labels, name=name, opacity=0.6, scale=tuple(t1.scale), translate=tuple(t1.translate), **place,
            colormap=DirectLabelColormap(color_dict=colours),
            features={"index": list(range(ls.n_classes)), "class": list(ls.names)},
            metadata={"medseg": {"model": entry.name, "version": entry.version, "used": result.used,
                                 "prediction": result.labels.copy()},
                      "medseg_io": {**((t1.metadata or {}).get("medseg_io") or {}),
                                    "affine": np.asarray(self.scan["affine"]).tolist()}})
        self.labels_layer.events.paint.connect(lambda _e=None: self.refresh_volumes())
        self._emit("volumes", self.volume_table())

    def volume_table(self) -> list[tuple[str, float]]:
        """(class, mL) of the labels layer as it is now (corrections included), then the lesion count."""
        if self.labels_layer is None or self.result is None:
            return []
        labels, ls, sp = np.asarray(self.labels_layer.data), self.result.label_set, self.result.spacing
        rows = list(volumes_ml(labels, ls, sp).items())
        return rows + [("lesion count", float(lesion_stats(labels, ls, sp)["lesion_count"])),
                       ("min lesion (mL)", float(self.result.min_lesion_ml))]

    def refresh_volumes(self):
        self._emit("volumes", self.volume_table())

    def export(self, path) -> str:
        """Button **Export**: the labels as NIfTI (or OME-TIFF/Zarr), keeping the scan's affine."""
        from ...core.io import write_labels

        if self.labels_layer is None:
            raise InputError("Segment a scan first; there are no labels to export.")
        if not str(path):
            raise InputError("Choose a file name (.nii.gz) to export to.")
        out = write_labels(path, np.asarray(self.labels_layer.data), self.labels_layer.metadata["medseg_io"])
        self._say(f"Exported {self.labels_layer.name!r} to {out}.")
        return str(out)

    def export_volumes(self, path) -> str:
        """Button **Export volumes (CSV)**: the volume table as it is now (corrections
        included), one row with the columns ``predict joint_lesion_tissue`` writes."""
        from ...core.outputs import write_csv

        rows = self.volume_table()
        if not rows:
            raise InputError("Segment a scan first; there is no volume table to export.")
        if not str(path):
            raise InputError("Choose a file name (.csv) to export the volumes to.")
        entry = self.scan["entry"]
        record = {"subject": self.scan["t1"].name, "model": entry.label, "modalities": "+".join(self.result.used)}
        record.update({name if name in ("lesion count", "min lesion (mL)") else f"{name} (mL)": value
                       for name, value in rows})
        out = write_csv(path, [record], what="volume table")
        self._say(f"Exported the volumes of {self.scan['t1'].name!r} to {out}.")
        return str(out)

    def add_correction(self) -> dict:
        """Autosave the painted labels and keep the scan for retraining (the patient set
        when FLAIR was used, the control set always)."""
        if self.labels_layer is None or self.scan is None:
            raise InputError("Segment a scan and correct its labels first.")
        edited = np.asarray(self.labels_layer.data)
        original = self.labels_layer.metadata["medseg"]["prediction"]
        changed = int((edited != original).sum())
        if changed == 0:
            raise InputError("The labels are as the model predicted them; paint your corrections first.")
        self.result.label_set.check(edited, what="corrected labels")
        entry = self.scan["entry"]
        saved = autosave_corrections(edited, corrections_dir(entry.name),
                                     {"scan": self.scan["t1"].name, "model": entry.name, "version": entry.version,
                                      "changed_voxels": changed, "affine": np.asarray(self.scan["affine"]).tolist()})
        self.corrected = [c for c in self.corrected if c["t1"] is not self.scan["t1"]]
        self.corrected.append({**self.scan, "labels": edited.copy(), "saved": str(saved), "changed": changed})
        return self.corrected[-1]

    def retrain(self, block: bool = False):
        """Button **Retrain from corrections**: autosave, then fine-tune a new version on every
        scan corrected so far."""
        return self._run(self._start_retraining, block)

    def train(self, block: bool = False):
        """Button **Train**: from the control and patient dataset descriptions."""
        return self._run(self._start_folder_training, block)

    def _start_retraining(self):
        self._check_idle()
        self.add_correction()
        gen, what = jobs.retrain_from_corrections(self.registry, self.scan["entry"], self.corrected,
                                                  int(self.settings.retrain_steps), str(self.device()))
        self._say(f"Corrections autosaved ({self.corrected[-1]['saved']}); {what}.")
        return self._start_training(gen, "Retrained")

    def _start_folder_training(self):
        self._check_idle()
        s = self.settings
        gen, what = jobs.train_from_folders(self.registry, s.mode, s.controls, s.patients, s.validation, steps=s.steps,
                                            warmup=s.warmup, patch=s.patch, finetune=s.finetune,
                                            device=str(self.device()))
        self._say(what)
        return self._start_training(gen, f"Trained {jobs.BASELINE_NAMES[s.mode]}")

    def _start_training(self, gen, what: str):
        def on_done(result):
            entry = (result or {}).get("entry")
            self._result = entry
            if entry is None:
                self._say(f"{what} saved nothing (stopped before the first validation).")
                return
            dice = (result.get("best_metrics") or {}).get("dice")
            score = f", validation mean Dice {dice:.3f}" if isinstance(dice, float) else ""
            self._say(f"{what}: saved {entry.label}{score}. Segment again to see it; Roll back undoes it.")

        return self.runner.start(gen, on_done=on_done,
                                 on_progress=lambda p: self._emit("progress", {"step": p.step, **p.metrics}))

    def rollback(self, version: int | None = None):
        """Button **Roll back**: make an earlier version of the picked model current."""
        name = self.settings.model
        if version is None:
            version = self.registry.previous_version(name)
        entry = self.registry.restore(name, version)
        self._say(f"Rolled back: {entry.label} is current.")
        return entry
