"""Modality transfer data as a user brings it (Giacomello et al. 2020): volumes read as stacks of
2-D slices, scaled as the paper does, seeded phantom subjects as extra source data, and the
subject-wise split into training, validation and test slices.

A *volume* is a dict: ``name``, ``image`` (slices, rows, columns; scaled to [0, 1]),
``mask`` (the whole tumour), ``keep`` (the slices used), ``spacing`` and ``subject``. A
*part* is a :func:`~.tumour.tumour_slices`-style dict of slices (``images``, ``mask``,
``subject``, ``slice``).
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError
from ...core.intensity import percentile_scale
from .tumour import MODALITIES, tumour_subject

CHUNK = 4  # consecutive slices held out together (neighbouring slices are nearly the same image)
MIN_BRAIN = 0.1  # slices with less brain (non-zero pixels) and no tumour are left out
PHANTOM_SEED = 7_000_000  # extra phantom subjects: PHANTOM_SEED + 1000 * seed + i (not the sample's seeds)


def axial_stack(volume: np.ndarray) -> np.ndarray:
    """A phantom volume (x, y, axial z) as a stack of axial slices (z, y, x), anterior up."""
    return np.ascontiguousarray(np.asarray(volume).transpose(2, 1, 0)[:, ::-1])


def phantom_subject(seed: int, grade: str = "HG", shape=(64, 72, 64), spacing=(2.25, 2.25, 2.25)) -> dict:
    """One phantom subject as axial stacks: ``{"images": {modality: (Z, Y, X) float32},
    "mask": (Z, Y, X) uint8 whole tumour, "grade", "seed", "spacing": (z, y, x)}``."""
    s = tumour_subject(int(seed), shape=shape, spacing=spacing, grade=grade)
    return {"images": {m: axial_stack(s.images[m]).astype(np.float32) for m in MODALITIES},
            "mask": axial_stack(s.whole).astype(np.uint8), "grade": s.grade, "seed": s.seed,
            "spacing": (s.spacing[2], s.spacing[1], s.spacing[0])}


def volume_from_stack(name, image, mask, spacing, subject) -> dict:
    """A (slices, rows, columns) image and its tumour mask as the method reads them: the image
    scaled to its 2-98 percentiles (the paper), and the slices kept (enough brain, or tumour)."""
    image, mask = percentile_scale(image), (np.asarray(mask) > 0).astype(np.uint8)
    brain = (image > 0).mean(axis=(1, 2)) >= MIN_BRAIN
    keep = np.flatnonzero(brain | mask.any(axis=(1, 2)))
    return {"name": name, "image": image, "mask": mask, "keep": keep, "spacing": spacing, "subject": subject}


def phantom_volumes(n: int, modality: str, seed: int, shape, start: int) -> list[dict]:
    """``n`` seeded phantom subjects of ``modality`` as extra source data (every fifth low grade)."""
    out = []
    for i in range(int(n)):
        p = phantom_subject(PHANTOM_SEED + 1000 * int(seed) + i, "LG" if i % 5 == 4 else "HG", tuple(shape))
        out.append(volume_from_stack(f"phantom {i + 1}", p["images"][modality], p["mask"], (2.25, 2.25, 2.25), start + i))
    return out


def _chunks(keep: np.ndarray) -> list[np.ndarray]:
    """Runs of :data:`CHUNK` consecutive kept slices."""
    return [keep[i:i + CHUNK] for i in range(0, len(keep), CHUNK)]


def slices_part(volumes, picks, modality) -> dict:
    """A :func:`tumour_slices`-style part from (volume index, slice indices) picks, its
    slices zero-padded to the largest grid among them."""
    picks = [(v, np.asarray(s, int)) for v, s in picks if len(s)]
    if not picks:
        return {"images": {modality: np.zeros((0, 1, 1), np.float32)}, "mask": np.zeros((0, 1, 1), np.uint8),
                "subject": np.zeros(0, int), "slice": np.zeros(0, int)}
    h = max(volumes[v]["image"].shape[1] for v, _ in picks)
    w = max(volumes[v]["image"].shape[2] for v, _ in picks)

    def pad(a):
        return np.pad(a, [(0, 0), (0, h - a.shape[1]), (0, w - a.shape[2])])

    return {"images": {modality: np.concatenate([pad(volumes[v]["image"][s]) for v, s in picks]).astype(np.float32)},
            "mask": np.concatenate([pad(volumes[v]["mask"][s]) for v, s in picks]).astype(np.uint8),
            "subject": np.concatenate([[volumes[v]["subject"]] * len(s) for v, s in picks]).astype(int),
            "slice": np.concatenate([s for _, s in picks]).astype(int)}


def split_volumes(volumes, held: list[int] | None, fraction: float, seed: int, test: bool = True):
    """(train, val, test) picks. ``held`` volumes go to validation and test, alternately
    (one held-out volume: alternate chunks of its slices); with ``held=None`` a
    ``fraction`` of each volume's slices, in chunks of :data:`CHUNK`, is held out and
    its chunks alternate between validation and test. ``test=False``: all to validation."""
    rng = np.random.default_rng(seed)
    train, val, tst = [], [], []
    if held is not None:
        held = list(held)
        for i, vol in enumerate(volumes):
            if i not in held:
                train.append((i, vol["keep"]))
            elif len(held) == 1 and test:
                ch = _chunks(vol["keep"])
                val += [(i, c) for c in ch[0::2]]
                tst += [(i, c) for c in ch[1::2]]
            else:
                (tst if test and held.index(i) % 2 else val).append((i, vol["keep"]))
        return train, val, tst
    if not 0.0 < fraction < 1.0:
        raise InputError(f"The held-out fraction must be between 0 and 1, got {fraction}.")
    k = 0
    for i, vol in enumerate(volumes):
        ch = _chunks(vol["keep"])
        n_out = min(len(ch) - 1, max(1, int(round(fraction * len(ch))))) if len(ch) > 1 else 0
        out = set(rng.permutation(len(ch))[:n_out].tolist())
        for j, c in enumerate(ch):
            if j not in out:
                train.append((i, c))
            else:
                (tst if test and k % 2 else val).append((i, c))
                k += 1
    return train, val, tst


def has_tumour(part) -> bool:
    """Whether a part holds any tumour pixel (a validation or test part without cannot score a model)."""
    return bool(len(part["mask"]) and (part["mask"] > 0).any())


def source_split(vols: list[dict], fraction: float, seed: int, modality: str):
    """(train, val) parts of the source volumes: with three or more volumes, the last
    ``fraction`` of them (at least one) validate; else a fraction of each volume's slices."""
    n_val = min(len(vols) - 1, max(1, int(round(fraction * len(vols)))))
    held = list(range(len(vols) - n_val, len(vols))) if len(vols) >= 3 else None
    train, val, _ = split_volumes(vols, held, fraction, seed, test=False)
    return slices_part(vols, train, modality), slices_part(vols, val, modality)


def target_split(vols: list[dict], held: list[int] | None, fraction: float, seed: int, modality: str):
    """(train, val, test) parts of the target volumes (see :func:`split_volumes`); one clear
    error when training is empty or a held-out part has no tumour to score on."""
    train, val, test = split_volumes(vols, held, fraction, seed)
    parts = [slices_part(vols, p, modality) for p in (train, val, test)]
    if not len(parts[0]["mask"]):
        raise InputError("The target training set is empty: hold out less.")
    for part, name in ((parts[1], "validation"), (parts[2], "test")):
        if not has_tumour(part):
            raise InputError(f"The held-out target {name} slices contain no tumour, so they cannot score a model; "
                             "hold out other layers (or more than one) or a larger fraction.")
    return parts
