"""npe2 sample data of the Box-supervised training dock: synthetic PAS-stained kidney slides."""

from __future__ import annotations


def kidney_sample(size: int = 1024):
    """Synthetic PAS-stained kidney slides (Gupta et al. 2019 setting): a slide with boxes
    around every glomerulus (Stage 1), an unlabelled slide (Stage 2), and a validation
    slide with its true glomerulus masks. They come from the hard generator: some glomeruli
    touch, some are faint or sclerotic, and each slide has its own stain and focus. Seeds
    are fixed; none is a benchmark test seed."""
    from .boxes import boxes_to_shapes
    from .synthetic import HARD, synthetic_kidney

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
