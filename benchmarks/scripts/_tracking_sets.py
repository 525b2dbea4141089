"""Synthetic image sets the tracking check scripts share (never a real image)."""
from napari_medseg.methods.tracking import randomised as R
from napari_medseg.methods.tracking.synthetic import generate_many


def dr_images(parent: float, n: int = 48, seed: int = 555):
    """``n`` domain-randomised images; ``parent`` the share of starts on a wider crossing vessel."""
    draw = R.randomised_settings
    R.randomised_settings = lambda rng: draw(rng).replace(start_parent_fraction=parent)
    try:
        return generate_many("DR", n, seed=seed)
    finally:
        R.randomised_settings = draw
