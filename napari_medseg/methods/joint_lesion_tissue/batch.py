"""``napari-medseg predict joint``: many subjects' scans, one labels NIfTI each and one
volumes table, through :func:`inference.segment_scan` (the function the widget calls).

Subjects are matched across the T1, FLAIR and mask inputs by name: a file's subject is
its name without the NIfTI extension and without a trailing modality word
(``_T1``, ``_T1w``, ``_FLAIR``, ``_mask``, ``_brainmask``, any case, ``_`` or ``-``), so
``sub01_T1.nii.gz``, ``sub01_FLAIR.nii.gz`` and ``sub01_mask.nii.gz`` are one subject.
A FLAIR or mask on another grid than its T1 is resampled onto the T1 (and the table says
so). Nothing existing is replaced: every output path is checked before the first subject
is segmented. A subject that fails gets its error in the table; the others go on.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...core.errors import InputError, MedsegError

_SUFFIX = re.compile(r"[_-](t1w?|flair|mask|brainmask|brain_mask)$", re.IGNORECASE)
_EXT = (".nii.gz", ".nii")


def subject_id(path: Path) -> str:
    name = path.name
    for ext in _EXT:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return _SUFFIX.sub("", name) or name


def _files(arg, what: str) -> dict[str, Path]:
    """subject -> file, from one NIfTI file or a folder of them."""
    p = Path(arg)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(_EXT))
        if not files:
            raise InputError(f"The {what} folder {p} holds no .nii or .nii.gz file.")
    elif p.is_file():
        if not p.name.lower().endswith(_EXT):
            raise InputError(f"The {what} file {p} is not NIfTI (.nii or .nii.gz).")
        files = [p]
    else:
        raise InputError(f"The {what} path {p} does not exist.")
    out: dict[str, Path] = {}
    for f in files:
        sid = subject_id(f)
        if sid in out:
            raise InputError(f"Two {what} files belong to subject {sid!r}: {out[sid].name} and {f.name}; keep one.")
        out[sid] = f
    return out


def plan(t1, flair=None, mask=None, out=None) -> list[dict]:
    """One dict per subject (``id``, ``T1``, ``FLAIR``?, ``mask``?, ``out``); checks every
    input match and every output path up front."""
    from ...core.outputs import check_output_path

    t1s = _files(t1, "T1")
    flairs = _files(flair, "FLAIR") if flair else {}
    masks = _files(mask, "mask") if mask else {}
    if len(t1s) == 1 and len(flairs) <= 1 and len(masks) <= 1:  # single files: one subject, names may differ
        sid = next(iter(t1s))
        flairs = {sid: f for f in flairs.values()}
        masks = {sid: f for f in masks.values()}
    orphans = sorted((set(flairs) | set(masks)) - set(t1s))
    if orphans:
        raise InputError(f"FLAIR or mask files without a T1: subjects {orphans[:5]}; name files "
                         "SUBJECT_T1.nii.gz, SUBJECT_FLAIR.nii.gz, SUBJECT_mask.nii.gz.")
    if out is None:
        raise InputError("Give --out, a folder for the labels and the volumes table.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder.")
    out.mkdir(parents=True, exist_ok=True)
    inputs = [*t1s.values(), *flairs.values(), *masks.values()]
    rows = []
    for sid, path in sorted(t1s.items()):
        target = check_output_path(out / f"{sid}_labels.nii.gz", inputs, what="labels file")
        rows.append({"id": sid, "T1": path, "FLAIR": flairs.get(sid), "mask": masks.get(sid), "out": target})
    check_output_path(out / "volumes.csv", inputs, what="volumes table")
    return rows


def _load(row: dict) -> tuple[dict, np.ndarray, np.ndarray | None, list[str], object]:
    """Volumes on the T1 grid, its affine, the mask (or None), notes, the T1 header."""
    import nibabel as nib

    from .datasets import read_volume, resample_to

    t1, affine = read_volume(row["T1"])  # segment_scan checks that it shows a brain
    vols, notes, mask = {"T1": t1.astype(np.float32)}, [], None
    for key in ("FLAIR", "mask"):
        if row.get(key) is None:
            continue
        vol, aff = read_volume(row[key])
        if vol.shape != t1.shape or not np.allclose(aff, affine, atol=1e-3):
            vol = resample_to(affine, t1.shape, vol, aff, order=0 if key == "mask" else 1)
            notes.append(f"{key} resampled onto the T1 grid")
        if key == "mask":
            mask = np.asarray(vol) != 0
        else:
            vols[key] = np.asarray(vol, np.float32)
    header = nib.load(str(row["T1"])).header
    return vols, affine, mask, notes, header


def predict_subject(row: dict, model, meta: dict, label_set, device="cpu", *, refine: bool = True,
                    min_lesion_ml: float = 0.01) -> dict:
    """Segment one subject of :func:`plan` and write its labels; its volumes-table row.
    Raises :class:`MedsegError` (one clear message) for a subject that cannot be done."""
    from ...core.io import write_nifti
    from .inference import segment_scan

    vols, affine, mask, notes, header = _load(row)
    res = segment_scan(model, meta, label_set, vols, affine, device, mask=mask, refine=refine,
                       min_lesion_ml=min_lesion_ml)
    write_nifti(row["out"], res.labels, affine, like_header=header)
    return {"subject": row["id"], "labels_file": row["out"].name, "modalities": "+".join(res.used), "error": "",
            **{f"{k} (mL)": round(v, 3) for k, v in res.volumes_ml.items()},
            "lesion count": res.lesion["lesion_count"], "min lesion (mL)": min_lesion_ml,
            "notes": "; ".join(notes + ([f"mask {row['mask'].name}"] if mask is not None else
                                        ["no mask: the model's own brain outline"])
                               + ([res.warning] if res.warning else []))}


_MODELS: dict = {}


def predict_subject_task(row: dict, name: str, version: int, device: str, refine: bool, min_lesion_ml: float) -> dict:
    """:func:`predict_subject` with the model loaded from the registry (once per process):
    the task ``predict joint_lesion_tissue --scheduler`` sends to a worker, one per subject."""
    from ...core.registry import Registry
    from .models import label_set_of

    key = (name, version, device)
    if key not in _MODELS:
        model, meta = Registry().get(name, version).load(device)
        _MODELS[key] = (model, meta, label_set_of(meta))
    model, meta, label_set = _MODELS[key]
    return predict_subject(row, model, meta, label_set, device, refine=refine, min_lesion_ml=min_lesion_ml)


def predict_subjects(rows: list[dict], model, meta: dict, label_set, device="cpu", *, refine: bool = True,
                     min_lesion_ml: float = 0.01, out_csv=None, client=None, entry=None):
    """Generator (a job): segment each subject, write its labels; yields Progress per
    subject and returns the table rows. The CSV is written (atomically) at the end,
    also when stopped or when subjects failed. With a dask.distributed ``client`` (and the
    registry ``entry`` of the model), each subject is one task on a worker (CPU)."""
    from ...core.jobs import Progress
    from ...core.outputs import write_csv

    table: list[dict] = []
    try:
        if client is not None:
            from ...core.batch import run_files

            tasks = [(row["id"], (row, entry.name, entry.version, "cpu", refine, min_lesion_ml)) for row in rows]
            done = yield from run_files(predict_subject_task, tasks, client)
            table = [r["output"] if r["error"] is None else {"subject": r["input"], "labels_file": "",
                                                             "modalities": "", "error": r["error"]} for r in done]
            return table
        for i, row in enumerate(rows, 1):
            try:
                rec = predict_subject(row, model, meta, label_set, device, refine=refine, min_lesion_ml=min_lesion_ml)
            except MedsegError as exc:
                rec = {"subject": row["id"], "labels_file": "", "modalities": "", "error": str(exc)}
            table.append(rec)
            yield Progress(i, len(rows), f"{row['id']}: {'failed' if rec['error'] else 'done'}")
    finally:
        if out_csv is not None and table:
            write_csv(out_csv, table, what="volumes table")
    return table
