"""npe2 sample data: multi-sequence cardiac MR phantom patients (bSSFP, T2, LGE), for the
Adversarial segmentation widget (Chen et al. 2019).

Per patient ``P<k>``: three image layers ``P1 bSSFP``, ``P1 T2``, ``P1 LGE`` (slices, H, W),
the expert-like labels of the annotated sequences ``P1 bSSFP labels`` and ``P1 T2 labels``,
and, hidden, the LGE truth ``P1 LGE truth (for checking only)``: the MS-CMR layout, where
LGE is the sequence without annotations. Each stack is placed along the long axis where
the phantom sampled it (base first), so the slider moves through the heart and every
layer shows its nearest slice. Layer metadata ``cardiac`` says patient, sequence and role.
The seeds are none of the benchmark's.
"""

from __future__ import annotations

import numpy as np

from .labels import CLASS_COLOURS, class_features

LONG_AXIS_MM = 100.0  # the phantom's base-to-apex span, in the layers' world units
PIXEL_MM = 1.5  # in-plane pixel size given to the layers
TRUTH_SUFFIX = "LGE truth (for checking only)"


def placement(positions, n: int) -> dict:
    """scale/translate putting slice k of an n-slice stack at its long-axis position (mm)."""
    t = np.asarray(positions, float)
    step = (t[-1] - t[0]) / (n - 1) if n > 1 else 0.96
    return {"scale": (float(LONG_AXIS_MM * step), PIXEL_MM, PIXEL_MM),
            "translate": (float(LONG_AXIS_MM * t[0]), 0.0, 0.0)}


def cardiac_sample(n_patients: int = 2, seed: int = 2019, size=(96, 96)):
    """Layer tuples for ``n_patients`` phantom patients (see the module); only the first
    patient's LGE is visible."""
    from .cardiac import SEQUENCES, cardiac_patient

    layers = []
    for i in range(int(n_patients)):
        pid, s = f"P{i + 1}", int(seed) + i
        p = cardiac_patient(s, size=tuple(size))
        place = {seq: placement(p.positions[seq], len(p.images[seq])) for seq in SEQUENCES}

        def meta(seq, what):
            return {"cardiac": {"patient": pid, "sequence": seq, "what": what, "seed": s,
                                "positions": [round(float(v), 4) for v in p.positions[seq]]}}

        for seq in SEQUENCES:
            layers.append((p.images[seq], {"name": f"{pid} {seq}", "colormap": "gray",
                                           "visible": i == 0 and seq == "LGE",
                                           "metadata": meta(seq, "image"), **place[seq]}, "image"))
        for seq, name, what in (("bSSFP", f"{pid} bSSFP labels", "labels"), ("T2", f"{pid} T2 labels", "labels"),
                                ("LGE", f"{pid} {TRUTH_SUFFIX}", "truth")):
            layers.append((p.labels[seq], {"name": name, "visible": False, "opacity": 0.5,
                                           "colormap": dict(CLASS_COLOURS), "features": class_features(),
                                           "metadata": meta(seq, what), **place[seq]}, "labels"))
    return layers
