"""npe2 sample data "brain_tumour": a few multi-modal brain tumour phantom subjects
(T1, T1c, T2 and FLAIR, BraTS-like, Giacomello et al. 2020 setting) with their
whole-tumour masks, for the Modality transfer widget.

Each volume is a stack of axial slices, ``(slice, row, column)``: napari's slider walks
through the slices and the widget reads every layer that way. Intensities are as the
phantom renders them (each volume has its own gain, as scans do); the widget does the
paper's 2-98 percentile scaling itself. Seeds are fixed and are not those of the
widget's extra "phantom subjects" (``methods.modality_transfer.data.PHANTOM_SEED``).
"""

from __future__ import annotations

import numpy as np

SAMPLE_SEED = 2_020_000  # subject i of the sample: seed SAMPLE_SEED + i


def tumour_sample(n_subjects: int = 4, shape=(64, 72, 64), spacing=(2.25, 2.25, 2.25)):
    """Layer-data tuples: for each subject ``sub-0N``, its T1, T1c, T2 and FLAIR image
    layers and its whole-tumour Labels layer (the last subject is low grade). Only the
    first subject's FLAIR and tumour are visible. Metadata ``{"tumour": {"modality",
    "subject", "grade", "seed"}}`` name each layer's modality and subject."""
    from .data import phantom_subject
    from .tumour import MODALITIES

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
