"""Folder datasets for joint lesion + tissue training: a CSV or YAML description of
subjects, their modality files and one label file each, read and checked up front.

The paper's datasets are task-specific and hetero-modal: a control dataset of T1 scans
with tissue labels, a patient dataset of T1 + FLAIR scans with lesion masks. So a row
names which modalities it has and what its label file annotates (``label_set``:
``tissue``, ``lesion`` or ``joint``). Every check raises one InputError that says what
is wrong and what to do, and changes nothing on disk: misaligned modalities are not
silently resampled, because that is a decision about the data the user should make
(:func:`resample_to` does it when asked).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ...core.errors import InputError
from .labels import LABEL_SETS, LabelSet

MODALITIES = ("T1", "FLAIR", "T2", "T1c", "PD")
TASKS = {"tissue": "tissue", "lesion": "lesion", "joint": "labels"}  # label_set -> subject key
COLUMNS = ("subject", *MODALITIES, "label", "label_set", "classes")
_ALIASES = {c.lower(): c for c in COLUMNS} | {"t1ce": "T1c", "t1gd": "T1c", "id": "subject"}
_LESION_MASK = LabelSet(names=("background", "lesion"), colours=("transparent", "#ef4444"))


def _canonical_row(raw: dict, where: str, default_classes: str) -> dict:
    row = {}
    for key, value in raw.items():
        if value is None or str(value).strip() == "":
            continue
        name = _ALIASES.get(str(key).strip().lower())
        if name is None:
            raise InputError(f"{where}: unknown column {key!r}; the columns are {', '.join(COLUMNS)}.")
        row[name] = str(value).strip()
    row.setdefault("classes", default_classes)
    if "subject" not in row:
        raise InputError(f"{where}: a row has no 'subject' name.")
    if row.get("label") and row.get("label_set") not in TASKS:
        raise InputError(f"{where}: subject {row['subject']} has a label file but label_set is "
                         f"{row.get('label_set')!r}; use tissue, lesion or joint.")
    if row["classes"] not in LABEL_SETS:
        raise InputError(f"{where}: subject {row['subject']} has classes {row['classes']!r}; "
                         f"use {' or '.join(LABEL_SETS)}.")
    return row


def read_description(path) -> list[dict]:
    """Rows of a dataset description: ``.csv`` (a header line) or ``.yaml``/``.yml``.

    YAML is a list of mappings, or ``{classes: full|reduced, subjects: [...]}``. Keys
    are case-insensitive; empty cells are dropped. Unknown columns are an error, so a
    typo (``FLAR``) cannot silently drop a modality.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: dataset description not found.")
    default = "full"
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError(f"{path}: reading YAML needs PyYAML; install it or use a CSV description.") from None
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc}).") from None
        if isinstance(data, dict):
            default = str(data.get("classes", default))
            data = data.get("subjects")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{path}: expected a list of subjects (mappings), optionally under 'subjects:'.")
        raw = data
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as fh:
            raw = list(csv.DictReader(fh))
    else:
        raise InputError(f"{path}: a dataset description is a .csv or .yaml file.")
    if not raw:
        raise InputError(f"{path}: the description lists no subjects.")
    return [_canonical_row(r, str(path), default) for r in raw]


def write_description(rows, path) -> Path:
    """Write rows (flat dicts, keys from COLUMNS) as CSV or YAML, by suffix."""
    import io

    from ...core.atomic import atomic_write_bytes

    path = Path(path)
    used = [c for c in COLUMNS if any(c in r for r in rows)]
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump({"subjects": [{c: r[c] for c in used if c in r} for r in rows]}, sort_keys=False)
    else:
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=used)
        writer.writeheader()
        writer.writerows([{c: r.get(c, "") for c in used} for r in rows])
        text = buf.getvalue()
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))  # a killed write leaves the old file
    return path


def write_image(path, volume, affine) -> Path:
    """A float32 intensity volume as NIfTI, atomically (core's writer is for labels)."""
    import nibabel as nib

    from ...core.atomic import atomic_path

    img = nib.Nifti1Image(np.asarray(volume, np.float32), np.asarray(affine, np.float64))
    img.set_sform(img.affine, code=2)
    img.set_qform(img.affine, code=1)
    with atomic_path(path, suffix=".tmp.nii.gz") as tmp:
        img.to_filename(tmp)
    return Path(path)


def write_label(path, labels, affine) -> Path:
    from ...core.io import write_nifti

    return write_nifti(path, labels, affine)


def read_volume(path) -> tuple[np.ndarray, np.ndarray]:
    """One 3-D NIfTI volume and its affine; a 4-D or 2-D file is an error."""
    from ...core.io import read_nifti

    arr, meta = read_nifti(path)
    if arr.ndim != 3:
        raise InputError(f"{path} is {arr.ndim}-D (shape {tuple(arr.shape)}); give each modality "
                         "and each label map as its own 3-D file.")
    return np.asarray(arr.compute()), np.asarray(meta["affine"], np.float64)


def check_brain(volume, name: str) -> None:
    """A scan that is all background or nearly constant has no brain to segment."""
    v = np.asarray(volume, np.float32)
    lo, hi = np.percentile(v, (1.0, 99.9))
    flat = hi - lo <= 1e-3 * max(abs(float(hi)), abs(float(lo)), 1e-12)  # relative: any unit
    if flat or np.mean(v > lo + 0.1 * (hi - lo)) < 0.002:
        raise InputError(f"{name} shows no brain: it is all background or nearly constant "
                         f"(values {float(v.min()):.3g}..{float(v.max()):.3g}); check the file.")


def resample_to(reference_affine, reference_shape, volume, affine, order: int = 1, mode: str = "constant") -> np.ndarray:
    """``volume`` (with ``affine``) sampled on the reference grid; ``order=0`` for labels.
    ``mode``: how points outside ``volume`` are filled (scipy's; "constant" gives 0)."""
    from scipy import ndimage

    to_src = np.linalg.inv(np.asarray(affine, np.float64)) @ np.asarray(reference_affine, np.float64)
    volume = np.asarray(volume)
    out = ndimage.affine_transform(volume.astype(np.float32) if order else volume, to_src[:3, :3],
                                   to_src[:3, 3], output_shape=tuple(reference_shape), order=order, mode=mode)
    return out


def _same_grid(a_shape, a_aff, b_shape, b_aff) -> bool:
    return tuple(a_shape) == tuple(b_shape) and np.allclose(a_aff, b_aff, atol=1e-3)


def load_subject(row: dict, base_dir=".", modalities=("T1", "FLAIR")) -> dict:
    """Read one row's modalities (those it has, of ``modalities``) and its label file.

    Returns a dict like the phantom's subjects: modality arrays (float32), the label
    under ``tissue``/``lesion``/``labels``, ``affine``, ``spacing``, ``id``, ``classes``.
    """
    base, sid = Path(base_dir), row.get("subject", "?")
    present = [m for m in MODALITIES if row.get(m)]
    if not present:
        raise InputError(f"Subject {sid} lists no image; give at least its T1.")
    if "T1" not in present:
        raise InputError(f"Subject {sid} has {', '.join(present)} but no T1: the joint model needs T1 "
                         "(the modality every dataset shares); it can segment tissue from T1 alone "
                         "and tissue + lesions from T1 + FLAIR. Add the subject's T1.")
    wanted = [m for m in modalities if m in present]
    out = {"id": sid, "classes": row.get("classes", "full")}
    ref_shape = ref_aff = None
    for mod in ["T1", *[m for m in wanted if m != "T1"]]:
        path = base / row[mod]
        vol, aff = read_volume(path)
        if ref_aff is None:
            ref_shape, ref_aff = vol.shape, aff
        elif not _same_grid(vol.shape, aff, ref_shape, ref_aff):
            raise InputError(
                f"Subject {sid}: {mod} ({path.name}, shape {vol.shape}) is not on the T1 grid (shape "
                f"{ref_shape}) - different shape or affine. Resample it onto the T1 first, e.g. with "
                f"datasets.resample_to(t1_affine, t1_shape, {mod.lower()}, {mod.lower()}_affine).")
        check_brain(vol, f"Subject {sid}'s {mod} ({path.name})")
        out[mod] = vol.astype(np.float32)
    if row.get("label"):
        path, task = base / row["label"], row["label_set"]
        lab, aff = read_volume(path)
        if not _same_grid(lab.shape, aff, ref_shape, ref_aff):
            raise InputError(f"Subject {sid}: the label file {path.name} (shape {lab.shape}) is not on the "
                             "T1 grid; resample it with datasets.resample_to(..., order=0).")
        full = LABEL_SETS[out["classes"]]
        allowed = {"tissue": LabelSet(full.names[:-1], full.colours[:-1]), "lesion": _LESION_MASK,
                   "joint": full}[task]
        allowed.check(lab, what=f"{task} label file {path.name} of subject {sid}")
        out[TASKS[task]] = lab.astype(np.uint8)
    out["affine"] = ref_aff
    out["spacing"] = tuple(float(s) for s in np.linalg.norm(ref_aff[:3, :3], axis=0))
    return out


class Preprocessed(NamedTuple):
    images: dict  # modality -> float32 array, z-normalised inside ``mask``
    affine: np.ndarray
    mask: np.ndarray  # bool: the brain/foreground mask the statistics come from


def preprocess(volumes: dict, affine, spacing=(1.5, 1.5, 1.5), mask=None,
               percentiles=(1.0, 99.0)) -> Preprocessed:
    """Common spacing, then per-modality histogram scaling and z-normalisation in a mask.

    Scans are first reoriented to RAS (MONAI's Orientation), so a scan stored in any axis
    order or direction reaches the network the way its training scans did.
    Datasets from different scanners differ in resolution and intensity scale (the
    paper's point about hetero-modal databases); the network sees them on one grid with
    zero mean and unit variance inside the brain. Resampling uses MONAI's Spacing (it
    keeps the orientation and returns the new affine); the statistics use numpy, since
    MONAI's percentile and normalisation transforms cannot be restricted to a given mask.
    ``mask`` defaults to the head foreground (above 10 % of the T1's 99th percentile).
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    affine = torch.as_tensor(np.asarray(affine, np.float64))
    images, new_affine = {}, None
    ras = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
    for mod, vol in volumes.items():
        t = Spacing(pixdim=spacing, mode="bilinear")(ras(MetaTensor(torch.as_tensor(np.ascontiguousarray(vol, np.float32))[None],
                                                                   affine=affine)))
        images[mod], new_affine = t[0].numpy().astype(np.float32), np.asarray(t.affine, np.float64)
    if mask is None:
        ref = images.get("T1", next(iter(images.values())))
        mask = ref > 0.1 * np.percentile(ref, 99)
    else:
        t = Spacing(pixdim=spacing, mode="nearest")(ras(MetaTensor(torch.as_tensor(np.ascontiguousarray(mask, np.float32))[None],
                                                                  affine=affine)))
        mask = t[0].numpy() > 0.5
    if not mask.any():
        raise InputError("The brain mask is empty after resampling; there is nothing to normalise.")
    for mod, img in images.items():
        lo, hi = np.percentile(img[mask], percentiles)
        img = np.clip((img - lo) / max(hi - lo, 1e-8), 0.0, 1.0)
        mean, std = img[mask].mean(), img[mask].std()
        images[mod] = np.where(mask, (img - mean) / max(std, 1e-8), 0.0).astype(np.float32)
    return Preprocessed(images, new_affine, mask)
