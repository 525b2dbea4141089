"""Segmenting a user's scan with a registry model, and turning a corrected scan back
into training subjects: the steps the widget, the console and the benchmark share.

A scan arrives on its own grid (any voxel size, any orientation), as a dict of
modality arrays plus one affine. The model saw scans resampled to its training
spacing and normalised inside the brain, so the scan is prepared the same way, segmented,
and the labels are resampled (nearest neighbour) back onto the scan's own grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.errors import InputError
from .datasets import preprocess, resample_to
from .labels import LabelSet
from .metrics import lesion_stats, volumes_ml
from .training import MODES, predict_volume


def spacing_of(affine) -> tuple[float, float, float]:
    """Voxel size (mm) along the array axes of a 4x4 affine."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0))


def model_spacing(meta: dict, affine) -> tuple[float, ...]:
    """The spacing a checkpoint was trained at (its ``spacing``), else the scan's own."""
    sp = meta.get("spacing")
    return tuple(float(v) for v in sp) if sp else spacing_of(affine)


def model_mode(meta: dict) -> str:
    mode = (meta.get("config") or {}).get("mode", "joint")
    return mode if mode in MODES else "joint"


def usable_modalities(model_modalities, given) -> tuple[list[str], list[str]]:
    """(used, ignored): the given modalities the model reads, and those it cannot."""
    used = [m for m in model_modalities if m in given]
    return used, [m for m in given if m not in model_modalities]


def check_grid(volumes: dict, reference: str = "T1") -> None:
    """Every modality must have the reference's shape (the widget offers resampling)."""
    ref = np.shape(volumes[reference])
    for mod, vol in volumes.items():
        if np.ndim(vol) != 3:
            raise InputError(f"The {mod} layer is {np.ndim(vol)}-D (shape {np.shape(vol)}); the model takes "
                             "3-D volumes, one per modality.")
        if np.shape(vol) != ref:
            raise InputError(f"{mod} has shape {np.shape(vol)}, {reference} {ref}: the modalities are not on one "
                             f"grid. Tick 'resample onto T1' (or resample it yourself) and run again.")


@dataclass
class ScanResult:
    labels: np.ndarray  # uint8, on the scan's grid
    used: list  # modalities the model read
    ignored: list  # given but not inputs of this model
    label_set: LabelSet
    spacing: tuple  # of the scan (mm)
    volumes_ml: dict  # class -> mL
    lesion: dict  # lesion_volume_ml, lesion_count
    min_lesion_ml: float = 0.0  # lesions smaller than this were removed
    rejected_lesions: int = 0  # lesion components removed (too small, or not supported by the images)
    refined: bool = False  # native-resolution refinement applied
    masked: bool = False  # a brain mask restricted the labels
    warning: str = ""  # the scan does not look like a whole brain (volume out of range)


def check_mask(mask, shape) -> np.ndarray:
    """A brain mask on the scan grid: same shape, not empty; any non-zero value is brain."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise InputError(f"The brain mask has shape {mask.shape}, the T1 {tuple(shape)}: it must be on the scan's "
                         "grid.")
    if not np.isfinite(mask.astype(np.float32)).all():
        raise InputError("The brain mask has NaN or infinite values.")
    mask = mask != 0
    if not mask.any():
        raise InputError("The brain mask is empty: nothing would be segmented. Give the brain's mask, or none.")
    return mask


def scan_probabilities(model, meta: dict, label_set: LabelSet, volumes: dict, affine, used, device="cpu",
                       roi_size=(64, 64, 64), *, mask=None) -> np.ndarray:
    """(C, *scan shape) class probabilities of the ``used`` modalities, on the scan's own grid:
    reoriented and resampled to the model's spacing, the network, and back."""
    from .postprocess import to_scan_grid

    prep = preprocess({m: volumes[m] for m in used}, affine, spacing=model_spacing(meta, affine), mask=mask)
    _, probs = predict_volume(model, prep.images, used, label_set, device, roi_size=roi_size, mode=model_mode(meta))
    return to_scan_grid(probs, prep.affine, affine, np.shape(volumes[used[0]]))


def segment_scan(model, meta: dict, label_set: LabelSet, volumes: dict, affine, device="cpu",
                 roi_size=(64, 64, 64), *, mask=None, refine: bool = True, min_lesion_ml: float = 0.01) -> ScanResult:
    """Segment one scan (``volumes``: modality -> 3-D array on one grid) with a loaded model.

    ``mask``: optional brain mask on the scan grid (skull-stripped scans: the labels stay
    inside it, and intensities are normalised inside it). ``refine``: native-resolution
    refinement (see :mod:`.postprocess`). ``min_lesion_ml``: smaller lesions are removed.
    """
    from .datasets import check_brain
    from .postprocess import finish

    used, ignored = usable_modalities(model.modalities, volumes)
    if "T1" not in volumes:
        given = ", ".join(volumes) or "nothing"
        raise InputError(f"Map a T1 layer: the model segments tissue from T1 and lesions from T1 + FLAIR; "
                         f"FLAIR (or any other modality) without T1 is not enough. Given: {given}.")
    check_grid(volumes)
    if not np.isfinite(min_lesion_ml) or min_lesion_ml < 0:
        raise InputError(f"The minimum lesion size must be 0 mL or more, not {min_lesion_ml}.")
    for mod in used:
        vol = np.asarray(volumes[mod], np.float32)
        if not np.isfinite(vol).all():
            raise InputError(f"The {mod} scan has NaN or infinite values; fix or mask them first.")
        check_brain(vol, f"The {mod} scan")
    affine = np.asarray(affine, np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError("The scan's affine is degenerate (zero voxel size or NaN); fix its header.")
    shape = np.shape(volumes["T1"])
    if mask is not None:
        mask = check_mask(mask, shape)
    vols = {m: np.asarray(volumes[m], np.float32) for m in used}
    probs = scan_probabilities(model, meta, label_set, vols, affine, used, device, roi_size, mask=mask)
    spacing = spacing_of(affine)
    out = finish(probs, vols, used, label_set, spacing, mode=model_mode(meta), mask=mask, refine_native=refine,
                 min_lesion_ml=min_lesion_ml)
    vols_ml = volumes_ml(out.labels, label_set, spacing)
    return ScanResult(out.labels, used, ignored, label_set, spacing, vols_ml,
                      lesion_stats(out.labels, label_set, spacing), float(min_lesion_ml), out.rejected_lesions,
                      out.posterior is not None, mask is not None, brain_volume_warning(sum(vols_ml.values()), spacing))


BRAIN_ML = (150.0, 3000.0)  # a whole adult human brain (with its CSF) lies well inside this range


def brain_volume_warning(total_ml: float, spacing) -> str:
    """A sentence when the labelled brain is not the size of a human brain (wrong voxel size
    in the header, a slab, or not a brain scan), else ''."""
    lo, hi = BRAIN_ML
    if lo <= total_ml <= hi:
        return ""
    sp = " x ".join(f"{s:g}" for s in spacing)
    return (f"The labelled brain measures {total_ml:.0f} mL, outside {lo:.0f}-{hi:.0f} mL for a whole human brain: "
            f"check the voxel size in the header ({sp} mm), and that this is a whole-brain MRI.")


def training_subjects(volumes: dict, labels, affine, meta: dict, label_set: LabelSet):
    """A corrected scan as training data: ``(control, patient or None, validation)``.

    The control copy (T1 + tissue) counts lesion voxels as white matter, since control
    scans hold no lesion class; the patient copy (T1 + FLAIR + lesion mask) exists when
    FLAIR was given; the validation copy keeps the whole corrected labelling.
    """
    labels = np.asarray(labels)
    if "T1" not in volumes:
        raise InputError("A corrected scan needs its T1 to be trained on.")
    check_grid(volumes)
    if labels.shape != np.shape(volumes["T1"]):
        raise InputError(f"The corrected labels have shape {labels.shape}, the T1 {np.shape(volumes['T1'])}; "
                         "they must be on the scan's grid.")
    label_set.check(labels, what="corrected labels")
    if not labels.any():
        raise InputError("The corrected labels are empty (all background); paint the classes first.")
    affine = np.asarray(affine, np.float64)
    have = [m for m in ("T1", "FLAIR") if m in volumes]
    prep = preprocess({m: volumes[m] for m in have}, affine, spacing=model_spacing(meta, affine))
    grid = prep.images["T1"].shape
    same = grid == labels.shape and np.allclose(prep.affine, affine, atol=1e-3)
    lab = labels if same else resample_to(prep.affine, grid, labels, affine, order=0)
    lab = np.asarray(lab, np.uint8)
    wm = label_set.names.index("white matter") if "white matter" in label_set.names else 0
    tissue = np.where(lab == label_set.lesion, wm, lab).astype(np.uint8)
    control = {"T1": prep.images["T1"], "tissue": tissue}
    patient = None
    if "FLAIR" in prep.images:
        patient = {"T1": prep.images["T1"], "FLAIR": prep.images["FLAIR"],
                   "lesion": (lab == label_set.lesion).astype(np.uint8)}
    val = {**{m: prep.images[m] for m in have}, "labels": lab}
    return control, patient, val
