"""npe2 sample data of the Axon tracking dock: a synthetic SI axon image with its truth,
and scikit-image's bundled fundus photograph (real vessels)."""

from __future__ import annotations


def synthetic_axon_sample(seed: int = 2019, setting: str = "SI"):
    """A synthetic SI axon image (Dai et al. 2019) with its ground-truth centreline and
    the start and end points to track between."""
    import numpy as np

    from .synthetic import generate

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
