"""Seeded synthetic axon images (Dai et al. 2019, §4.1 and Figure 3).

"We simulated single axons by fitting polynomial splines to constrained random walks
through 2D space, and adding Gaussian noise to the background." Five settings by
name — SI (standard), SI-RC (reduced contrast), SI-W (wide), SI-EN (extra noise),
SI-SN (structured, Poisson noise) — plus ``crossing``: SI with distractor axons that
cross the main one. Distractors may also be wider than the axon and branch off it
(``distractor_width``, ``branch_fraction``; the domain-randomised setting uses both: on
real images a traced fibre meets wider vessels at junctions). Every parameter of :class:`SyntheticSettings` can be set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from napari_medseg.core.errors import InputError

from .curves import (
    WalkDoesNotFit,
    arc_length,
    constrained_random_walk,
    distance_to_polyline,
    fit_polynomial_spline,
    gaussian_tube,
    self_separation_ok,
)


@dataclass(frozen=True)
class SyntheticSettings:
    """Simulator parameters. Intensities are on a 0..1 scale; lengths in pixels."""

    name: str = "SI"
    image_shape: tuple[int, int] = (128, 128)
    # geometry: a constrained random walk, then a smoothing spline
    axon_length: tuple[float, float] = (100.0, 180.0)  # arc length, drawn uniformly
    margin: float = 8.0  # the axon (and both its ends) stay this far inside the image
    walk_step: float = 4.0
    turn_sd: float = 0.35  # heading change per walk step (rad)
    heading_pull: float = 0.08  # pull of the heading back to its first direction
    min_separation: float = 10.0  # distant parts of one axon stay this far apart
    spline_smoothing: float = 2.0  # splprep's s per walk point (px^2)
    centreline_spacing: float = 1.0  # spacing of the returned centreline points
    # appearance: a Gaussian cross-section on a noisy background
    axon_sigma: float = 1.0  # std of the cross-section (px)
    axon_intensity: float = 0.4  # peak above the background
    intensity_variation: float = 0.25  # smooth relative variation along the axon
    intensity_correlation: float = 12.0  # its correlation length along the axon (px)
    background: float = 0.1
    background_variation: float = 0.03  # amplitude of a smooth uneven background
    noise: str = "gaussian"  # "gaussian" or "poisson"
    noise_std: float = 0.1  # Gaussian noise std
    photons: float = 12.0  # Poisson noise: counts per unit intensity (fewer = noisier)
    # distractors ("crossing" setting)
    n_distractors: int = 0
    distractor_intensity: float = 1.0  # relative to axon_intensity
    distractor_length: tuple[float, float] = (80.0, 160.0)
    crossing_angle: tuple[float, float] = (35.0, 90.0)  # degrees from the main axon
    distractor_width: tuple[float, float] = (1.0, 1.0)  # its cross-section std / axon_sigma, drawn uniformly
    branch_fraction: float = 0.0  # share of distractors that leave the axon on one side only (a branch)
    # share of images whose axon starts on a wider, brighter vessel that crosses it there: the
    # branch a user clicks where it leaves its parent (drawn after the distractors)
    start_parent_fraction: float = 0.0
    start_parent_width: tuple[float, float] = (1.5, 3.0)  # its cross-section std / axon_sigma
    # the parent leaves at this angle (degrees; None: crossing_angle) and, when start_beside is
    # given, the traced fibre starts where its centre is this many px from the parent's (the start
    # a user clicks on a thin branch just after it has left a wider vessel, still beside it)
    start_parent_angle: tuple[float, float] | None = None
    start_beside: tuple[float, float] | None = None

    def replace(self, **changes) -> "SyntheticSettings":
        return dataclasses.replace(self, **changes)


SETTINGS: dict[str, SyntheticSettings] = {
    "SI": SyntheticSettings(),
    "SI-RC": SyntheticSettings(name="SI-RC", axon_intensity=0.2),
    "SI-W": SyntheticSettings(name="SI-W", axon_sigma=2.5),
    "SI-EN": SyntheticSettings(name="SI-EN", noise_std=0.2),
    "SI-SN": SyntheticSettings(name="SI-SN", noise="poisson"),
    "crossing": SyntheticSettings(name="crossing", n_distractors=2),
}


#: What the shipped agents were trained on: domain-randomised images (:mod:`.randomised`)
#: and mixes taken in turn (:func:`generate_many`); offered for training beside ``SETTINGS``
#: (the last mix, with ``DRs``, is one no shipped agent came through: docs/benchmarks.md).
TRAINING_MIXES = ("DR", "SI+DR", "SI+DR+crossing", "SI+DR+DRp+crossing", "SI+DR+DRp+DRj+crossing",
                  "SI+DR+DRp+DRj+DRs+crossing")
#: Drawn by :mod:`.randomised`: "DR" domain-randomised; "DRp" the same with each fibre starting
#: where it leaves a wider, at least as bright vessel (a branch taken from its parent); "DRj" the
#: same draws with every branch or crossing along the fibre wider and at least as bright as it
#: (a junction the traced, thinner fibre has to pass).
#: "DRs" the same draws with the fibre leaving a wider vessel at 15-35 degrees and the start placed
#: further along, where the two centres are still 3-7 px apart (the thin branch clicked beside its parent).
RANDOMISED = ("DR", "DRp", "DRj", "DRs")
REDRAWS = 10  # generate_many: an image whose walks found no room is drawn again, from a derived seed, this often
TRAINING_CHOICES = (*SETTINGS, *TRAINING_MIXES)


def check_setting(name: str) -> None:
    """One clear message for a training setting :func:`generate_many` cannot draw: each
    name joined by ``+`` must be one of ``SETTINGS`` or ``RANDOMISED``."""
    if any(part not in RANDOMISED and part not in SETTINGS for part in str(name).split("+")):
        raise InputError(f"Unknown synthetic setting {name!r}: choose from {', '.join([*SETTINGS, *RANDOMISED])}, "
                         "or several joined by '+' (e.g. SI+DR+crossing).")


def settings(name: str = "SI", **overrides) -> SyntheticSettings:
    """The named setting, with any parameter overridden."""
    if name not in SETTINGS:
        raise InputError(f"unknown synthetic setting {name!r}; choose one of {', '.join(SETTINGS)}")
    return SETTINGS[name].replace(**overrides)


@dataclass
class SyntheticAxonImage:
    image: np.ndarray  # (H, W) float32 in 0..1
    centreline: np.ndarray  # (N, 2) float (y, x), ordered from one end to the other
    clean: np.ndarray  # (H, W) float32, the image before noise
    distractors: list[np.ndarray] = field(default_factory=list)
    settings: SyntheticSettings = field(default_factory=SyntheticSettings)
    seed: int | None = None

    @property
    def start(self) -> np.ndarray:
        return self.centreline[0]

    @property
    def end(self) -> np.ndarray:
        return self.centreline[-1]


def _main_axon(rng, s: SyntheticSettings) -> np.ndarray:
    for _ in range(50):
        length = rng.uniform(*s.axon_length)
        walk = constrained_random_walk(
            rng, s.image_shape, length, s.walk_step, s.turn_sd, s.heading_pull, s.margin, s.min_separation
        )
        line = fit_polynomial_spline(walk, s.spline_smoothing, s.centreline_spacing)
        inside = np.all((line >= s.margin / 2) & (line <= np.array(s.image_shape) - 1 - s.margin / 2))
        if inside and self_separation_ok(line, s.min_separation):
            return line
    raise InputError(f"setting {s.name!r}: no axon fits the image; lower axon_length or margin")


def _distractor(rng, s: SyntheticSettings, main: np.ndarray, at_start: bool = False) -> np.ndarray:
    """A second axon through a point of the main one, at an angle to it; ``at_start``:
    through the main axon's first point, crossing it fully (a parent vessel)."""
    s_main = arc_length(main)
    for _ in range(50):
        if at_start:
            i, t = 0, main[min(4, len(main) - 1)] - main[0]
        else:
            i = int(np.searchsorted(s_main, rng.uniform(0.2, 0.8) * s_main[-1]))
            i = int(np.clip(i, 2, len(main) - 3))
            t = main[i + 2] - main[i - 2]
        span = s.start_parent_angle if at_start and s.start_parent_angle is not None else s.crossing_angle
        angle = np.arctan2(t[0], t[1]) + rng.choice([-1, 1]) * np.deg2rad(rng.uniform(*span))
        half = rng.uniform(*s.distractor_length) / 2
        walk_args = (s.image_shape, half, s.walk_step, s.turn_sd, s.heading_pull, 0.0, s.min_separation)
        fwd = constrained_random_walk(rng, *walk_args, start=main[i], heading=angle, stop_at_edge=True)
        branch = not at_start and s.branch_fraction > 0 and rng.random() < s.branch_fraction  # (no draw unless asked for)
        if branch:
            walk = fwd
        else:
            bwd = constrained_random_walk(rng, *walk_args, start=main[i], heading=angle + np.pi, stop_at_edge=True)
            walk = np.concatenate([bwd[::-1], fwd[1:]])
        if len(walk) < 4:
            continue
        line = fit_polynomial_spline(walk, s.spline_smoothing, s.centreline_spacing)
        d, _ = distance_to_polyline(main, s.image_shape, max_distance=4.0)
        near = ndi.map_coordinates(np.isfinite(d).astype(float), line.T, order=0, mode="constant")
        if near.sum() * s.centreline_spacing <= 12.0 or (at_start and s.start_beside is not None):
            return line  # it crosses, it does not run alongside (a parent left at a shallow angle may)
    raise InputError(f"setting {s.name!r}: could not place a crossing distractor")


def _smooth_profile(rng, length: float, s: SyntheticSettings):
    """Relative intensity along the axon: 1 + smooth noise (varicosities, focus)."""
    n = max(2, int(length) + 1)
    noise = ndi.gaussian_filter1d(rng.standard_normal(n), s.intensity_correlation / 2, mode="nearest")
    noise /= noise.std() + 1e-9
    values = np.clip(1.0 + s.intensity_variation * noise, 0.2, None)
    return lambda arc: np.interp(arc, np.arange(n), values)


def _smooth_background(rng, s: SyntheticSettings) -> np.ndarray:
    if s.background_variation <= 0:
        return np.full(s.image_shape, s.background)
    field_ = ndi.gaussian_filter(rng.standard_normal(s.image_shape), max(s.image_shape) / 8, mode="wrap")
    field_ /= field_.std() + 1e-9
    return s.background + s.background_variation * field_


def generate(setting: SyntheticSettings | str = "SI", seed: int | None = 0, **overrides) -> SyntheticAxonImage:
    """One synthetic axon image. Same seed and settings, same image.

    Random draws happen in a fixed order (geometry, then intensities, then noise), so
    two settings that differ only in appearance give the same axon for one seed.
    """
    s = settings(setting, **overrides) if isinstance(setting, str) else setting.replace(**overrides)
    rng = np.random.default_rng(seed)
    for attempt in range(20):  # a main axon that leaves no room for its distractors is drawn again
        main = _main_axon(rng, s)
        try:
            distractors = [_distractor(rng, s, main) for _ in range(s.n_distractors)]
            break
        except InputError:
            if attempt == 19:
                raise
    parent = s.start_parent_fraction > 0 and rng.random() < s.start_parent_fraction  # (no draw unless asked for)
    if parent:
        try:
            distractors.append(_distractor(rng, s, main, at_start=True))
        except InputError:
            parent = False
    centreline = main
    if parent and s.start_beside is not None:  # start further along, where the fibre is still beside its parent
        gap = np.linalg.norm(main[:, None, :] - distractors[-1][None, :, :], axis=2).min(1)
        beside = np.flatnonzero(gap >= rng.uniform(*s.start_beside))
        if len(beside) and beside[0] <= len(main) // 3:
            centreline = main[beside[0]:]
    clean = np.zeros(s.image_shape)
    for k, line in enumerate([main] + distractors):
        scale = s.axon_intensity * (1.0 if k == 0 else s.distractor_intensity)
        sigma = s.axon_sigma
        if parent and k == len(distractors):  # the parent vessel at the start: wider and at least as bright
            scale = s.axon_intensity * max(1.0, s.distractor_intensity)
            sigma = min(4.0, s.axon_sigma * rng.uniform(*s.start_parent_width))
        elif k and tuple(s.distractor_width) != (1.0, 1.0):  # (no draw unless asked for: fixed seeds stay)
            sigma = min(4.0, s.axon_sigma * rng.uniform(*s.distractor_width))
        profile = _smooth_profile(rng, arc_length(line)[-1], s)
        clean = np.maximum(clean, scale * gaussian_tube(line, s.image_shape, sigma, profile))
    clean = np.clip(clean + _smooth_background(rng, s), 0.0, 1.0)
    if s.noise == "gaussian":
        noisy = clean + s.noise_std * rng.standard_normal(s.image_shape)
    elif s.noise == "poisson":
        noisy = rng.poisson(clean * s.photons) / s.photons
    else:
        raise InputError(f"unknown noise {s.noise!r}; use 'gaussian' or 'poisson'")
    return SyntheticAxonImage(
        image=np.clip(noisy, 0.0, 1.0).astype(np.float32),
        centreline=centreline,
        clean=clean.astype(np.float32),
        distractors=distractors,
        settings=s,
        seed=seed,
    )


def generate_many(setting: SyntheticSettings | str = "SI", n: int = 32, seed: int = 0, **overrides):
    """``n`` images with independent seeds spawned from ``seed``. Settings ``"DR"`` and
    ``"DRp"``, ``"DRj"``: domain-randomised images (:mod:`.randomised`; ``"DRp"`` with a wider
    parent vessel at each start, ``"DRj"`` with wider junctions along the fibre); names joined by ``+`` (``"SI+DR"``,
    ``"SI+DR+crossing"``): the image ``i`` is of the ``i % k``-th of the ``k`` settings."""
    children = np.random.SeedSequence(seed).spawn(n)
    seeds = [int(c.generate_state(1)[0]) for c in children]
    if isinstance(setting, str):
        check_setting(setting)
    parts = setting.split("+") if isinstance(setting, str) else [setting]

    def draw(part, sd):
        if part in RANDOMISED:
            from .randomised import generate_randomised

            return generate_randomised(sd, start_parent=part in ("DRp", "DRs"), wider_junctions=part == "DRj",
                                       start_beside=part == "DRs")
        return generate(part, sd, **overrides)

    def one(part, sd):
        """An unlucky draw (a walk that found no room) is drawn again from a seed derived from
        its own, up to REDRAWS times; settings under which no walk fits still raise."""
        for k in range(REDRAWS + 1):
            try:
                return draw(part, sd if k == 0 else int(np.random.SeedSequence([sd, k]).generate_state(1)[0]))
            except WalkDoesNotFit:
                if k == REDRAWS:
                    raise

    return [one(parts[i % len(parts)], sd) for i, sd in enumerate(seeds)]
