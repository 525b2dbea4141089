"""npe2 sample data of the Joint lesion + tissue dock: a held-out brain phantom, and the
real MNI152 template with synthetic lesions."""

from __future__ import annotations


def _brain_layers(t1, flair, labels, affine, label_set: str, what: str, truth_name: str):
    import numpy as np

    from .labels import LABEL_SETS

    ls = LABEL_SETS[label_set]
    spacing = [float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)]
    place = {"scale": spacing, "translate": [float(v) for v in np.asarray(affine)[:3, 3]],
             "metadata": {"medseg_io": {"affine": np.asarray(affine).tolist(), "format": "nifti"},
                          "joint": {"what": what}}}
    colours = {i: c for i, c in enumerate(ls.colours)} | {None: "transparent"}
    return [
        (t1, {"name": "T1", "colormap": "gray", **place}, "image"),
        (flair, {"name": "FLAIR", "colormap": "gray", "visible": False, **place}, "image"),
        (labels, {"name": truth_name, "visible": False, "opacity": 0.6, "colormap": colours,
                  "features": {"index": list(range(ls.n_classes)), "class": list(ls.names)}, **place}, "labels"),
    ]


def brain_phantom_sample(seed: int = 2019):
    """A held-out brain phantom (T1, FLAIR and its true labels, reduced classes, 2 mm)
    of the kind the shipped joint lesion + tissue model was trained on."""
    from ...core.phantoms.brain import brain_phantom

    p = brain_phantom((80, 96, 80), seed=seed, label_set="reduced", spacing=(2.0, 2.0, 2.0))
    return _brain_layers(p.t1, p.flair, p.labels, p.affine, "reduced", f"phantom seed {seed}", "true labels")


def mni_lesion_sample(seed: int = 0):
    """nilearn's MNI152 T1 template (real anatomy, 2 mm) with synthetic white-matter
    lesions and a FLAIR-like image derived from it; the thresholded GM/WM maps as labels."""
    from .mni import mni_with_lesions

    p = mni_with_lesions(seed=seed, spacing=2.0, radius=(0.75, 3.0))  # lesion diameters 3-12 mm
    layers = _brain_layers(p.t1, p.flair, p.labels, p.affine, "reduced", "MNI152 with lesions",
                           "reference labels (MNI GM/WM maps + lesions)")
    mask_meta = {k: v for k, v in layers[2][1].items() if k in ("scale", "translate", "metadata")}
    mask = (p.t1 > 0).astype("uint8")  # the template is skull-stripped: its non-zero voxels are the brain
    return layers + [(mask, {"name": "brain mask", "visible": False, "opacity": 0.3, **mask_meta}, "labels")]
