"""The real-data test: the MNI152 (ICBM 2009a) T1 template and its grey/white-matter maps.

nilearn ships these three files inside its package, so they are real MRI-derived data
available offline. The maps score only grey and white matter (the reduced label set,
CSF not scored). :func:`mni_with_lesions` turns the template into a "patient": synthetic
white-matter lesions, hypo-intense on T1, and a FLAIR-like image derived from the
tissue maps (the template has no FLAIR), with lesions bright as on a real FLAIR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from ...core.phantoms.brain import lesion_blob
from .datasets import resample_to
from .labels import REDUCED

_PREFIX = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
# FLAIR-like contrast from tissue fractions: CSF dark, WM darker than GM, lesions bright
FLAIR_CSF, FLAIR_GM, FLAIR_WM, FLAIR_LESION = 0.15, 0.65, 0.5, 1.2


def mni_folder() -> Path:
    """nilearn's bundled data folder, where the MNI152 files are."""
    from ...core.phantoms.surface import nilearn_data_folder

    return nilearn_data_folder("the MNI152 template")


def mni152(spacing=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(t1, gm, wm, affine)``: T1 scaled to 0..1, GM/WM probabilities in 0..1, float32.

    ``spacing`` (mm, a number or three) resamples from the 1 mm grid for speed; the
    new grid starts at the same first voxel centre, so the affine stays exact.
    """
    import nibabel as nib

    folder = mni_folder()
    out = []
    for name in ("t1", "gm", "wm"):
        path = folder / _PREFIX.format(name)
        if not path.is_file():
            raise InputError(f"{path} is missing: this nilearn installation lacks the MNI152 template.")
        img = nib.load(str(path))
        out.append(np.asarray(img.dataobj, np.float32) / 255.0)  # stored as uint8 0..255
        affine = np.asarray(img.affine, np.float64)
    if spacing is not None:
        old = np.linalg.norm(affine[:3, :3], axis=0)
        step = np.broadcast_to(np.asarray(spacing, np.float64), (3,)) / old
        if np.allclose(step, np.round(step)):  # whole factors: block means (anti-aliased, fast)
            out, affine = [_block_mean(v, np.round(step).astype(int)) for v in out], _scaled(affine, step, True)
        else:
            shape = tuple(int(np.floor((n - 1) / s)) + 1 for n, s in zip(out[0].shape, step))
            new = _scaled(affine, step, False)
            out = [np.clip(resample_to(new, shape, v, affine), 0.0, 1.0).astype(np.float32) for v in out]
            affine = new
    return out[0], out[1], out[2], affine


def _scaled(affine, step, block: bool) -> np.ndarray:
    """Affine of a grid ``step`` times coarser; a block's centre is (step-1)/2 voxels in."""
    new = affine @ np.diag([*step, 1.0])
    if block:
        new[:3, 3] = affine[:3, :3] @ ((np.asarray(step) - 1) / 2) + affine[:3, 3]
    return new


def _block_mean(v: np.ndarray, k) -> np.ndarray:
    n = [s // f for s, f in zip(v.shape, k)]
    v = v[: n[0] * k[0], : n[1] * k[1], : n[2] * k[2]]
    return v.reshape(n[0], k[0], n[1], k[1], n[2], k[2]).mean((1, 3, 5), dtype=np.float32)


def mni_reference_labels(gm, wm, threshold: float = 0.5) -> np.ndarray:
    """Reduced-set reference: GM (2) / WM (3) where that probability is > threshold and the
    larger of the two; everything else 0, since CSF cannot be scored from these maps."""
    gm, wm = np.asarray(gm), np.asarray(wm)
    ref = np.zeros(gm.shape, np.uint8)
    ref[(gm > threshold) & (gm >= wm)] = REDUCED.names.index("grey matter")
    ref[(wm > threshold) & (wm > gm)] = REDUCED.names.index("white matter")
    return ref


def derived_flair(gm, wm, brain) -> np.ndarray:
    """A FLAIR-like image from tissue fractions (CSF = 1 - GM - WM inside ``brain``): CSF
    dark, WM darker than GM; zero outside the brain. The template has no FLAIR."""
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    flair = FLAIR_CSF * csf + FLAIR_GM * gm + FLAIR_WM * wm
    return np.where(brain, flair, 0.0).astype(np.float32)


@dataclass
class MNIPatient:
    t1: np.ndarray
    flair: np.ndarray
    lesion: np.ndarray  # uint8 0/1
    labels: np.ndarray  # reduced set: reference GM/WM with lesion voxels set to lesion
    affine: np.ndarray
    gm: np.ndarray
    wm: np.ndarray


def mni_with_lesions(seed: int = 0, n_lesions: int = 8, spacing=2.0, wm_threshold: float = 0.8,
                     radius=(1.0, 4.0)) -> MNIPatient:
    """The template with ``n_lesions`` synthetic WM lesions and a derived FLAIR.

    Lesion voxels are kept only where the WM probability exceeds ``wm_threshold`` (deep
    white matter). Lesions replace the local T1 by a hypo-intense value (half the WM
    level, between GM and CSF) and are bright on the FLAIR-like image.
    """
    rng = np.random.default_rng(seed)
    t1, gm, wm, affine = mni152(spacing)
    deep = wm > wm_threshold
    if not deep.any():
        raise InputError(f"No voxel has a WM probability above {wm_threshold}; lower wm_threshold.")
    lesion = np.zeros(t1.shape, bool)
    idx = np.flatnonzero(deep)
    for c in np.array(np.unravel_index(rng.choice(idx, size=min(n_lesions, idx.size), replace=False),
                                       t1.shape)).T:
        blob = lesion_blob(rng, float(rng.uniform(*radius)))
        h = blob.shape[0] // 2
        lo = c - h
        clo, chi = np.maximum(lo, 0), np.minimum(c + h + 1, t1.shape)
        sub = tuple(slice(a, b) for a, b in zip(clo, chi))
        bsub = tuple(slice(a - l, b - l) for a, b, l in zip(clo, chi, lo))
        lesion[sub] |= blob[bsub] & deep[sub]

    from scipy import ndimage

    soft = ndimage.gaussian_filter(lesion.astype(np.float32), 0.6)  # partial volume at the rim
    wm_level = float(np.median(t1[deep]))
    t1_out = (t1 * (1 - soft) + 0.5 * wm_level * soft).astype(np.float32)
    brain = t1 > 0.02
    flair = derived_flair(gm, wm, brain)
    flair = flair * (1 - soft) + FLAIR_LESION * soft
    flair = np.where(brain, flair, 0.0).astype(np.float32)
    labels = mni_reference_labels(gm, wm)
    labels[lesion] = REDUCED.lesion
    return MNIPatient(t1_out, flair, lesion.astype(np.uint8), labels, affine, gm, wm)
