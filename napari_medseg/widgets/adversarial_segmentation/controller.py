"""The Adversarial segmentation widget's controller (Chen et al. 2019): layers in, a trained
segmentor and LGE labels out; no Qt widgets.

The dock's buttons call these methods and so can the napari console, e.g.
``c.map_patient("P1"); c.set(method="adversarial_transfer", steps=300); c.train(block=True);
c.predict(block=True)``. The method itself is :mod:`napari_medseg.methods.adversarial_segmentation.chen`.
See docs/widgets/adversarial_segmentation.md.

A patient is a mapping of layers to its sequences: the annotated sequences (bSSFP, T2) as an
image and a labels layer each, the target sequence (LGE) as an image, and optionally LGE
labels. LGE labels are never trained on: they give the validation Dice (and decide which
weights are kept). Patients gathered with **Add patient**, the patient mapped now, and
optionally extra phantom patients (labelled on bSSFP and T2, like MS-CMR's patients 6-35)
make the training cohort.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image, Labels

from ...methods.adversarial_segmentation.labels import CLASS_COLOURS, class_features
from ...core.device import select_device
from ...core.errors import InputError
from ...core.jobs import Progress
from ...core.registry import Registry
from ...methods.adversarial_segmentation.chen import (METHODS, PAPER_NAMES, ChenConfig, check_config,
                                                     predict_slices, train_chen_model)
from ...methods.adversarial_segmentation.cohort import (SOURCES, TARGET, Patient, class_dice, class_labels,
                                                       pseudo_masks, training_cohort)
from ...core.options import defaults
from ...methods.adversarial_segmentation.options import DEFAULTS as _DEFAULTS, TrainOptions
from .._common import check_on_image_grid, layer_placement
from .._controller import Controller, said as _said

MODEL_NAME = "chen_cardiac"
SEQ_SETTINGS = {"bSSFP": ("bssfp", "bssfp_labels"), "T2": ("t2", "t2_labels"), "LGE": ("lge", "lge_labels")}
LAYER_SETTINGS = tuple(k for pair in SEQ_SETTINGS.values() for k in pair)
METHOD_LABELS = {"unet": "U-Net", "adversarial": "adversarial", "adversarial_transfer": "adversarial + weak transfer"}
G_LOSSES = ("loss_g", "loss_id", "loss_dt")
D_LOSSES = ("loss_d", "loss_adv")
DICE = ("val_dice", "val_dice_LV", "val_dice_myo", "val_dice_RV")


@dataclass
class AdversarialSettings:
    """Everything a button press uses; the dock's controls mirror it."""

    bssfp: Image | None = None  # the patient mapped now: annotated sequences, image + labels ...
    bssfp_labels: Labels | None = None
    t2: Image | None = None
    t2_labels: Labels | None = None
    lge: Image | None = None  # ... the target sequence ...
    lge_labels: Labels | None = None  # ... and its labels, for validation Dice only (never trained on)
    slice_axis: str = "first"  # "first" (napari's order) or "last" (NIfTI short-axis stacks: H, W, slices)
    patients: list = field(default_factory=list)  # more patients: {setting name: layer} (Add patient)
    phantoms: int = _DEFAULTS["phantoms"]  # extra phantom patients (bSSFP + T2 labelled) added to the training set
    phantom_seed: int = _DEFAULTS["phantom_seed"]
    size: int = _DEFAULTS["size"]  # common in-plane size (square) to centre-crop / pad slices to; 0: as they are
    method: str = defaults(TrainOptions)["variant"]  # "unet", "adversarial" or "adversarial_transfer"
    steps: int = _DEFAULTS["steps"]  # all iterations (k), pre-training included
    pretrain_steps: int = _DEFAULTS["pretrain_steps"]  # supervised iterations of G before the adversarial ones (j)
    batch_size: int = _DEFAULTS["batch_size"]
    lr: float = _DEFAULTS["lr"]
    adv_weight: float = _DEFAULTS["adv_weight"]  # weight of G's adversarial term (the paper: 1)
    d_warmup: bool = _DEFAULTS["d_warmup"]  # D also learns during G's pre-training (not in Algorithm 1)
    device: str = "auto"
    seed: int = _DEFAULTS["seed"]
    predict_image: Image | None = None  # None: the mapped LGE image
    version: int | None = None  # for Predict: None = the current version


def _patient_id(mapping: dict, index: int) -> str:
    for key in LAYER_SETTINGS:
        lay = mapping.get(key)
        pid = ((getattr(lay, "metadata", None) or {}).get("cardiac") or {}).get("patient")
        if pid:
            return str(pid)
    lay = mapping.get("lge") or next(iter(mapping.values()), None)
    return lay.name if lay is not None else f"patient {index + 1}"


class AdversarialController(Controller):
    """Scriptable state and actions of the Adversarial segmentation widget."""

    def __init__(self, viewer, runner, registry: Registry | None = None):
        super().__init__()  # listeners get ("progress", metrics), ("patients", ids), ("message", str), ("settings",)
        self.viewer, self.runner = viewer, runner
        self.registry = registry or Registry()
        self.settings = AdversarialSettings()
        self.labels_layer: Labels | None = None
        self.last_training: dict | None = None

    def set(self, **changes):
        """Change settings, as the dock's controls do; ``method`` also takes the dock's
        names ("U-Net", "adversarial", "adversarial + weak transfer")."""
        if "method" in changes:
            by_label = {v: k for k, v in METHOD_LABELS.items()}
            changes["method"] = by_label.get(changes["method"], changes["method"])
        super().set(**changes)

    def device(self):
        s = self.settings.device
        return select_device(None if s in (None, "auto") else s)

    # ----------------------------------------------------------- layers in
    def mapping(self) -> dict:
        """The patient mapped now: {setting name: layer} of the layers picked."""
        return {k: getattr(self.settings, k) for k in LAYER_SETTINGS if getattr(self.settings, k) is not None}

    def _mappings(self) -> list[dict]:
        """Added patients, then the one mapped now unless it is one of them."""
        current, out = self.mapping(), list(self.settings.patients)
        images = {k: v for k, v in current.items() if k in ("bssfp", "t2", "lge")}
        if images and not any(all(m.get(k) is v for k, v in images.items()) for m in out):
            out.append(current)
        return out

    def patient_ids(self) -> list[str]:
        """Patients found in layer metadata (the sample's ``cardiac.patient``)."""
        ids = [((lay.metadata or {}).get("cardiac") or {}).get("patient") for lay in self.viewer.layers]
        return list(dict.fromkeys(i for i in ids if i))

    @_said
    def map_patient(self, patient: str) -> dict:
        """Pick the layers of ``patient`` by their metadata (``cardiac``: patient, sequence)
        or their names ("P1 bSSFP", "P1 bSSFP labels", "P1 LGE labels"): the dock's **patient**."""
        found: dict = {}
        for lay in self.viewer.layers:
            info = (lay.metadata or {}).get("cardiac") or {}
            seq = info.get("sequence") if info.get("patient") == patient else None
            for s in SEQ_SETTINGS:
                if lay.name in (f"{patient} {s}", f"{patient} {s} labels"):
                    seq = s
            if seq not in SEQ_SETTINGS:
                continue
            img_key, lab_key = SEQ_SETTINGS[seq]
            key = img_key if isinstance(lay, Image) else lab_key if isinstance(lay, Labels) else None
            if key is not None and key not in found:
                found[key] = lay
        if not found:
            raise InputError(f"No layers of patient {patient!r}: name them '{patient} bSSFP', "
                             f"'{patient} bSSFP labels', ... or pick them one by one.")
        self.set(**{k: found.get(k) for k in LAYER_SETTINGS})
        return found

    def _stack(self, layer, pid: str, seq: str, what: str = "image") -> np.ndarray:
        if layer not in self.viewer.layers:
            raise InputError(f"Patient {pid}: the {seq} {what} layer {layer.name!r} is no longer in the viewer; "
                             "pick it again (or Clear the patient list and add the patients again).")
        if getattr(layer, "multiscale", False) or getattr(layer, "rgb", False):
            raise InputError(f"Patient {pid}: the {seq} {what} {layer.name!r} is multiscale or RGB; map a grey "
                             "stack of short-axis slices.")
        data = np.asarray(layer.data)
        if data.ndim == 2:
            data = data[None]
        elif data.ndim == 3:
            if self.settings.slice_axis == "last":
                data = np.moveaxis(data, -1, 0)
        else:
            raise InputError(f"Patient {pid}: the {seq} {what} {layer.name!r} is {data.ndim}-D (shape {data.shape});"
                             " map a stack of short-axis slices (slices, H, W), one sequence per layer.")
        return data

    def _labels(self, lab_layer, img_layer, pid: str, seq: str, notes: list) -> np.ndarray:
        lab = self._stack(lab_layer, pid, seq, "labels")
        check_on_image_grid(lab_layer, img_layer, f"Patient {pid}: the {seq}")
        return class_labels(lab, f"Patient {pid}: the {seq} labels {lab_layer.name!r}", notes)

    def read_patient(self, mapping: dict, index: int = 0) -> Patient:
        """One patient's stacks from its layers, each checked (one message per problem)."""
        pid = _patient_id(mapping, index)
        images, labels, notes = {}, {}, []
        for seq, (img_key, lab_key) in SEQ_SETTINGS.items():
            img_layer, lab_layer = mapping.get(img_key), mapping.get(lab_key)
            if img_layer is None:
                if lab_layer is not None:
                    raise InputError(f"Patient {pid}: {seq} labels {lab_layer.name!r} are picked but no {seq} image;"
                                     " pick the image they belong to.")
                continue
            img = self._stack(img_layer, pid, seq)
            if not np.isfinite(img).all():
                raise InputError(f"Patient {pid}: the {seq} image {img_layer.name!r} has NaN or infinite values.")
            images[seq] = img.astype(np.float32)
            if lab_layer is not None:
                labels[seq] = self._labels(lab_layer, img_layer, pid, seq, notes)
        if not images:
            raise InputError(f"Patient {pid}: pick at least one image layer.")
        return Patient(pid, images, {s: labels[s] for s in SOURCES if s in labels}, labels.get(TARGET),
                            dict(mapping), notes)

    def pseudo_masks(self, patient: Patient) -> dict:
        """{source: (pseudo-masks on the LGE grid, source slice index of each LGE slice)}, with the
        patient's and the sequence's name in any message."""
        return pseudo_masks(patient, self._check_overlap)

    def _check_overlap(self, patient: Patient, src: str) -> None:
        """Stacks of one heart overlap along the slice axis; disjoint ones share no slice."""
        a, b = patient.layers.get(SEQ_SETTINGS[src][0]), patient.layers.get(SEQ_SETTINGS[TARGET][0])
        if a is None or b is None or a.ndim < 3 or b.ndim < 3:
            return
        ax = 0 if self.settings.slice_axis == "first" else a.ndim - 1

        def span(lay):
            e, half = np.asarray(lay.extent.world, float), abs(float(lay.scale[ax])) / 2
            return e[0, ax] - half, e[1, ax] + half

        (lo_a, hi_a), (lo_b, hi_b) = span(a), span(b)
        if lo_a >= hi_b or lo_b >= hi_a:
            raise InputError(f"Sequences with no slices in common: patient {patient.id}'s {src} stack {a.name!r} "
                             f"lies at {lo_a:.4g}..{hi_a:.4g} along the slice axis, its {TARGET} stack {b.name!r} at "
                             f"{lo_b:.4g}..{hi_b:.4g}. Stacks of one heart overlap: map the right layers, or fix "
                             "their placement (translate / affine).")

    # ---------------------------------------------------------- training set
    def _config(self) -> ChenConfig:
        s = self.settings
        size = None if not s.size else (tuple(int(v) for v in s.size) if np.ndim(s.size) else (int(s.size),) * 2)
        steps = int(s.steps)
        cfg = ChenConfig(method=s.method, steps=steps, pretrain_steps=int(s.pretrain_steps),
                         batch_size=int(s.batch_size), lr=float(s.lr), adv_weight=float(s.adv_weight), size=size,
                         seed=int(s.seed), d_warmup=bool(s.d_warmup),
                         device=str(self.device()), val_every=max(1, steps // 10))
        check_config(cfg)
        return cfg

    def training_set(self) -> dict:
        """The cohort a Train press uses, checked: ``{"train", "val", "patients", "phantoms", "config"}``."""
        s, cfg = self.settings, self._config()
        patients = [self.read_patient(m, i) for i, m in enumerate(self._mappings())]
        return training_cohort(patients, cfg, int(s.phantoms), int(s.phantom_seed), check=self._check_overlap)

    # -------------------------------------------------------------- actions
    @_said
    def add_patient(self) -> dict:
        """Button **Add patient**: keep the patient mapped now, to map another."""
        current = self.mapping()
        if not any(k in current for k in ("bssfp", "t2", "lge")):
            raise InputError("Map a patient first: pick its images (and labels) above.")
        p = self.read_patient(current, len(self.settings.patients))
        if self.settings.method == "adversarial_transfer" and p.labels and TARGET in p.images:
            self.pseudo_masks(p)
        same = [m for m in self.settings.patients
                if any(m.get(k) is not None and m.get(k) is current.get(k) for k in ("bssfp", "t2", "lge"))]
        self.settings.patients = [m for m in self.settings.patients if not any(m is x for x in same)] + [current]
        ids = self.patient_list()
        self._emit("patients", ids)
        self._say(f"The training set has {len(ids)} patient(s): {', '.join(ids)}"
                  + (f" ({'; '.join(p.notes)})" if p.notes else "") + ".")
        return current

    def clear_patients(self):
        """Button **Clear list**: forget the added patients (the layers stay)."""
        self.settings.patients = []
        self._emit("patients", [])
        self._say("The patient list is empty; the patient mapped now is still used.")

    def patient_list(self) -> list[str]:
        return [_patient_id(m, i) for i, m in enumerate(self.settings.patients)]

    @_said
    def show_pseudo_masks(self) -> list:
        """Button **Show pseudo-masks**: the mapped patient's bSSFP/T2 labels on the LGE grid,
        slice j of m taking source slice floor(j·n/m), one Labels layer per source."""
        p = self.read_patient(self.mapping())
        masks = self.pseudo_masks(p)
        lge = p.layers["lge"]
        out, lines = [], []
        for src, (m, index) in masks.items():
            data = np.moveaxis(m, 0, -1) if self.settings.slice_axis == "last" and lge.ndim == 3 else m
            data = data.reshape(np.shape(lge.data))
            name = f"{lge.name} pseudo-masks from {src}"
            meta = {"medseg": {"pseudo_masks": {"source": src, "target": TARGET, "patient": p.id,
                                                "source_slice_of_each_target_slice": index.tolist()}}}
            if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
                layer = self.viewer.layers[name]
                layer.data, layer.metadata = data, meta
            else:
                layer = self.viewer.add_labels(data, name=name, opacity=0.5, colormap=dict(CLASS_COLOURS),
                                               features=class_features(), metadata=meta, **layer_placement(lge))
            out.append(layer)
            lines.append(f"{src} (n={len(p.labels[src])}): {index.tolist()}")
        self._say(f"Pseudo-masks on {lge.name!r} (m={len(p.images[TARGET])} slices): {TARGET} slice j takes source "
                  f"slice floor(j*n/m). " + "; ".join(lines))
        return out

    def train(self, block: bool = False):
        """Button **Train**: train_chen_model on the cohort; saves a new ``chen_cardiac`` version
        (Stop keeps the best weights so far)."""
        return self._run(self._start_train, block)

    def _start_train(self):
        self._check_idle()
        t = self.training_set()
        cfg = t["config"]
        n_val = len(t["val"])
        what = (f"{len(t['patients'])} patient(s) from layers" + (f" + {t['phantoms']} phantom(s)" if t["phantoms"]
                                                                   else ""))
        gen = train_chen_model(self.registry, t["train"], t["val"] or None, cfg, name=MODEL_NAME,
                               data=f"{what} in napari")
        self._say(f"Training {METHOD_LABELS[cfg.method]} ({PAPER_NAMES[cfg.method]}) on {what}: {t['slices']} "
                  f"labelled slices" + (f", {t['pairs']} {TARGET} pseudo-mask pairs" if t["pairs"] else "")
                  + (f"; validating on {n_val} patient(s)' {TARGET} labels." if n_val else
                     f"; no {TARGET} labels mapped, so nothing to validate on: the last weights are kept."))
        self.last_training = {"patients": [p.id for p in t["patients"]], "phantoms": t["phantoms"],
                              "method": cfg.method}

        def on_progress(p: Progress):
            self._emit("progress", {"step": p.step, **p.metrics})

        before = {e.version for e in self.registry.list(MODEL_NAME)}

        def on_done(result):
            entry = (result or {}).get("entry")
            if result is None:  # stopped: the engine saved the best weights so far, if any
                new = [e for e in self.registry.list(MODEL_NAME) if e.version not in before]
                self._result = new[-1] if new else None
                self._say(f"Stopped: saved {new[-1].label}, the best weights so far." if new else
                          "Stopped before the first step: nothing saved.")
                return
            self._result = entry
            m, step = result.get("best_metrics") or {}, result.get("best_step")
            score = (f"; best validation Dice {m['dice']:.3f} (" + ", ".join(
                f"{k[5:]} {v:.2f}" for k, v in m.items() if k.startswith("dice_")) + f") at step {step}"
                     if isinstance(m.get("dice"), float) else "")
            self._say(f"Saved {entry.label}, {METHOD_LABELS[cfg.method]} ({PAPER_NAMES[cfg.method]}){score}.")

        return self.runner.start(gen, on_done=on_done, on_progress=on_progress)

    def model_entry(self):
        if not self.registry.list(MODEL_NAME):
            raise InputError(f"There is no {MODEL_NAME} model yet: press Train first.")
        return self.registry.get(MODEL_NAME, self.settings.version)

    def _reference(self, image) -> Labels | None:
        """LGE labels to score a prediction of ``image`` against: mapped with it, or a Labels
        layer of the same patient's LGE (the sample's truth) on the same grid."""
        for m in [*self.settings.patients, self.mapping()]:
            if m.get("lge") is image and m.get("lge_labels") is not None:
                return m["lge_labels"]
        info = (image.metadata or {}).get("cardiac") or {}
        for lay in self.viewer.layers:
            other = (lay.metadata or {}).get("cardiac") or {}
            if (isinstance(lay, Labels) and info.get("patient") and other.get("patient") == info.get("patient")
                    and other.get("sequence") == info.get("sequence") and np.shape(lay.data) == np.shape(image.data)):
                return lay
        return None

    def predict(self, block: bool = False):
        """Button **Predict**: segment the picked image (default: the mapped LGE) slice by slice
        into a Labels layer with the class names, placed on the image."""
        return self._run(self._start_predict, block)

    def _start_predict(self):
        self._check_idle()
        layer = self.settings.predict_image or self.settings.lge
        if layer is None:
            raise InputError(f"Pick the {TARGET} (target) image to segment: 'segment' under Predict, or the "
                             f"{TARGET} image above.")
        stack = self._stack(layer, _patient_id({"lge": layer}, 0), "target")
        if not np.isfinite(stack).all():
            raise InputError(f"The image {layer.name!r} has NaN or infinite values.")
        entry = self.model_entry()
        model, _meta = entry.load()
        device = self.device()

        def job():
            yield Progress(0, 1, f"segmenting {layer.name} with {entry.label}")
            labels = predict_slices(model, stack, device)
            yield Progress(1, 1, "done")
            return labels

        def on_done(labels):
            if labels is None:
                return
            data = np.moveaxis(labels, 0, -1) if self.settings.slice_axis == "last" and layer.ndim == 3 else labels
            data = data.reshape(np.shape(layer.data))
            name = f"{layer.name} [{entry.name} v{entry.version}]"
            meta = {"medseg": {"model": entry.name, "version": entry.version, "method": entry.meta.get("method"),
                               "prediction": data.copy()}}
            if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
                self.labels_layer = self.viewer.layers[name]
                self.labels_layer.data, self.labels_layer.metadata = data, meta
            else:
                self.labels_layer = self.viewer.add_labels(data, name=name, opacity=0.6, colormap=dict(CLASS_COLOURS),
                                                           features=class_features(), metadata=meta,
                                                           **layer_placement(layer))
            self._result = self.labels_layer
            ref = self._reference(layer)
            score = ""
            if ref is not None:
                d = class_dice(data, np.asarray(ref.data))
                if d:
                    score = (f" Dice against {ref.name!r}: " + ", ".join(f"{k} {v:.2f}" for k, v in d.items())
                             + f" (mean {np.mean(list(d.values())):.2f}).")
                    meta["medseg"]["dice"] = d
            self._say(f"Segmented {layer.name!r} with {entry.label}.{score}")

        return self.runner.start(job(), on_done=on_done)

    @_said
    def rollback(self, version: int | None = None):
        """Make an earlier ``chen_cardiac`` version current (nothing is deleted)."""
        if version is None:
            version = self.registry.previous_version(MODEL_NAME)
        entry = self.registry.restore(MODEL_NAME, version)
        self._say(f"Rolled back: {entry.label} is current.")
        return entry


__all__ = ["AdversarialController", "AdversarialSettings", "METHODS", "MODEL_NAME"]
