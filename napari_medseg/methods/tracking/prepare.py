"""Bring a user's image into the form the tracking agent was trained on.

The agent learned on greyscale images in 0..1 with a dark background (~0.1) and
bright axons (~0.5). :func:`prepare_image` takes one channel of an RGB image, max-
projects a 3D stack (as the paper does with its microscopy stacks), optionally
inverts (dark vessels, e.g. the green channel of a fundus photograph) and maps two
intensity quantiles — background median and bright tail — onto those of the
synthetic training images. :func:`check_starts` refuses start points outside the
image or on blank background, each with one clear message.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

from napari_medseg.core.errors import InputError

BRIGHT_QUANTILE = 99.5  # the bright tail: structure pixels in a sparse image


@functools.lru_cache(maxsize=4)
def training_quantiles(setting: str = "SI") -> tuple[float, float]:
    """(median, 99.5th percentile) of synthetic training images of ``setting``."""
    from .synthetic import generate_many

    imgs = np.stack([r.image for r in generate_many(setting, 8, seed=12345)])
    return float(np.median(imgs)), float(np.percentile(imgs, BRIGHT_QUANTILE))


def is_rgb(data) -> bool:
    return np.ndim(data) == 3 and np.shape(data)[-1] in (3, 4)


def prepare_image(data, *, channel: int | None = None, project: str | None = None, invert: bool = False,
                  normalise: bool = True, rgb: bool | None = None) -> np.ndarray:
    """(H, W) float32 ready for :func:`~.track.track`.

    ``channel``: the channel of an RGB(A) image (0 red, 1 green, 2 blue); required for
    RGB. ``project="max"``: max projection of a 3D stack along its first axis; required
    for 3D. ``invert``: dark structures on a bright background. ``normalise``: match
    the background median and bright tail to the training images. ``rgb``: whether
    the last axis is colour (default: guessed from a last axis of 3 or 4).
    """
    a = np.asarray(data)
    rgb = is_rgb(a) if rgb is None else rgb
    if rgb:
        if channel is None:
            raise InputError(
                f"This is an RGB image (shape {a.shape}): choose the channel to trace in "
                "(0 red, 1 green, 2 blue; vessels in fundus photographs show best in green)."
            )
        if not 0 <= channel < a.shape[-1]:
            raise InputError(f"Channel {channel} does not exist: the image has {a.shape[-1]} channels.")
        a = a[..., channel]
    if a.ndim == 3:
        if project != "max":
            raise InputError(
                f"This is a 3D stack (shape {a.shape}): the tracker works in 2D. "
                "Use its maximum-intensity projection (project='max', the paper's choice)."
            )
        a = a.max(axis=0)
    if a.ndim != 2:
        raise InputError(f"Tracking needs a 2D greyscale image, got shape {a.shape}.")
    if min(a.shape) < 8:
        raise InputError(f"The image is too small to trace in ({a.shape}).")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError("The image contains NaN or infinite values; fix or mask them before tracking.")
    inside = None
    if invert:
        a, inside = _fill_dark_surround(a)
        a = a.max() - a
    if not normalise:
        return a
    return normalise_like_training(a, inside)


def normalise_like_training(a: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """Map the background median and bright tail onto those of the SI training images; the
    same mapping is applied to every domain-randomised training image (setting "DR").
    ``inside``: where the image shows the specimen (a photograph's field of view); the two
    quantiles are taken there only, so a frame around it does not change the mapping."""
    q = a if inside is None or not inside.any() else a[inside]
    med, hi = float(np.median(q)), float(np.percentile(q, BRIGHT_QUANTILE))
    if hi - med <= 1e-12 * max(1.0, abs(hi)):
        raise InputError("The image is blank (no contrast): nothing to trace.")
    t_med, t_hi = training_quantiles()
    return np.clip((a - med) / (hi - med) * (t_hi - t_med) + t_med, 0.0, 1.0).astype(np.float32)


AGENT_INPUTS = ("image", "image+ridge")


def agent_input(images: np.ndarray, mode: str = "image") -> np.ndarray:
    """What the agent's views are sampled from, per image of (H, W) or (B, H, W).

    ``"image"`` (the paper's, and every version up to v7): the prepared image itself.
    ``"image+ridge"`` (not in the paper; issue 15): the mean of the prepared image and its
    Sato ridge map (:func:`~.greedy.ridge_map`, σ 1–3 px, the greedy follower's) mapped to
    the training intensities by :func:`normalise_like_training`. The ridge half is flat
    where the background only changes slowly (uneven illumination), weaker on round blobs
    than on lines of the same contrast, and shows a wide vessel narrower than the image
    does; it keeps the line-like structure the agent follows and drops much of what
    misleads it. The image half keeps what the ridge map loses (brightness, crossings of
    equal width). The same
    function runs at training (:class:`~.env.TrackingEnv` applies it to every episode's
    image) and at inference, so the agent always sees what it learned on."""
    if mode not in AGENT_INPUTS:
        raise InputError(f"Unknown agent input {mode!r}; choose one of {', '.join(AGENT_INPUTS)}.")
    a = np.asarray(images, np.float32)
    if mode == "image":
        return a
    if a.ndim == 3:
        return np.stack([agent_input(x, mode) for x in a])
    from .greedy import ridge_map

    ridge = ridge_map(a)
    try:
        ridge = normalise_like_training(ridge)
    except InputError:  # no ridge anywhere (a flat image): the ridge half is the training background
        ridge = np.full_like(a, training_quantiles()[0])
    return (0.5 * (a + ridge)).astype(np.float32)


FRAME_EDGE_MAX_PX = 4  # how deep the soft edge of a field of view may reach (px)
FRAME_EDGE_LEVEL = 0.95  # a ring of it darker than this x the inside is edge, not image


def _fill_dark_surround(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A black frame around the field of view (fundus photographs, stitched mosaics)
    would turn into the brightest structure once inverted: fill it with the median of
    the field of view. The frame is what is darker than a tenth of the 75th percentile
    and touches the image border, with the soft edge of the field of view next to it
    (:func:`_soft_edge`): those pixels mix frame and image (anti-aliasing, the
    photograph's own soft edge), are darker than the image, and once inverted would ring
    the field of view with a thin bright line that a tracker follows as if it were a
    fibre. Returns the filled image and where it was not filled (None: no frame)."""
    frame = _frame(a)
    if not frame.any() or frame.all():
        return a, None
    filled = frame | _soft_edge(a, frame)
    out = a.copy()
    out[filled] = np.median(a[~frame])
    return out, ~filled


def _frame(a: np.ndarray) -> np.ndarray:
    """What is darker than a tenth of the field of view's level and touches the image border.
    The level is the image's 75th percentile, or, where that is itself near black (a small
    field of view: the frame is over three quarters of the image), the 75th percentile of
    the pixels brighter than a tenth of the maximum."""
    level, bright = float(np.percentile(a, 75)), a > 0.1 * float(a.max())
    if level <= 0.1 * float(a.max()) and bright.any():
        level = float(np.percentile(a[bright], 75))
    dark = a < 0.1 * level
    if not dark.any():
        return dark
    labels, _n = ndi.label(dark)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, edge[edge > 0])


def _soft_edge(a: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The field of view's outer pixels that are still darker than its inside: the rings
    (1 px wide, up to ``FRAME_EDGE_MAX_PX``) next to the frame whose lower quartile is
    below ``FRAME_EDGE_LEVEL`` x the median of the next ``FRAME_EDGE_MAX_PX`` px inwards
    (a quartile, not the median: a ring of pixels straddles two distances from the edge)."""
    depth = ndi.distance_transform_edt(~frame)
    inner = a[(depth > FRAME_EDGE_MAX_PX) & (depth <= 2 * FRAME_EDGE_MAX_PX)]
    if inner.size == 0:
        return np.zeros_like(frame)
    level = FRAME_EDGE_LEVEL * float(np.median(inner))
    width = 0
    for k in range(1, FRAME_EDGE_MAX_PX + 1):
        ring = a[(depth > k - 1) & (depth <= k)]
        if ring.size == 0 or float(np.percentile(ring, 25)) >= level:
            break
        width = k
    return (depth > 0) & (depth <= width)


def _noise_sigma(image: np.ndarray, smoothed: np.ndarray, sigma: float) -> float:
    """Pixel noise (MAD of image - smoothed), as the std it has after smoothing by ``sigma``."""
    r = image - smoothed
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) / (2 * np.sqrt(np.pi) * sigma) + 1e-6


def check_starts(image: np.ndarray, starts, radius: int = 7, min_snr: float = 2.0) -> None:
    """Refuse start points outside ``image`` or on blank background.

    A start is on blank background when nothing of the lightly smoothed image within
    ``radius`` px (about the agent's view) rises ``min_snr`` noise levels above the
    image median. The rule is deliberately lenient: on synthetic SI images it never
    refuses an axon end (even dim ones) and refuses flat or empty regions, but a click
    on noisy background right next to structure can pass.
    """
    h, w = image.shape
    starts = np.asarray(starts, np.float64).reshape(-1, 2)
    if not np.isfinite(starts).all():
        raise InputError("Start points must be finite (y, x) coordinates.")
    outside = [i for i, (y, x) in enumerate(starts) if not (0 <= y <= h - 1 and 0 <= x <= w - 1)]
    if outside:
        pts = ", ".join(f"#{i} at ({starts[i, 0]:.1f}, {starts[i, 1]:.1f})" for i in outside)
        raise InputError(f"Start point(s) {pts} lie outside the image (height {h}, width {w}); move them onto it.")
    image = image.astype(np.float32)
    smoothed = ndi.gaussian_filter(image, 1.0)
    local_max = ndi.maximum_filter(smoothed, size=2 * radius + 1)
    level = np.median(smoothed) + min_snr * _noise_sigma(image, smoothed, 1.0)
    iy, ix = np.round(starts).astype(int).T
    blank = [i for i in range(len(starts)) if local_max[iy[i], ix[i]] <= level]
    if blank:
        pts = ", ".join(f"#{i} at ({starts[i, 0]:.1f}, {starts[i, 1]:.1f})" for i in blank)
        raise InputError(
            f"Start point(s) {pts} lie on blank background: nothing brighter than the background within "
            f"{radius} px. Place each start on the structure to trace (invert the image if it is dark)."
        )
