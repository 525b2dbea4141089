"""Training jobs that write registry versions of the joint model (and its baselines),
and the phantom data the project's own training command uses."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...core.checkpoints import data_fingerprint
from ...core.training import save_best_on_exit
from .labels import LABEL_SETS
from .network import HeteroModalNet
from .training import JointConfig, train_joint

MODEL_NAME = "joint_lesion_tissue"
METHOD = "dorent2019-joint"
#: registry names of the baselines trained by the same code
BASELINE_NAMES = {"joint": MODEL_NAME, "tissue_only": "joint_tissue_only", "lesion_only": "joint_lesion_only",
                  "supervised": "joint_supervised"}


def _prepared(subject: dict, modalities, spacing, mask=None) -> dict:
    from .datasets import preprocess, resample_to

    p = preprocess({m: subject[m] for m in modalities}, subject["affine"], spacing=spacing, mask=mask)
    out = dict(p.images)
    grid = out[modalities[0]].shape
    for k in ("tissue", "lesion", "labels"):
        if k not in subject:
            continue
        lab = np.asarray(subject[k])
        same = lab.shape == grid and np.allclose(p.affine, subject["affine"], atol=1e-3)
        out[k] = lab if same else resample_to(p.affine, grid, lab, subject["affine"], order=0).astype(np.uint8)
    out["affine"] = p.affine
    return out


def phantom_training_data(n_controls: int = 4, n_patients: int = 4, n_val: int = 1, seed: int = 0,
                          shape=(64, 72, 64), spacing=(2.5, 2.5, 2.5), label_set: str = "reduced"):
    """(controls, patients, validation) from the brain phantom, preprocessed like user data:
    controls T1 + tissue, patients T1 + FLAIR + lesion, validation fully labelled."""
    from .phantom import task_datasets

    d = task_datasets(n_controls, n_patients, n_val, seed=seed, shape=tuple(shape), label_set=label_set,
                      spacing=tuple(spacing))
    controls = [_prepared(s, ("T1",), spacing) for s in d["control"]]
    patients = [_prepared(s, ("T1", "FLAIR"), spacing) for s in d["patient"]]
    val = [_prepared(s, ("T1", "FLAIR"), spacing) for s in d["test"]]
    return controls, patients, val


def plain_config(cfg: JointConfig) -> dict:
    """The config as JSON-able values (the label set by its class names)."""
    out = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    out["label_set"] = list(cfg.label_set.names)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def train_joint_model(registry, controls, patients, val, config: JointConfig, *, features=(8, 16, 16), repeat=1,
                      backbone="highresnet", resume=None, data: str = "user scans", name: str | None = None,
                      spacing=None, record_mode: str | None = None):
    """Generator: train (or fine-tune ``resume=(state, meta)``) and save the best validation
    Dice as a new registry version (``joint_lesion_tissue``, or the baseline's name).
    ``spacing``: the voxel size (mm) the scans were resampled to, kept in the checkpoint so
    inference can resample new scans the same way. ``record_mode``: the mode written into
    the checkpoint when it differs from the one trained now (a joint model fine-tuned on
    T1-only corrections is still a joint model). Returns ``{"entry", ...summary}``."""
    name = name or BASELINE_NAMES[config.mode]
    modalities = ("T1",) if config.mode == "tissue_only" else tuple(config.modalities)
    config = dataclasses.replace(config, modalities=modalities)  # model N sees T1 only
    if resume is not None:
        from ...core import nets

        model = nets.build(resume[1]["arch"])
        model.load_state_dict(resume[0])
    else:
        model = HeteroModalNet(modalities=modalities, n_classes=config.label_set.n_classes,
                               spatial_dims=np.asarray(controls[0]["T1"] if controls else patients[0]["T1"]).ndim,
                               features=tuple(features), backbone=backbone, repeat=repeat)
    best: dict = {}

    def keep(state, metrics, step):
        best.update(state=state, metrics=metrics, step=step)

    def save(b):
        ls = config.label_set
        return registry.save_new_version(
            name, b["state"], method=METHOD, arch=model.arch(),
            config={**plain_config(config), "data": data, "mode": record_mode or config.mode,
                    "trained_mode": config.mode,
                    "resumed_from": None if resume is None else resume[1].get("version")},
            metrics={**b["metrics"], "best_step": b["step"]},
            data_fingerprint=data_fingerprint(*[s["T1"] for s in (controls or []) + (patients or [])]),
            extra={"label_set": {"names": list(ls.names), "colours": list(ls.colours)},
                   "modalities": list(model.modalities),
                   "spacing": None if spacing is None else [float(v) for v in spacing]})

    result = yield from save_best_on_exit(train_joint(model, controls, patients, config, val=val, keep=keep), best,
                                          save, name=name)
    summary = {k: v for k, v in (result or {}).items() if k != "history"}
    return {**summary, "entry": best.get("entry")}


def label_set_of(meta: dict):
    """The LabelSet a checkpoint was trained with."""
    from .labels import LabelSet

    names = tuple(meta.get("label_set", {}).get("names", ()))
    for ls in LABEL_SETS.values():
        if ls.names == names:
            return ls
    return LabelSet(names=names, colours=tuple(meta["label_set"]["colours"]))


def folder_training_data(controls_description=None, patients_description=None, validation_description=None,
                         spacing=(1.5, 1.5, 1.5)):
    """(controls, patients, validation, label set name) from dataset descriptions (CSV/YAML,
    paths relative to each file's folder), preprocessed to ``spacing``. Rows labelled
    ``tissue`` are controls, ``lesion`` patients, ``joint`` fully labelled validation
    scans; every subject is read and checked before training starts."""
    from pathlib import Path

    from ...core.errors import InputError
    from .datasets import read_description, load_subject

    sets = {"control": [], "patient": [], "val": []}
    classes = set()
    for desc in (controls_description, patients_description, validation_description):
        if not desc:
            continue
        for row in read_description(desc):
            s = load_subject(row, Path(desc).parent)
            classes.add(s["classes"])
            mods = [m for m in ("T1", "FLAIR") if m in s]
            kind = "control" if "tissue" in s else "patient" if "lesion" in s else "val" if "labels" in s else None
            if kind is None:
                raise InputError(f"Subject {s['id']} in {desc} has no label file; training needs labels.")
            if kind == "patient" and "FLAIR" not in s:
                raise InputError(f"Subject {s['id']} in {desc} has lesion labels but no FLAIR; lesion scans "
                                 "need T1 + FLAIR.")
            sets[kind].append(_prepared(s, mods if kind != "control" else ("T1",), spacing))
    if len(classes) > 1:
        raise InputError(f"The datasets mix label sets {sorted(classes)}; use one (column 'classes').")
    if not sets["control"] and not sets["patient"]:
        raise InputError("No training scans: give a controls (tissue) and/or a patients (lesion) description.")
    return sets["control"], sets["patient"], sets["val"], (classes.pop() if classes else "full")
