"""The same brain anatomy seen by different sites, and how far apart their intensities are.

Delisle et al. (2019) normalise T1 images of two very different datasets together: iSEG
(6-8 month-old infants, scanned in the isointense phase, where white and grey matter
have nearly the same intensity) and MRBrainS (adults, 0.958 x 0.958 x 3.0 mm voxels
resampled to 1 mm). Both are labelled with CSF, grey matter (GM) and white matter (WM).
This module draws that situation: the anatomy of
:func:`~napari_medseg.methods.joint_lesion_tissue.phantom.brain_phantom` (skull-stripped,
labels 0 background, 1 CSF, 2 GM, 3 WM) rendered through a *site profile*: class means,
intensity units, blur, slice thickness, bias field and noise.

:func:`histogram_jsd` is the paper's normalisation metric, the Jensen-Shannon divergence
between intensity histograms; :func:`check_domains` checks a user's domains before training.
:func:`render` (class means -> an MR-like image) is shared with the cardiac and tumour phantoms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon

from ...core.errors import InputError
from ...core.phantoms.brain import brain_phantom
from ...core.phantoms.render import render

BG, CSF, GM, WM = range(4)
TISSUE_NAMES = ("background", "CSF", "grey matter", "white matter")




@dataclass(frozen=True)
class SiteProfile:
    """How one site renders the anatomy.

    ``means``: T1 intensity of background, CSF, GM, WM in the site's units (times ``scale``);
    ``blur``: in-plane and through-plane Gaussian sigma (voxels); ``slice_thickness``: how many
    voxels one acquired axial slice averages before resampling back to the grid (MRBrainS: 3).
    """

    name: str
    means: tuple[float, float, float, float]
    scale: float = 1.0
    blur: float = 0.6
    slice_thickness: int = 1
    bias: float = 0.12
    noise: float = 0.03


# iSEG-like: isointense phase, WM a little darker than GM (low, inverted contrast), more blur
INFANT = SiteProfile("infant", (0.0, 0.32, 0.62, 0.56), scale=0.7, blur=1.1, slice_thickness=1,
                     bias=0.08, noise=0.035)
# MRBrainS-like: adult T1 contrast (CSF < GM < WM), thick slices resampled to 1 mm
ADULT = SiteProfile("adult", (0.0, 0.22, 0.6, 1.0), scale=1.0, blur=0.5, slice_thickness=3,
                    bias=0.15, noise=0.03)
PROFILES = {"infant": INFANT, "adult": ADULT}


def random_profile(rng: np.random.Generator, name: str) -> SiteProfile:
    """A further site: GM-WM contrast anywhere between the infant and adult ones, own units."""
    w = float(rng.uniform(0.0, 1.0))
    means = tuple(float(v) for v in (1 - w) * np.array(INFANT.means) + w * np.array(ADULT.means))
    return SiteProfile(name, means, scale=float(rng.uniform(0.5, 1.5)), blur=float(rng.uniform(0.4, 1.2)),
                       slice_thickness=int(rng.integers(1, 4)), bias=float(rng.uniform(0.05, 0.2)),
                       noise=float(rng.uniform(0.02, 0.05)))


def _thick_slices(img: np.ndarray, t: int, axis: int = 2) -> np.ndarray:
    """Average blocks of ``t`` slices along ``axis``, then resample linearly back to the grid."""
    if t <= 1:
        return img
    a = np.moveaxis(img, axis, 0)
    n = a.shape[0]
    nb = -(-n // t)
    pad = np.concatenate([a, np.repeat(a[-1:], nb * t - n, 0)]) if nb * t > n else a
    blocks = pad.reshape(nb, t, *a.shape[1:]).mean(1)
    pos = np.clip((np.arange(n) + 0.5) / t - 0.5, 0, nb - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, nb - 1)
    w = (pos - lo).astype(np.float32).reshape(-1, *([1] * (a.ndim - 1)))
    return np.moveaxis((1 - w) * blocks[lo] + w * blocks[hi], 0, axis).astype(np.float32)


def render_site(tissue: np.ndarray, profile: SiteProfile, rng: np.random.Generator) -> np.ndarray:
    """One skull-stripped T1 volume of ``tissue`` (0-3) as ``profile``'s site sees it."""
    means = np.asarray(profile.means, np.float32) * rng.uniform(0.95, 1.05, 4).astype(np.float32)
    img = render(rng, tissue, means, blur=profile.blur, bias=profile.bias, noise=profile.noise)
    img = _thick_slices(img, profile.slice_thickness)
    img[tissue == BG] = 0.0  # skull-stripped, as both datasets are in the paper
    return (img * profile.scale).astype(np.float32)


def _profiles(sites, rng) -> list[SiteProfile]:
    if isinstance(sites, (int, np.integer)):
        if sites < 2:
            raise InputError(f"Normalisation needs two or more sites, got {sites}.")
        sites = ["infant", "adult"] + [f"site{k}" for k in range(2, int(sites))]
    out = []
    for s in sites:
        if isinstance(s, SiteProfile):
            out.append(s)
        elif s in PROFILES:
            out.append(PROFILES[s])
        else:
            out.append(random_profile(rng, str(s)))
    if len({p.name for p in out}) != len(out):
        raise InputError(f"Site names must differ, got {[p.name for p in out]}.")
    return out


def multi_site(n_per_site: int = 3, sites=("infant", "adult"), seed: int = 0, shape=(64, 72, 64),
               spacing=(2.25, 2.25, 2.25), as_slices: bool = False, same_subjects: bool = False,
               min_brain: float = 0.15) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per-site lists of (image float32, labels uint8 0-3) pairs: 3-D volumes or 2-D axial slices.

    ``sites``: a count K (infant, adult, then random profiles), or names / :class:`SiteProfile`
    objects; unknown names get a random profile. ``same_subjects``: every site renders the same
    subjects (paired data); otherwise each site has its own. ``as_slices``: axial slices with at
    least ``min_brain`` of their pixels in the brain instead of volumes.
    """
    if n_per_site < 1:
        raise InputError(f"Each site needs at least one subject, got {n_per_site}.")
    rng = np.random.default_rng(seed)
    profiles = _profiles(sites, rng)
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for k, profile in enumerate(profiles):
        pairs = []
        for i in range(int(n_per_site)):
            s = int(seed) * 1_000_000 + (0 if same_subjects else k * 10_000) + i
            tissue = brain_phantom(shape, s, "reduced", lesions=False, spacing=spacing).tissue
            img = render_site(tissue, profile, np.random.default_rng([s, k]))
            if not as_slices:
                pairs.append((img, tissue))
                continue
            keep = (tissue > 0).mean(axis=(0, 1)) >= min_brain
            pairs += [(img[:, :, z].copy(), tissue[:, :, z].copy()) for z in np.flatnonzero(keep)]
        out[profile.name] = pairs
    return out


def _values(x, mask) -> np.ndarray:
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    ms = (list(mask) if isinstance(mask, (list, tuple)) else [mask]) if mask is not None else [None] * len(xs)
    if len(ms) != len(xs):
        raise InputError(f"Got {len(xs)} images but {len(ms)} masks.")
    vals = []
    for img, m in zip(xs, ms):
        img = np.asarray(img, np.float64)
        if m is not None:
            m = np.asarray(m, bool)
            if m.shape != img.shape:
                raise InputError(f"The mask has shape {m.shape} but the image {img.shape}; they must match.")
            img = img[m]
        vals.append(img.ravel())
    v = np.concatenate(vals) if vals else np.zeros(0)
    if v.size == 0:
        raise InputError("No voxels to build a histogram from (empty image or empty mask).")
    if not np.isfinite(v).all():
        raise InputError("The image has NaN or infinite values; a histogram needs finite ones.")
    return v


def histogram_jsd(a, b, bins: int = 64, mask=None, value_range=None) -> float:
    """Jensen-Shannon divergence (base 2, so between 0 and 1) between the intensity histograms of a and b.

    ``a``, ``b``: an image or a list of images (pooled, e.g. one site). ``mask``: None, a
    boolean array for both, or a tuple ``(mask_a, mask_b)`` (each an array, or a list matching
    a list of images), e.g. ``labels > 0`` for brain voxels only. Both histograms share ``bins``
    bins over ``value_range`` (default: from the lowest to the highest value of a and b).
    SciPy's ``jensenshannon`` returns the JS *distance*, the square root of the divergence;
    this returns its square, the divergence: 0 for identical histograms, 1 for disjoint ones.
    """
    if bins < 2:
        raise InputError(f"A histogram needs at least 2 bins, got {bins}.")
    ma, mb = mask if isinstance(mask, tuple) and len(mask) == 2 else (mask, mask)
    va, vb = _values(a, ma), _values(b, mb)
    if value_range is None:
        value_range = (min(va.min(), vb.min()), max(va.max(), vb.max()))
    lo, hi = (float(v) for v in value_range)
    if hi <= lo:
        return 0.0  # both images hold one and the same value
    pa, _ = np.histogram(va, bins=bins, range=(lo, hi))
    pb, _ = np.histogram(vb, bins=bins, range=(lo, hi))
    if pa.sum() == 0 or pb.sum() == 0:
        raise InputError(f"No values inside the histogram range {value_range}.")
    return float(jensenshannon(pa, pb, base=2) ** 2)


def _pair(item):
    if isinstance(item, (tuple, list)):
        if len(item) != 2:
            raise InputError("A domain item must be an image or an (image, labels) pair.")
        return np.asarray(item[0]), None if item[1] is None else np.asarray(item[1])
    return np.asarray(item), None


def check_domains(domains: Mapping[str, Sequence]) -> int:
    """Check domains before normalisation; return the images' dimensionality (2 or 3).

    ``domains`` maps a name to a list of images or (image, labels) pairs. One clear
    :class:`InputError` for: fewer than two domains, a domain with fewer than two images,
    an empty or non-finite image, labels on a different grid from their image, and a mix
    of 2-D and 3-D images.
    """
    if not isinstance(domains, Mapping) or len(domains) < 2:
        n = len(domains) if isinstance(domains, Mapping) else 0
        raise InputError(f"Normalisation needs two or more domains, got {n}.")
    dims = set()
    for name, items in domains.items():
        items = list(items) if items is not None else []
        if len(items) < 2:
            raise InputError(f"Domain {name!r} has {len(items)} image(s); each domain needs at least 2 "
                             "(one to train on and one to check the normalisation).")
        for k, item in enumerate(items):
            img, lab = _pair(item)
            if img.size == 0 or img.ndim not in (2, 3):
                raise InputError(f"Domain {name!r}, image {k}: expected a non-empty 2-D or 3-D image, "
                                 f"got shape {img.shape}.")
            if not np.isfinite(img).all():
                raise InputError(f"Domain {name!r}, image {k} has NaN or infinite values.")
            if lab is not None and lab.shape != img.shape:
                raise InputError(f"Domain {name!r}, image {k}: the labels have shape {lab.shape} but the "
                                 f"image {img.shape}; labels must be on the image's grid.")
            dims.add(img.ndim)
    if len(dims) > 1:
        raise InputError("The domains mix 2-D and 3-D images; use one kind throughout.")
    return dims.pop()

