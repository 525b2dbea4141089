"""npe2 sample data "brain_tumour": a few multi-modal brain tumour phantom subjects
(T1, T1c, T2 and FLAIR, BraTS-like, Giacomello et al. 2020 setting) with their
whole-tumour masks, for the Modality transfer widget.

Each volume is a stack of axial slices, ``(slice, row, column)``: napari's slider walks
through the slices and the widget reads every layer that way. Intensities are as the
phantom renders them (each volume has its own gain, as scans do); the widget does the
paper's 2-98 percentile scaling itself. Seeds are fixed and are not those of the
widget's extra "phantom subjects" (:data:`PHANTOM_SEED`).
"""

from __future__ import annotations

import numpy as np

MODALITIES = ("T1", "T1c", "T2", "FLAIR")
SAMPLE_SEED = 2_020_000  # subject i of the sample: seed SAMPLE_SEED + i
PHANTOM_SEED = 7_000_000  # the widget's extra phantom subjects: PHANTOM_SEED + 1000 * seed + i


def axial_stack(volume: np.ndarray) -> np.ndarray:
    """A phantom volume (x, y, axial z) as a stack of axial slices (z, y, x), anterior up."""
    return np.ascontiguousarray(np.asarray(volume).transpose(2, 1, 0)[:, ::-1])


def phantom_subject(seed: int, grade: str = "HG", shape=(64, 72, 64), spacing=(2.25, 2.25, 2.25)) -> dict:
    """One phantom subject as axial stacks: ``{"images": {modality: (Z, Y, X) float32},
    "mask": (Z, Y, X) uint8 whole tumour, "grade", "seed", "spacing": (z, y, x)}``."""
    from .methods.modality_transfer.tumour import tumour_subject

    s = tumour_subject(int(seed), shape=shape, spacing=spacing, grade=grade)
    return {"images": {m: axial_stack(s.images[m]).astype(np.float32) for m in MODALITIES},
            "mask": axial_stack(s.whole).astype(np.uint8), "grade": s.grade, "seed": s.seed,
            "spacing": (s.spacing[2], s.spacing[1], s.spacing[0])}


def tumour_sample(n_subjects: int = 4, shape=(64, 72, 64), spacing=(2.25, 2.25, 2.25)):
    """Layer-data tuples: for each subject ``sub-0N``, its T1, T1c, T2 and FLAIR image
    layers and its whole-tumour Labels layer (the last subject is low grade). Only the
    first subject's FLAIR and tumour are visible. Metadata ``{"tumour": {"modality",
    "subject", "grade", "seed"}}`` name each layer's modality and subject."""
    out = []
    for i in range(int(n_subjects)):
        grade = "LG" if i == n_subjects - 1 and n_subjects > 2 else "HG"
        p = phantom_subject(SAMPLE_SEED + i, grade, shape, spacing)
        subject = f"sub-{i + 1:02d}"
        common = {"scale": tuple(float(v) for v in p["spacing"])}
        info = {"subject": subject, "grade": grade, "seed": p["seed"]}
        for m in MODALITIES:
            img = p["images"][m]
            lo, hi = (float(v) for v in np.percentile(img, [1, 99.5]))
            out.append((img, {"name": f"{subject} {m}", "colormap": "gray", "contrast_limits": [lo, max(hi, lo + 1e-3)],
                              "visible": i == 0 and m == "FLAIR", **common,
                              "metadata": {"tumour": {"modality": m, **info}}}, "image"))
        out.append((p["mask"], {"name": f"{subject} tumour", "opacity": 0.45, "visible": i == 0, **common,
                                "metadata": {"tumour": {"what": "whole tumour", **info}}}, "labels"))
    return out
