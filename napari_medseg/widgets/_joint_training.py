"""The two training jobs of the Joint lesion + tissue controller: fine-tuning on corrected
scans, and training from dataset folders. Each writes a new registry version."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.errors import InputError
from ..methods.joint_lesion_tissue import inference
from ..methods.joint_lesion_tissue.labels import LABEL_SETS
from ..methods.joint_lesion_tissue.models import BASELINE_NAMES, folder_training_data, label_set_of, train_joint_model
from ..methods.joint_lesion_tissue.training import JointConfig

LOSSES = ("loss_tissue", "loss_lesion", "loss_inter")


def _resume(c, name: str):
    """(state, meta) of the current version of ``name``, or None if there is none."""
    if not c.registry.list(name):
        return None
    model, meta = c.registry.get(name).load()
    return model.state_dict(), meta


def _config_from(meta: dict, **changes) -> JointConfig:
    """The checkpoint's training configuration with ``changes`` (label set and tuples restored)."""
    known = {f.name for f in dataclasses.fields(JointConfig)}
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in (meta.get("config") or {}).items() if k in known}
    cfg["label_set"] = label_set_of(meta)
    cfg.update(changes)
    return JointConfig(**cfg)


def _on_progress(c):
    def cb(p):
        c._emit("progress", {"step": p.step, **p.metrics})
    return cb


def _on_done(c, what: str):
    def cb(result):
        entry = (result or {}).get("entry")
        c._result = entry
        if entry is None:
            c._say(f"{what} saved nothing (stopped before the first validation).")
            return
        dice = (result.get("best_metrics") or {}).get("dice")
        score = f", validation mean Dice {dice:.3f}" if isinstance(dice, float) else ""
        c._say(f"{what}: saved {entry.label}{score}. Segment again to see it; Roll back undoes it.")
    return cb


def start_retraining(c):
    """Autosave the corrections, then fine-tune the model the labels came from on every
    corrected scan so far (controls: all; patients: those with FLAIR)."""
    c._check_idle()
    c.add_correction()
    s = c.settings
    entry = c.scan["entry"]
    model, meta = entry.load()
    ls = label_set_of(meta)
    controls, patients, val = [], [], []
    for scan in c.corrected:
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
    patch = tuple(int(min(p, n)) for p, n in zip(_config_from(meta).patch_size, val[0]["T1"].shape))
    cfg = _config_from(meta, steps=int(s.retrain_steps), warmup=0, mode=mode, patch_size=patch,
                       val_every=max(1, int(s.retrain_steps) // 3), device=str(c.device()),
                       roi_size=val[0]["T1"].shape, modalities=tuple(m for m in model.modalities if m in val[0]))
    if mode == "tissue_only":
        cfg = dataclasses.replace(cfg, modalities=("T1",))
    c._say(f"Corrections autosaved ({c.corrected[-1]['saved']}); fine-tuning {entry.label} on "
           f"{len(c.corrected)} corrected scan(s) for {s.retrain_steps} steps.")
    gen = train_joint_model(c.registry, controls, patients, val, cfg, resume=(model.state_dict(), meta),
                            data=f"{len(c.corrected)} corrected scan(s) in napari", name=entry.name,
                            spacing=inference.model_spacing(meta, c.corrected[0]["affine"]),
                            record_mode=inference.model_mode(meta))
    return c.runner.start(gen, on_done=_on_done(c, "Retrained"), on_progress=_on_progress(c))


def start_folder_training(c):
    """Train (or fine-tune) the joint model, or a baseline, from dataset descriptions."""
    c._check_idle()
    s = c.settings
    name = BASELINE_NAMES.get(s.mode)
    if name is None:
        raise InputError(f"Unknown mode {s.mode!r}; choose one of {', '.join(BASELINE_NAMES)}.")
    resume = _resume(c, name) if s.finetune else None
    spacing = tuple((resume[1].get("spacing") if resume else None) or (1.5, 1.5, 1.5))
    controls, patients, val, classes = folder_training_data(s.controls or None, s.patients or None,
                                                            s.validation or None, spacing=spacing)
    label_set = label_set_of(resume[1]) if resume else LABEL_SETS[classes]
    if resume and label_set.names != LABEL_SETS[classes].names and classes in LABEL_SETS:
        raise InputError(f"The current {name} predicts {', '.join(label_set.names)}; the datasets use the "
                         f"{classes!r} classes. Untick 'fine-tune' to train a new model for them.")
    if s.mode == "supervised":
        patients, val = val, val
    shapes = [np.shape(x["T1"]) for x in controls + patients]
    patch = tuple(min(int(s.patch), *[sh[i] for sh in shapes]) for i in range(3))
    cfg = JointConfig(patch_size=patch, steps=int(s.steps), warmup=int(s.warmup), mode=s.mode, label_set=label_set,
                      val_every=max(1, int(s.steps) // 10), device=str(c.device()),
                      roi_size=tuple(max(64, p) for p in patch))
    if resume:
        cfg = _config_from(resume[1], **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                                         if f.name not in ("modalities", "shared_modalities")})
    c._say(f"Training {name} ({s.mode}) on {len(controls)} control and {len(patients)} lesion scan(s)"
           f"{', validating on ' + str(len(val)) if val else ' (no fully labelled scans: nothing to validate on)'}.")
    if not val:
        raise InputError("Give a validation description with fully labelled scans (label_set 'joint'); the "
                         "best validation Dice decides which weights are kept.")
    gen = train_joint_model(c.registry, controls, patients, val, cfg, resume=resume, spacing=spacing,
                            data=f"{s.controls or '-'} + {s.patients or '-'}", name=name)
    return c.runner.start(gen, on_done=_on_done(c, f"Trained {name}"), on_progress=_on_progress(c))
