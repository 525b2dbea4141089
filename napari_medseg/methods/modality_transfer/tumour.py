"""A seeded multi-modal brain tumour phantom (BraTS-like) and SegAN's preprocessing.

Giacomello et al. (2020) train SegAN on BRATS 2015 (T1, T1c, T2, FLAIR; whole tumour),
one model per modality, then transfer the best (FLAIR) model to the other modalities.
Each volume is clipped to its 2nd and 98th percentiles and rescaled to [0, 1]
(:func:`percentile_scale`); subjects are split 80/10/10 into training, validation and
test sets, stratified by grade (high grade HG, low grade LG).

The phantom puts a tumour into the skull-stripped anatomy of
:func:`~napari_medseg.methods.joint_lesion_tissue.phantom.brain_phantom` (labels
0 background, 1 CSF, 2 GM, 3 WM). Regions use the BraTS label values:
1 necrotic / non-enhancing core, 2 oedema, 4 enhancing tumour; the whole tumour is all three.
High-grade tumours have a necrotic centre inside an enhancing rim (bright on T1c only);
low-grade ones a non-enhancing core. Oedema is bright on T2 and FLAIR, dark on T1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...core.errors import InputError
from ...core.intensity import percentile_scale
from ...core.phantoms.brain import brain_phantom, smooth_field
from ...core.phantoms.render import render

MODALITIES = ("T1", "T1c", "T2", "FLAIR")
NCR_NET, ED, ET = 1, 2, 4  # BraTS region labels
# rendering classes: 0 bg, 1 CSF, 2 GM, 3 WM, 4 core (necrotic / non-enhancing), 5 enhancing, 6 oedema
#                          bg   CSF   GM    WM   core  enh   oedema
MEANS = {"T1": (0.0, 0.2, 0.6, 0.9, 0.3, 0.5, 0.45),
         "T1c": (0.0, 0.2, 0.6, 0.88, 0.3, 1.6, 0.5),
         "T2": (0.0, 1.0, 0.6, 0.4, 0.95, 0.7, 0.85),
         "FLAIR": (0.0, 0.1, 0.6, 0.45, 0.65, 0.8, 1.1)}
_REGION = np.array([0, 0, 0, 0, NCR_NET, ET, ED], np.uint8)


@dataclass
class TumourSubject:
    images: dict[str, np.ndarray]  # float32 volumes, one per modality, skull-stripped
    regions: np.ndarray  # uint8 BraTS labels 0, 1 (core), 2 (oedema), 4 (enhancing)
    whole: np.ndarray  # uint8 0/1: whole tumour
    tissue: np.ndarray  # uint8 0-3 (background, CSF, GM, WM) outside the tumour
    grade: str  # "HG" or "LG"
    seed: int
    spacing: tuple[float, float, float]


def _tumour(rng, tissue, spacing, grade):
    """Rendering classes (0-6) of the brain with one tumour in it."""
    shape = tissue.shape
    brain = tissue > 0
    r_core = rng.uniform(10, 20) if grade == "HG" else rng.uniform(8, 16)  # mm
    r_oed = r_core * rng.uniform(1.5, 2.2)
    inner = ndimage.distance_transform_edt(brain, sampling=spacing)
    ok = np.flatnonzero((tissue == 3) & (inner > 0.8 * r_core))
    if ok.size == 0:
        ok = np.flatnonzero(inner >= inner.max() * 0.8)  # tiny brains: the deepest voxels
    centre = np.array(np.unravel_index(rng.choice(ok), shape), np.float32)
    axes = [(np.arange(n, dtype=np.float32) - c) * s for n, c, s in zip(shape, centre, spacing)]
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)
    radii = rng.uniform(0.8, 1.2, 3)
    d = np.sqrt(sum((g / r) ** 2 for g, r in zip(grid, radii)))
    cells = tuple(max(2, n // 8) for n in shape)
    d_core = d * (1.0 + 0.15 * smooth_field(rng, shape, cells))
    d_oed = d * (1.0 + 0.25 * smooth_field(rng, shape, cells))
    classes = tissue.copy()
    # oedema spreads along white matter; into grey matter only close to the core
    oedema = (d_oed < r_oed) & ((tissue == 3) | ((tissue == 2) & (d_oed < 1.2 * r_core)))
    classes[oedema] = 6
    core = (d_core < r_core) & brain
    if grade == "HG":
        classes[core] = 5
        classes[core & (d_core < r_core * rng.uniform(0.45, 0.65))] = 4
    else:
        classes[core] = 4
    return classes


def tumour_subject(seed: int = 0, shape=(64, 72, 64), spacing=(2.25, 2.25, 2.25), grade: str = "HG",
                   noise: float = 0.03) -> TumourSubject:
    """One subject with T1, T1c, T2 and FLAIR volumes and its tumour regions (axial = last axis)."""
    if grade not in ("HG", "LG"):
        raise InputError(f"Grade must be 'HG' or 'LG', got {grade!r}.")
    spacing = tuple(float(s) for s in spacing)
    tissue = brain_phantom(shape, seed, "reduced", lesions=False, spacing=spacing).tissue
    rng = np.random.default_rng([int(seed), 7])
    classes = _tumour(rng, tissue, spacing, grade)
    brain = tissue > 0
    images = {}
    for mod in MODALITIES:
        means = np.asarray(MEANS[mod], np.float32) * rng.uniform(0.95, 1.05, 7).astype(np.float32)
        img = render(rng, classes, means, blur=0.7, bias=0.12, noise=noise) * rng.uniform(0.5, 2.0)
        img[~brain] = 0.0  # skull-stripped, as BRATS is
        images[mod] = img.astype(np.float32)
    regions = _REGION[classes]
    return TumourSubject(images, regions, (regions > 0).astype(np.uint8),
                         np.where(regions > 0, 0, tissue).astype(np.uint8), grade, int(seed), spacing)




def _split(grades: list[str], fractions, rng) -> list[int]:
    """Split index per subject: stratified by grade, every split with a nonzero fraction non-empty."""
    f = np.asarray(fractions, float) / float(np.sum(fractions))
    out = np.zeros(len(grades), int)
    for g in sorted(set(grades)):
        idx = rng.permutation([i for i, x in enumerate(grades) if x == g])
        counts = np.floor(f * len(idx)).astype(int)
        for k in np.argsort(-(f * len(idx) - counts))[: len(idx) - counts.sum()]:
            counts[k] += 1
        out[idx] = np.repeat(np.arange(len(f)), counts)
    for k in np.flatnonzero(f > 0):  # small cohorts: take one from the largest split
        if not (out == k).any():
            big = np.bincount(out, minlength=len(f)).argmax()
            out[np.flatnonzero(out == big)[0]] = k
    return out.tolist()


def tumour_slices(n_subjects: int = 10, seed: int = 0, modalities=MODALITIES, shape=(64, 72, 64),
                  spacing=(2.25, 2.25, 2.25), split=(0.8, 0.1, 0.1), lg_fraction: float = 0.2,
                  min_brain: float = 0.1, low: float = 2.0, high: float = 98.0) -> dict:
    """A SegAN dataset of 2-D axial slices, split by subject into train / val / test.

    Each volume is :func:`percentile_scale`-d before slicing; slices with less than
    ``min_brain`` of their pixels in the brain are left out. About ``lg_fraction`` of the
    subjects are low grade, and the split keeps that balance. Returns
    ``{"train": {"images": {modality: (N, H, W) float32}, "mask": (N, H, W) uint8 whole
    tumour, "subject": (N,) subject index, "slice": (N,) axial index}, "val": ..., "test": ...,
    "subjects": {"train": [indices], ...}, "grades": [grade per subject]}``.
    """
    names = ("train", "val", "test")
    if len(split) != 3 or min(split) < 0 or sum(split) <= 0:
        raise InputError(f"The split must be three non-negative fractions (train, val, test), got {split}.")
    need = sum(1 for f in split if f > 0)
    if n_subjects < need:
        raise InputError(f"{n_subjects} subject(s) cannot fill {need} non-empty sets; "
                         "each set needs at least one subject.")
    if not 0.0 <= lg_fraction <= 1.0:
        raise InputError(f"The low-grade fraction must be between 0 and 1, got {lg_fraction}.")
    bad = [m for m in modalities if m not in MODALITIES]
    if bad or not modalities:
        raise InputError(f"Unknown or no modalities {bad}; use some of {MODALITIES}.")
    rng = np.random.default_rng([int(seed), 11])
    n_lg = int(round(n_subjects * lg_fraction))
    low_grade = set(rng.choice(n_subjects, n_lg, replace=False).tolist())
    grades = ["LG" if i in low_grade else "HG" for i in range(n_subjects)]
    where = _split(grades, split, rng)
    parts = {k: {"images": {m: [] for m in modalities}, "mask": [], "subject": [], "slice": []} for k in names}
    for i, grade in enumerate(grades):
        subj = tumour_subject(int(seed) * 1_000_000 + 500_000 + i, shape, spacing, grade)
        keep = np.flatnonzero((subj.tissue + subj.whole > 0).mean(axis=(0, 1)) >= min_brain)
        part = parts[names[where[i]]]
        for m in modalities:
            vol = percentile_scale(subj.images[m], low, high)
            part["images"][m] += [vol[:, :, z] for z in keep]
        part["mask"] += [subj.whole[:, :, z] for z in keep]
        part["subject"] += [i] * len(keep)
        part["slice"] += keep.tolist()
    h, w = shape[0], shape[1]
    out: dict = {}
    for k, part in parts.items():
        out[k] = {"images": {m: np.asarray(v, np.float32).reshape(-1, h, w) for m, v in part["images"].items()},
                  "mask": np.asarray(part["mask"], np.uint8).reshape(-1, h, w),
                  "subject": np.asarray(part["subject"], int), "slice": np.asarray(part["slice"], int)}
    out["subjects"] = {k: [i for i in range(n_subjects) if names[where[i]] == k] for k in names}
    out["grades"] = grades
    return out
