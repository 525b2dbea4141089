"""A training cohort as a user brings it (Chen et al. 2019): patients whose annotated sequences
(bSSFP, T2) carry labels and whose target sequence (LGE) carries none (or labels used only to
validate), plus optional phantom patients; every check with the patient's name in its message.

The widget's controller reads patients from layers into :class:`Patient`; everything from
there on is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core.errors import InputError
from . import cardiac
from .chen import CLASS_NAMES, ChenConfig
from .chen_data import chen_training_data, chen_validation_data

TARGET, SOURCES = "LGE", ("bSSFP", "T2")
N_CLASSES = len(cardiac.LABEL_NAMES)


@dataclass
class Case:  # what the engine reads of a patient
    id: str
    images: dict
    labels: dict


@dataclass
class Patient:
    """One patient's stacks (slices, H, W), slice axis first."""

    id: str
    images: dict  # sequence -> float32 stack
    labels: dict  # annotated source sequence -> uint8 stack (trained on)
    target_labels: np.ndarray | None  # LGE labels (validation only)
    layers: dict = field(default_factory=dict)  # where it came from (the widget: setting name -> layer)
    notes: list = field(default_factory=list)


def class_labels(lab: np.ndarray, where: str, notes: list) -> np.ndarray:
    """Labels as classes 0..3 (background, LV blood pool, LV myocardium, RV); MS-CMR's codes
    500/200/600 are converted (and ``notes`` says so); anything else is refused."""
    values = np.unique(lab)
    if values.size and (values.min() < 0 or values.max() >= N_CLASSES):
        if set(values.tolist()) <= {0, *cardiac.MSCMR_VALUES}:
            notes.append(f"{where}: MS-CMR codes 500/200/600 read as LV/myo/RV")
            return cardiac.from_mscmr(lab)
        raise InputError(f"{where} hold values {values[:8].tolist()}{'...' if values.size > 8 else ''}; expected 0 "
                         "background, 1 LV blood pool, 2 LV myocardium, 3 RV (or MS-CMR's 500/200/600).")
    return np.asarray(lab).astype(np.uint8)


def pseudo_masks(patient: Patient, check=None) -> dict:
    """{source: (pseudo-masks on the LGE grid, source slice index of each LGE slice)};
    ``check(patient, source)`` runs first for each source (the widget: do the stacks overlap)."""
    if TARGET not in patient.images:
        raise InputError(f"Empty target set: patient {patient.id} has no {TARGET} image mapped; pseudo-masks "
                         f"are drawn on the {TARGET} slices.")
    if not patient.labels:
        raise InputError(f"Patient {patient.id} has no labels on {' or '.join(SOURCES)}, so there are no "
                         f"pseudo-masks for {TARGET}; pick the labels layers of the annotated sequences.")
    target = patient.images[TARGET]
    out = {}
    for src, lab in patient.labels.items():
        if check is not None:
            check(patient, src)
        try:
            masks = cardiac.pseudo_masks(lab, len(target), target.shape[1:])
        except InputError as exc:
            raise InputError(f"Patient {patient.id}, {src} -> {TARGET}: {exc}") from None
        out[src] = (masks, cardiac.map_slices(len(lab), len(target)))
    return out


def training_cohort(patients: list[Patient], cfg: ChenConfig, phantoms: int = 0, phantom_seed: int = 7,
                    check=None) -> dict:
    """The cohort training uses, checked: ``{"train", "val", "patients", "phantoms", "config",
    "slices", "pairs"}``. ``train``: patients with source labels (+ ``phantoms`` phantom
    patients labelled on bSSFP and T2); ``val``: patients' LGE with its labels. Patients with
    one id get a number. ``check``: as in :func:`pseudo_masks`."""
    ids = [p.id for p in patients]
    for i, p in enumerate(patients):  # two layer sets both tagged P1, say
        if ids.count(p.id) > 1:
            p.id = f"{p.id} ({i + 1})"
    if not patients and phantoms <= 0:
        raise InputError("Map a patient: the bSSFP and T2 images with their labels, and the LGE image (or pick "
                         "'patient' to fill them in), or set extra phantom patients.")
    if cfg.method == "adversarial_transfer":
        if not any(TARGET in p.images for p in patients) and phantoms <= 0:
            raise InputError(f"Empty target set: weak domain transfer learns from the {TARGET} (target) images, "
                             f"with pseudo-masks from their patient's {' and '.join(SOURCES)} labels, and no "
                             f"patient has an {TARGET} image mapped. Map the {TARGET} images, or pick 'U-Net' "
                             "or 'adversarial'.")
        for p in patients:
            if p.labels and TARGET not in p.images:
                raise InputError(f"Empty target set for patient {p.id}: weak domain transfer needs its {TARGET} "
                                 f"image, to put the pseudo-masks on. Map it, or pick 'U-Net' or 'adversarial'.")
            if p.labels:
                pseudo_masks(p, check)  # each patient's slice mapping checked, with its name
    train = [Case(p.id, p.images, p.labels) for p in patients if p.labels]
    val = [Case(p.id, {TARGET: p.images[TARGET]}, {TARGET: p.target_labels})
           for p in patients if p.target_labels is not None]
    extra = []
    if phantoms > 0:
        shapes = [im.shape[1:] for p in patients for im in p.images.values()]
        size = cfg.size or (shapes[0] if shapes else (96, 96))
        extra = cardiac.cardiac_cohort(int(phantoms), seed=int(phantom_seed), size=tuple(size),
                                       labelled_sequences=SOURCES, n_fully_labelled=0, n_unlabelled=0)
    if not train and not extra:
        raise InputError(f"No training labels: none of the {len(patients)} patient(s) has {' or '.join(SOURCES)} "
                         "labels picked. Pick the labels layers of the annotated sequences, or add phantoms.")
    train = train + extra
    try:
        data = chen_training_data(train, cfg)  # the engine's own checks, before anything runs
        if val:
            chen_validation_data(val, cfg)
    except InputError as exc:
        raise InputError(str(exc).replace("(config.size)", "('common size' in the dock)")) from None
    return {"train": train, "val": val, "patients": patients, "phantoms": len(extra), "config": cfg,
            "slices": len(data.identity), "pairs": 0 if data.transfer is None else len(data.transfer)}


def class_dice(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Dice per heart class present in either map (class name -> Dice)."""
    from ...core.metrics import dice

    return {name: dice(pred, ref, c) for c, name in CLASS_NAMES.items() if (pred == c).any() or (ref == c).any()}
