"""Domain-randomised training scans: the phantom's label maps, drawn with random contrast.

The first shipped models learnt the phantom's own intensities ("grey matter is 0.65,
there is always a skull") and failed on a real T1. Following the idea of SynthSeg
(Billot et al. 2023), the images the network trains on are generated *from the label
maps* with everything a scanner changes drawn at random, so that only the anatomy and
the ordering of the tissues remain informative:

- per-class mean intensities drawn anew for every scan, in T1-like order on T1
  (CSF < GM < WM, lesions hypo- to iso-intense) and FLAIR-like order on FLAIR (CSF dark,
  GM above WM, lesions bright), with a random within-class spread;
- skull and scalp present or stripped (the brain then sits on a zero background);
- partial volume and resolution: a Gaussian blur of random width, thicker along one
  random axis (slice thickness);
- a smooth multiplicative bias field, a random gamma (contrast) and Rician noise of
  random level, all different per modality.

Labels are the phantom's, untouched. The real MNI152 template is never used here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...core.errors import InputError
from ...core.phantoms.brain import (BG, BS, CB, CSF, DGM, GM, LESION, SCALP, SKULL, WM, _TO_REDUCED, centred_affine,
                                    draw_anatomy, rician, smooth_field)

N_CLASSES = 10  # phantom classes 0..9 (lesion 7, skull 8, scalp 9)


def _between(rng, a: float, b: float, lo: float, hi: float) -> float:
    return float(a + rng.uniform(lo, hi) * (b - a))


def t1_means(rng) -> np.ndarray:
    """Random T1-like class means (CSF < GM < WM; deep GM, cerebellum, brainstem between)."""
    m = np.zeros(N_CLASSES, np.float32)
    m[CSF] = rng.uniform(0.02, 0.35)
    m[GM] = m[CSF] + rng.uniform(0.12, 0.45)
    m[WM] = m[GM] + rng.uniform(0.08, 0.40)
    m[DGM] = _between(rng, m[GM], m[WM], 0.1, 0.8)
    m[CB] = _between(rng, m[GM], m[WM], 0.0, 0.6)
    m[BS] = _between(rng, m[GM], m[WM], 0.4, 1.0)
    m[LESION] = _between(rng, m[CSF], m[WM], 0.2, 0.8)
    m[SKULL] = rng.uniform(0.0, 0.4)
    m[SCALP] = rng.uniform(0.2, 1.3)
    return m


def flair_means(rng) -> np.ndarray:
    """Random FLAIR-like class means (CSF dark, GM above WM, lesions brighter than GM)."""
    m = np.zeros(N_CLASSES, np.float32)
    m[CSF] = rng.uniform(0.0, 0.25)
    m[WM] = m[CSF] + rng.uniform(0.2, 0.5)
    m[GM] = m[WM] + rng.uniform(0.04, 0.3)
    m[DGM] = _between(rng, m[WM], m[GM], 0.2, 1.0)
    m[CB] = _between(rng, m[WM], m[GM], 0.3, 1.0)
    m[BS] = _between(rng, m[WM], m[GM], 0.0, 0.6)
    m[LESION] = m[GM] + rng.uniform(0.15, 0.8)
    m[SKULL] = rng.uniform(0.0, 0.3)
    m[SCALP] = rng.uniform(0.1, 1.0)
    return m


def render(rng, classes: np.ndarray, means: np.ndarray, stripped: bool) -> np.ndarray:
    """One randomised image of ``classes`` (phantom class values 0..9), scaled to 0..1."""
    shape = classes.shape
    spread = rng.uniform(0.01, 0.06, N_CLASSES).astype(np.float32)
    img = means[classes] + spread[classes] * rng.standard_normal(shape, dtype=np.float32)
    img *= 1.0 + 0.04 * smooth_field(rng, shape, (10, 12, 10))  # texture
    if stripped:
        img = np.where((classes == BG) | (classes >= SKULL), 0.0, img)
    sigma = rng.uniform(0.3, 1.0, 3)
    sigma[int(rng.integers(3))] *= rng.uniform(1.0, 2.5)  # a thicker slice axis
    img = ndimage.gaussian_filter(img, sigma)  # partial volume, resolution
    img *= np.exp(rng.uniform(0.0, 0.35) * smooth_field(rng, shape, (3, 3, 3)))  # bias field
    img = np.clip(img / max(float(np.percentile(img, 99.5)), 1e-6), 0.0, None)
    img = img ** float(np.exp(rng.normal(0.0, 0.2)))  # contrast (gamma)
    out = rician(rng, img, rng.uniform(0.0, 0.06))
    if stripped:
        out = np.where((classes == BG) | (classes >= SKULL), 0.0, out)
    return out.astype(np.float32)


def averaged(rng, classes: np.ndarray, spacing) -> np.ndarray:
    """(N_CLASSES, *shape) class probabilities of a population average: each class's
    indicator smoothed by a Gaussian of σ 0.5–2.5 mm (what is left of the subjects'
    differences after registration), summing to 1."""
    sigma_mm = rng.uniform(0.5, 2.5)
    sig = [sigma_mm / float(sp) for sp in spacing]
    probs = np.stack([ndimage.gaussian_filter((classes == k).astype(np.float32), sig) for k in range(N_CLASSES)])
    return probs / np.maximum(probs.sum(0, keepdims=True), 1e-6)


def render_average(rng, probs: np.ndarray, means: np.ndarray, outside: np.ndarray | None) -> np.ndarray:
    """One image of a population-average template: every voxel the probability-weighted
    mean of the class intensities (averaging mixes intensities linearly), a little
    texture, a weak bias field, gamma and little noise (averaging removes most of it);
    zero at ``outside`` (a skull-stripped template). Scaled to 0..1."""
    shape = probs.shape[1:]
    img = np.tensordot(means, probs, axes=1).astype(np.float32)
    img *= 1.0 + 0.02 * smooth_field(rng, shape, (10, 12, 10))
    img = ndimage.gaussian_filter(img, rng.uniform(0.0, 0.5, 3))
    img *= np.exp(rng.uniform(0.0, 0.1) * smooth_field(rng, shape, (3, 3, 3)))
    if outside is not None:
        img = np.where(outside, 0.0, img)
    img = np.clip(img / max(float(np.percentile(img, 99.5)), 1e-6), 0.0, None)
    img = img ** float(np.exp(rng.normal(0.0, 0.2)))
    out = rician(rng, img, rng.uniform(0.0, 0.02))
    if outside is not None:
        out = np.where(outside, 0.0, out)
    return out.astype(np.float32)


def cut_outer_csf(rng, drawn: np.ndarray, spacing, max_mm: float = 4.0) -> np.ndarray:
    """Where a skull-stripping tool cut closer to the brain: the CSF within a random depth
    (0 to ``max_mm``) of the brain mask's edge becomes background. Grey and white matter,
    and CSF deeper in (sulci, ventricles), are kept. Returns the new class map."""
    depth_mm = rng.uniform(0.0, max_mm)
    brain = (drawn != BG) & (drawn < SKULL)
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)
    cut = brain & (drawn == CSF) & (depth <= depth_mm)
    return np.where(cut, BG, drawn).astype(drawn.dtype)


def randomised_subject(seed: int, shape=(64, 72, 64), spacing=(2.5, 2.5, 2.5), lesions=True,
                       flair: bool = True, label_set: str = "reduced", p_stripped: float = 0.5,
                       vary_anatomy: bool = False, p_folded: float = 0.0, p_surface: float = 0.0,
                       p_average: float = 0.0, p_tight: float = 0.0) -> dict:
    """One domain-randomised subject: ``T1`` (and ``FLAIR``), ``tissue``, ``lesion``, ``labels``,
    ``affine``, ``spacing``, ``stripped``, ``folded``, ``surface``, ``average``. Deterministic in ``seed``.
    ``vary_anatomy``: the label map's proportions are drawn too (extra-cerebral CSF, sulci,
    ventricles; see :data:`~napari_medseg.core.phantoms.brain.VARIED_PROPORTIONS`).
    ``p_folded``: the chance that the cortex is gyrified, of real thickness (see
    :data:`~napari_medseg.core.phantoms.brain.FOLDED`), instead of the phantom's thick ribbon.
    ``p_surface``: the chance that the cerebrum is a real one, fsaverage5's white and pial
    surfaces under a random warp (see :mod:`~napari_medseg.core.phantoms.surface`); drawn
    first, the folded cortex's chance applies to the rest.
    ``p_average``: the chance that the subject is drawn as a population-average template
    (as MNI152 is): the label map's classes are smoothed into probabilities
    (:func:`averaged`), the images are their probability-weighted intensities
    (:func:`render_average`) and the labels their arg-max, the way a template's tissue
    maps and reference come about; drawn after the anatomy's kind.
    ``p_tight``: the chance that a skull-stripped subject's mask was cut closer to the brain
    (:func:`cut_outer_csf`: the extra-cerebral CSF within 0-4 mm of its edge removed)."""
    if label_set not in ("reduced", "full"):
        raise InputError(f"Unknown label set {label_set!r}; use 'reduced' or 'full'.")
    rng = np.random.default_rng(seed)
    spacing = tuple(float(s) for s in spacing)
    surface = bool(p_surface > 0 and rng.random() < p_surface)  # no draw at 0: earlier seeds stay as they were
    folded = bool(not surface and p_folded > 0 and rng.random() < p_folded)
    average = bool(p_average > 0 and rng.random() < p_average)
    classes, tissue, lesion, _ = draw_anatomy(rng, shape, spacing, lesions, vary=vary_anatomy, folded=folded,
                                              surface=surface)
    drawn = np.where(lesion, LESION, classes).astype(np.uint8)
    stripped = bool(rng.random() < p_stripped)
    if stripped and p_tight > 0 and rng.random() < p_tight:  # (no draw at 0)
        drawn = cut_outer_csf(rng, drawn, spacing)
        classes = np.where(drawn == BG, BG, classes)
        tissue = np.where(drawn == BG, 0, tissue).astype(np.uint8)
    if average:
        probs = averaged(rng, drawn, spacing)
        drawn = np.argmax(probs, 0).astype(np.uint8)
        lesion = drawn == LESION
        classes = np.where(lesion, WM, drawn)  # (lesion voxels' tissue, as draw_anatomy gives it)
        tissue = np.where(classes >= SKULL, 0, classes).astype(np.uint8)
        outside = ((drawn == BG) | (drawn >= SKULL)) if stripped else None
        out = {"T1": render_average(rng, probs, t1_means(rng), outside)}
        if flair:
            out["FLAIR"] = render_average(rng, probs, flair_means(rng), outside)
    else:
        out = {"T1": render(rng, drawn, t1_means(rng), stripped)}
        if flair:
            out["FLAIR"] = render(rng, drawn, flair_means(rng), stripped)
    joint = np.where(lesion, LESION, tissue).astype(np.uint8)
    if label_set == "reduced":
        tissue, joint = _TO_REDUCED[tissue], _TO_REDUCED[joint]
    out.update(tissue=tissue, lesion=lesion.astype(np.uint8), labels=joint, affine=centred_affine(shape, spacing),
               spacing=spacing,
               stripped=stripped, brain=tissue > 0, seed=int(seed), classes=label_set, folded=folded,
               surface=surface, average=average)
    return out


# seeds of randomised subjects: far from the phantom's blocks and from the bench's held-out 900000 + i
_BASE = {"control": 5_000_000, "patient": 6_000_000, "val": 7_000_000}


def randomised_training_data(n_controls: int, n_patients: int, n_val: int = 2, seed: int = 0,
                             shape=(64, 72, 64), spacing=(2.5, 2.5, 2.5), label_set: str = "reduced",
                             vary_anatomy: bool = False, p_folded: float = 0.0, p_surface: float = 0.0,
                             p_average: float = 0.0, p_tight: float = 0.0):
    """(controls, patients, validation), preprocessed like user scans (see models._prepared).

    Controls: T1 + tissue, no lesions; patients: T1 + FLAIR + lesion mask; validation:
    fully labelled randomised subjects with lesions (synthetic, never a real scan).
    Skull-stripped subjects are normalised inside their brain, as a user's mask would be.
    """
    from .models import _prepared

    def make(which, i, lesions, flair):
        s = randomised_subject(_BASE[which] + 10_000 * int(seed) + i, shape, spacing, lesions=lesions,
                               flair=flair, label_set=label_set, vary_anatomy=vary_anatomy, p_folded=p_folded,
                               p_surface=p_surface, p_average=p_average, p_tight=p_tight)
        mods = ("T1", "FLAIR") if flair else ("T1",)
        return _prepared(s, mods, spacing, mask=s["brain"] if s["stripped"] else None)

    controls = [make("control", i, False, False) for i in range(int(n_controls))]
    patients = [make("patient", i, True, True) for i in range(int(n_patients))]
    val = [make("val", i, True, True) for i in range(int(n_val))]
    return controls, patients, val


JITTER_VOXELS = 1


def template_like_subject(seed: int, n_subjects: int = 12, shape=(128, 144, 128), spacing=(1.25, 1.25, 1.25)) -> dict:
    """A synthetic *population template*, made the way MNI152 is: the average of many
    subjects' T1 scans after registration, with tissue maps averaged the same way.

    Every subject shares the brain's size, shape and folding pattern (one generator,
    ``seed``) and has its own proportions: cortical thickness, sulcal width and depth,
    extra-cerebral CSF and ventricles (varied anatomy; a generator of its own), and is
    shifted by up to ``JITTER_VOXELS`` per axis, what a registration leaves. All are T1-like with one set of
    class means (the template's contrast), skull-stripped, each with its own noise,
    blur, bias and gamma. The reference is the arg-max of the averaged CSF / grey / white
    matter maps inside the mask (where most subjects have brain), as the MNI reference is.
    Returns ``T1``, ``reference`` (reduced labels), ``mask``, ``affine``, ``spacing``.
    Validation data for choices the real template must not make (never a real scan).
    """
    if n_subjects < 2:
        raise InputError(f"A template averages subjects: give at least 2, not {n_subjects}.")
    spacing = tuple(float(s) for s in spacing)
    means = t1_means(np.random.default_rng([int(seed), 1]))
    t1 = np.zeros(shape, np.float64)
    maps = np.zeros((4, *shape), np.float32)  # background, CSF, GM, WM (reduced)
    for i in range(int(n_subjects)):
        shared = np.random.default_rng([int(seed), 0])  # the same shape for every subject
        detail = np.random.default_rng([int(seed), 2, i])
        classes, tissue, _, _ = draw_anatomy(shared, shape, spacing, lesions=False, vary=True, detail=detail)
        offset = detail.integers(-JITTER_VOXELS, JITTER_VOXELS + 1, 3)  # what registration leaves
        classes, tissue = (np.roll(a, offset, axis=(0, 1, 2)) for a in (classes, tissue))
        t1 += render(detail, classes, means, stripped=True)
        reduced = _TO_REDUCED[tissue]
        for c in range(4):
            maps[c] += reduced == c
    maps /= n_subjects
    mask = maps[0] < 0.5
    reference = np.where(mask, 1 + np.argmax(maps[1:], 0), 0).astype(np.uint8)
    t1 = np.where(mask, t1 / n_subjects, 0.0).astype(np.float32)
    return {"T1": t1, "reference": reference, "mask": mask, "affine": centred_affine(shape, spacing),
            "spacing": spacing}
