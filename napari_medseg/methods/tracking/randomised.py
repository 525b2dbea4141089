"""Domain-randomised training images: the variation real microscopy has (issue 15).

The paper trains on its synthetic SI images and fine-tunes on real ones. Real fibres
vary far more than SI: widths of 1-8 px, weak or strong contrast on dim or bright
backgrounds, Gaussian, Poisson and speckle noise, blur, uneven illumination, textured
background and clutter, faint stretches, branches and crossings, and dark fibres on a
bright background. Setting ``"DR"`` draws all of that per image (seeded), then maps the
image through the same quantile normalisation that :func:`~.prepare.prepare_image`
applies at inference, so training and inference see identical intensity statistics.
The geometry (random walk + spline, §4.1) and the centreline are the paper's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_medseg.core.errors import InputError

from .synthetic import SyntheticAxonImage, SyntheticSettings, generate

NAME = "DR"


def randomised_settings(rng: np.random.Generator) -> SyntheticSettings:
    """One draw of the simulator's appearance and clutter parameters."""
    return SyntheticSettings(
        name=NAME,
        axon_sigma=float(rng.uniform(0.45, 3.4)),  # FWHM about 1-8 px
        axon_intensity=float(rng.uniform(0.1, 0.6)),
        intensity_variation=float(rng.uniform(0.1, 0.6)),  # faint stretches
        intensity_correlation=float(rng.uniform(6.0, 24.0)),
        background=float(rng.uniform(0.05, 0.4)),
        background_variation=float(rng.uniform(0.0, 0.15)),
        noise=str(rng.choice(["gaussian", "poisson"])),
        noise_std=float(rng.uniform(0.01, 0.15)),
        photons=float(rng.uniform(6.0, 80.0)),
        n_distractors=int(rng.choice([0, 0, 1, 1, 2, 3])),  # crossings and branches
        distractor_intensity=float(rng.uniform(0.4, 1.2)),
        crossing_angle=(20.0, 90.0),
        distractor_width=(0.7, 3.0),  # junctions with wider vessels (the traced fibre is often the thinner one)
        branch_fraction=0.5,  # branches leaving the fibre, as well as crossings
    )


def _smooth_field(rng, shape, scale: float) -> np.ndarray:
    f = ndi.gaussian_filter(rng.standard_normal(shape), scale, mode="wrap")
    return f / (f.std() + 1e-9)


def _clutter(rng, shape, amplitude: float) -> np.ndarray:
    """Blobs (cell bodies, debris) and short bright specks."""
    out = np.zeros(shape)
    for _ in range(int(rng.integers(1, 8))):
        c = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        s = rng.uniform(1.5, 7.0)
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        out += rng.uniform(0.3, 1.0) * amplitude * np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * s * s))
    return out


#: ``"DRj"``: every branch or crossing along the fibre is this many times wider than the fibre
#: (cross-section std, capped at 4 px like every vessel) and at least as bright.
JUNCTION_WIDTH = (1.5, 3.0)
#: ``"DRs"``: the parent vessel leaves the fibre at this angle (degrees), and the fibre's start lies
#: where the two centres are this many px apart.
BESIDE_ANGLE, BESIDE_GAP = (15.0, 35.0), (3.0, 7.0)


def generate_randomised(seed: int | None = 0, start_parent: bool = False,
                        wider_junctions: bool = False, start_beside: bool = False) -> SyntheticAxonImage:
    """One domain-randomised image (normalised as at inference) with its centreline.
    ``start_parent``: the fibre starts where it leaves a wider, at least as bright vessel
    (setting ``"DRp"``); ``wider_junctions``: at least one branch or crossing along the
    fibre, each wider (``JUNCTION_WIDTH``) and at least as bright as the fibre (setting
    ``"DRj"``: the junctions where real traces turn onto the wider vessel); ``start_beside``
    (with ``start_parent``): the parent leaves at a shallow angle (``BESIDE_ANGLE``) and the
    start lies further along, still beside it (``BESIDE_GAP``; setting ``"DRs"``). Otherwise
    the same appearance draws as without."""
    rng = np.random.default_rng(seed)
    for _ in range(20):  # a draw without contrast left (e.g. clipped, then inverted): draw again
        try:
            return _one(rng, seed, start_parent, wider_junctions, start_beside)
        except InputError:
            continue
    return _one(np.random.default_rng(0), seed, start_parent, wider_junctions, start_beside)  # pragma: no cover


def _one(rng: np.random.Generator, seed, start_parent: bool = False, wider_junctions: bool = False,
         start_beside: bool = False) -> SyntheticAxonImage:
    from .prepare import normalise_like_training

    s = randomised_settings(rng)
    if start_parent:
        s = s.replace(start_parent_fraction=1.0)
    if start_beside:
        s = s.replace(name="DRs", start_parent_angle=BESIDE_ANGLE, start_beside=BESIDE_GAP)
    if wider_junctions:
        s = s.replace(name="DRj", n_distractors=max(1, s.n_distractors), distractor_width=JUNCTION_WIDTH,
                      distractor_intensity=max(1.0, s.distractor_intensity))
    for attempt in range(8):  # a walk or a shallow crossing that did not fit: draw the geometry again
        try:
            r = generate(s if attempt < 4 else s.replace(n_distractors=min(s.n_distractors, int(wider_junctions))),
                         seed=int(rng.integers(2**31)))
            break
        except (InputError, ValueError):
            continue
    else:  # pragma: no cover - never seen in 10,000 draws
        r = generate(s.replace(n_distractors=0), seed=0)
    img = r.image.astype(np.float64)
    if rng.random() < 0.5:  # textured background
        img = img + rng.uniform(0.01, 0.06) * _smooth_field(rng, img.shape, rng.uniform(1.0, 4.0))
    if rng.random() < 0.5:
        img = img + _clutter(rng, img.shape, s.axon_intensity)
    if rng.random() < 0.5:  # uneven illumination (vignetting, focus)
        img = img * np.clip(1.0 + rng.uniform(0.1, 0.5) * _smooth_field(rng, img.shape, 24.0), 0.3, None)
    if rng.random() < 0.3:  # speckle: multiplicative noise
        img = img * np.clip(1.0 + rng.uniform(0.05, 0.3) * rng.standard_normal(img.shape), 0.0, None)
    if rng.random() < 0.4:  # out-of-focus blur
        img = ndi.gaussian_filter(img, rng.uniform(0.3, 1.2))
    if rng.random() < 0.25:  # dark fibres on a bright background
        img = img.max() - img
    image = normalise_like_training(img.astype(np.float32))
    return SyntheticAxonImage(image=image, centreline=r.centreline, clean=r.clean, distractors=r.distractors,
                              settings=s, seed=seed)
