"""The joint method's two training jobs as progress generators, Qt-free: fine-tuning a model
on corrected scans, and training from dataset descriptions. The dock, the console and
scripts call the same functions; each returns ``(generator, what it will do in one line)``
and the generator writes a new registry version (see :func:`.models.train_joint_model`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...core.errors import InputError
from . import inference
from .labels import LABEL_SETS
from .models import BASELINE_NAMES, folder_training_data, label_set_of, train_joint_model
from .training import JointConfig

LOSSES = ("loss_tissue", "loss_lesion", "loss_inter")  # what the generators report each step


def config_from(meta: dict, **changes) -> JointConfig:
    """A checkpoint's training configuration with ``changes`` (label set and tuples restored)."""
    known = {f.name for f in dataclasses.fields(JointConfig)}
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in (meta.get("config") or {}).items() if k in known}
    cfg["label_set"] = label_set_of(meta)
    cfg.update(changes)
    return JointConfig(**cfg)


def retrain_from_corrections(registry, entry, scans: list[dict], steps: int, device: str = "cpu"):
    """Fine-tune ``entry``'s model on every corrected scan (dicts with ``volumes``, ``labels``,
    ``affine``): controls from all of them, patients from those with FLAIR. A T1-only
    correction of the joint model teaches its tissue side."""
    if not scans:
        raise InputError("Correct a segmented scan first: there is nothing to retrain from.")
    model, meta = entry.load()
    ls = label_set_of(meta)
    controls, patients, val = [], [], []
    for scan in scans:
        ctrl, pat, v = inference.training_subjects(scan["volumes"], scan["labels"], scan["affine"], meta, ls)
        controls.append(ctrl)
        val.append(v)
        if pat is not None:
            patients.append(pat)
    mode = inference.model_mode(meta)
    if mode == "joint" and not patients:
        mode = "tissue_only"  # T1-only corrections teach the tissue side
    if mode in ("lesion_only", "supervised") and not patients:
        raise InputError(f"{entry.name} learns lesions from T1 + FLAIR; map the FLAIR layer, segment and correct again.")
    if mode == "supervised":
        patients = val
    patch = tuple(int(min(p, n)) for p, n in zip(config_from(meta).patch_size, val[0]["T1"].shape))
    cfg = config_from(meta, steps=int(steps), warmup=0, mode=mode, patch_size=patch,
                      val_every=max(1, int(steps) // 3), device=str(device), roi_size=val[0]["T1"].shape,
                      modalities=tuple(m for m in model.modalities if m in val[0]))
    if mode == "tissue_only":
        cfg = dataclasses.replace(cfg, modalities=("T1",))
    gen = train_joint_model(registry, controls, patients, val, cfg, resume=(model.state_dict(), meta),
                            data=f"{len(scans)} corrected scan(s) in napari", name=entry.name,
                            spacing=inference.model_spacing(meta, scans[0]["affine"]),
                            record_mode=inference.model_mode(meta))
    return gen, f"fine-tuning {entry.label} on {len(scans)} corrected scan(s) for {steps} steps"


def _current(registry, name: str):
    """(state, meta) of the current version of ``name``, or None if there is none."""
    if not registry.list(name):
        return None
    model, meta = registry.get(name).load()
    return model.state_dict(), meta


def train_from_folders(registry, mode: str, controls: str | None, patients: str | None, validation: str | None, *,
                       steps: int, warmup: int, patch: int, finetune: bool = True, device: str = "cpu"):
    """Train (or, with ``finetune``, continue) the joint model or a baseline (``mode``, a key of
    ``BASELINE_NAMES``) from dataset descriptions (CSV/YAML paths)."""
    name = BASELINE_NAMES.get(mode)
    if name is None:
        raise InputError(f"Unknown mode {mode!r}; choose one of {', '.join(BASELINE_NAMES)}.")
    resume = _current(registry, name) if finetune else None
    spacing = tuple((resume[1].get("spacing") if resume else None) or (1.5, 1.5, 1.5))
    ctrl, pat, val, classes = folder_training_data(controls or None, patients or None, validation or None,
                                                   spacing=spacing)
    label_set = label_set_of(resume[1]) if resume else LABEL_SETS[classes]
    if resume and label_set.names != LABEL_SETS[classes].names and classes in LABEL_SETS:
        raise InputError(f"The current {name} predicts {', '.join(label_set.names)}; the datasets use the "
                         f"{classes!r} classes. Untick 'fine-tune' to train a new model for them.")
    if mode == "supervised":
        pat, val = val, val
    shapes = [np.shape(x["T1"]) for x in ctrl + pat]
    size = tuple(min(int(patch), *[sh[i] for sh in shapes]) for i in range(3))
    cfg = JointConfig(patch_size=size, steps=int(steps), warmup=int(warmup), mode=mode, label_set=label_set,
                      val_every=max(1, int(steps) // 10), device=str(device), roi_size=tuple(max(64, p) for p in size))
    if resume:
        cfg = config_from(resume[1], **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                                        if f.name not in ("modalities", "shared_modalities")})
    what = (f"Training {name} ({mode}) on {len(ctrl)} control and {len(pat)} lesion scan(s)"
            f"{', validating on ' + str(len(val)) if val else ' (no fully labelled scans: nothing to validate on)'}.")
    if not val:
        raise InputError(f"{what} Give a validation description with fully labelled scans (label_set 'joint'); the "
                         "best validation Dice decides which weights are kept.")
    gen = train_joint_model(registry, ctrl, pat, val, cfg, resume=resume, spacing=spacing,
                            data=f"{controls or '-'} + {patients or '-'}", name=name)
    return gen, what
