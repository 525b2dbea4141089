"""The paper's two task-specific hetero-modal datasets, drawn from the brain phantom.

Dorent et al. (2019) learn one joint model from a *control* dataset (T1 scans with
tissue labels, no lesions) and a *patient* dataset (T1 + FLAIR scans with lesion
masks only). Real data of that kind cannot ship with a plugin, so the subjects are
drawn from :mod:`napari_medseg.core.phantoms.brain`.
"""

from __future__ import annotations

from ...core.errors import InputError
from ...core.phantoms.brain import Phantom, brain_phantom


# subject seeds: each set gets its own block, so the sets never share a subject
_SET_OFFSET = {"control": 0, "patient": 100_000, "test": 200_000}


def subject_seed(seed: int, which: str, index: int) -> int:
    """Deterministic, disjoint seeds: ``seed * 1e6 + set offset + index``."""
    if not 0 <= index < 100_000:
        raise InputError(f"At most 100000 subjects per set, got index {index}.")
    return int(seed) * 1_000_000 + _SET_OFFSET[which] + int(index)


def _subject(ph: Phantom, keys, sid: str, seed: int, label_set: str) -> dict:
    arrays = {"T1": ph.t1, "FLAIR": ph.flair, "tissue": ph.tissue, "lesion": ph.lesion, "labels": ph.labels}
    out = {k: arrays[k] for k in keys}
    out.update(affine=ph.affine, spacing=ph.spacing, id=sid, seed=seed, classes=label_set)
    return out


def task_datasets(n_controls: int, n_patients: int, n_test: int = 0, seed: int = 0,
                  shape=(96, 112, 96), label_set: str = "full", spacing=(1.5, 1.5, 1.5)) -> dict:
    """The paper's two task-specific hetero-modal datasets plus a fully labelled test set.

    ``control``: T1 + tissue labels of lesion-free subjects (the tissue task);
    ``patient``: T1 + FLAIR + lesion mask only (the lesion task, tissue unannotated);
    ``test``: T1 + FLAIR with joint, tissue and lesion labels (patients with lesions).
    """
    spec = {"control": (n_controls, False, ("T1", "tissue")),
            "patient": (n_patients, True, ("T1", "FLAIR", "lesion")),
            "test": (n_test, True, ("T1", "FLAIR", "labels", "tissue", "lesion"))}
    out = {}
    for which, (n, lesions, keys) in spec.items():
        subjects = []
        for i in range(int(n)):
            s = subject_seed(seed, which, i)
            ph = brain_phantom(shape, s, label_set, lesions=lesions, spacing=spacing)
            subjects.append(_subject(ph, keys, f"{which}{i:03d}", s, label_set))
        out[which] = subjects
    return out


def write_dataset(subjects, folder, description: str = "dataset.csv"):
    """Write subjects as NIfTI files (affine kept) plus a CSV or YAML description.

    One label file per subject, the most complete it has: joint ``labels``, else
    ``tissue``, else ``lesion``; the description says which (label_set column).
    Returns the description's path, ready for :func:`datasets.read_description`.
    """
    from pathlib import Path

    from .datasets import MODALITIES, write_description, write_image, write_label

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for subj in subjects:
        sid = str(subj["id"])
        row = {"subject": sid, "classes": subj.get("classes", "full")}
        for mod in MODALITIES:
            if mod in subj:
                write_image(folder / f"{sid}_{mod}.nii.gz", subj[mod], subj["affine"])
                row[mod] = f"{sid}_{mod}.nii.gz"
        for key, task in (("labels", "joint"), ("tissue", "tissue"), ("lesion", "lesion")):
            if key in subj:
                write_label(folder / f"{sid}_{key}.nii.gz", subj[key], subj["affine"])
                row.update(label=f"{sid}_{key}.nii.gz", label_set=task)
                break
        rows.append(row)
    return write_description(rows, folder / description)
