"""A seeded 3-D brain phantom, shared by the joint lesion + tissue method and the phantoms of
the adversarial methods (tumours and sites are drawn into its anatomy).

It draws brains with the structure real scans have: a deformed ellipsoidal cerebrum with a folded cortical
ribbon, white matter, lateral ventricles, deep grey matter, cerebellum and brainstem,
inside a skull and scalp (so that a "no brain" check has something to tell apart),
with irregular white-matter lesions and T1/FLAIR contrasts in realistic proportions.

All anatomy is defined by implicit functions of *warped* coordinates: the smooth random
warp is applied to the coordinates, never to images, which keeps one subject well under
a second. Smooth random fields are coarse Gaussian noise expanded by three small
matrix products (a separable Gaussian interpolation) rather than by filtering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError

LABEL_SETS = ("full", "reduced")  # the class sets a phantom's labels come in

# full-set label values (the joint method's labels.FULL has the same order)
BG, CSF, GM, WM, DGM, CB, BS, LESION = range(8)
SKULL, SCALP = 8, 9  # internal only: intensity classes outside the brain, label 0

# mean intensities per class (index = class above); lesion FLAIR is drawn per lesion
T1_MEANS = np.array([0.0, 0.2, 0.65, 1.0, 0.75, 0.8, 0.9, 0.5, 0.08, 0.7], np.float32)
FLAIR_MEANS = np.array([0.0, 0.15, 0.65, 0.5, 0.6, 0.6, 0.55, 1.2, 0.05, 0.45], np.float32)
# reduced set: deep GM and cerebellum are grey matter, brainstem is white matter
_TO_REDUCED = np.array([0, 1, 2, 3, 2, 2, 3, 4], np.uint8)
DEFAULT_LESIONS = (3, 15)


@dataclass
class Phantom:
    t1: np.ndarray  # float32
    flair: np.ndarray  # float32
    tissue: np.ndarray  # uint8, the anatomy: label set without lesion
    lesion: np.ndarray  # uint8 0/1
    labels: np.ndarray  # uint8, tissue with lesion voxels set to the lesion class
    affine: np.ndarray  # 4x4, spacing on the diagonal
    spacing: tuple[float, float, float]
    label_set: str = "full"


def smooth_field(rng: np.random.Generator, shape, cells) -> np.ndarray:
    """Unit-variance smooth noise: ``cells`` random values per axis, Gaussian-interpolated."""
    coarse = rng.standard_normal(tuple(cells)).astype(np.float32)
    out = coarse
    for axis, (n, c) in enumerate(zip(shape, cells)):
        x = (np.arange(n, dtype=np.float32) + 0.5) / n * c - 0.5
        k = np.arange(c, dtype=np.float32)
        w = np.exp(-0.5 * ((x[:, None] - k[None, :]) / 0.8) ** 2)
        w /= np.sqrt((w**2).sum(1, keepdims=True))  # keeps the variance ~1 everywhere
        out = np.moveaxis(np.tensordot(w, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def _ellipsoid(p, centre, radii) -> np.ndarray:
    """Ellipsoidal radius of the (warped) points ``p``: < 1 inside."""
    return sum(((p[i] - centre[i]) / radii[i]) ** 2 for i in range(3)) ** 0.5


def _lesion_count(lesions, rng) -> int:
    if lesions is True:
        lesions = DEFAULT_LESIONS
    if lesions is False or lesions is None:
        return 0
    if isinstance(lesions, (int, np.integer)):
        return int(lesions)
    lo, hi = (int(v) for v in lesions)
    return int(rng.integers(lo, hi + 1))


# the anatomy's proportions: the fixed phantom's, and the ranges ``vary=True`` draws from
# (atrophy and age: wider extra-cerebral CSF, wider and deeper sulci, larger ventricles)
FIXED_PROPORTIONS = {"csf_edge": 1.05, "cortex": 0.19, "sulcus_width": 0.22, "sulcus_depth": 0.75, "ventricles": 1.0}
VARIED_PROPORTIONS = {"csf_edge": (1.02, 1.10), "cortex": (0.16, 0.22), "sulcus_width": (0.15, 0.35),
                      "sulcus_depth": (0.6, 1.0), "ventricles": (0.8, 1.5)}


def _proportions(rng, vary: bool) -> dict:
    if not vary:
        return dict(FIXED_PROPORTIONS)
    return {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in VARIED_PROPORTIONS.items()}


# the folded cortex (``_folded_cortex``), in mm, from anatomy textbooks (adult cortex 2-3.5 mm
# thick; sulci 1-2 cm deep with 1-3 mm of CSF between their banks; a gyrus about 1 cm
# across; 1-3 mm of CSF over the crowns), not from any scan we score on
FOLDED = {"thickness_mm": (2.2, 3.4), "sulcal_depth_mm": (10.0, 20.0), "gyral_period_mm": (10.0, 15.0),
          "sulcal_gap_mm": (0.8, 3.0), "rim_mm": (0.5, 2.0)}
FOLDED_CSF_EDGE = 1.02  # the skull's inner table 2 % of the brain's radius (~1.3 mm) beyond the hull


def _folded_cortex(rng, depth, shape, spacing, radius_mm: float):
    """(white matter, grey matter) masks of a gyrified cortex inside the pial hull ``depth > 0``
    (``depth`` in units of the brain's radius, ``radius_mm``).

    Sulci lie along the zero level of a smooth random field about a gyral period across.
    Near a sulcus, white matter is cut back down to the sulcal depth; elsewhere it comes up
    to the cortical thickness below the surface. The rest of the hull is grey matter,
    except for the sulcus itself, a narrow gap of CSF between its two banks, and a thin rim
    of CSF over the crowns.
    """
    from scipy.ndimage import distance_transform_edt

    d = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in FOLDED.items()}
    extent = np.asarray(shape, np.float32) * np.asarray(spacing, np.float32)
    cells = tuple(int(max(3, round(e / (0.5 * d["gyral_period_mm"])))) for e in extent)
    field = smooth_field(rng, shape, cells) > 0
    to_sulcus = np.where(field, distance_transform_edt(field, sampling=spacing),
                         distance_transform_edt(~field, sampling=spacing))  # mm to the field's zero level
    near = to_sulcus < d["thickness_mm"] + 0.5 * d["sulcal_gap_mm"]
    crown = (d["rim_mm"] + d["thickness_mm"]) / radius_mm
    white = depth > np.where(near, crown + d["sulcal_depth_mm"] / radius_mm, crown)
    grey = (depth > d["rim_mm"] / radius_mm) & ~white & (to_sulcus >= 0.5 * d["sulcal_gap_mm"])
    return white, grey


def _anatomy(shape, spacing, rng, vary: bool = False, detail=None, folded: bool = False, surface: bool = False):
    """Full-set tissue labels, skull/scalp classes, and fields the lesions need.
    ``vary``: draw the proportions (:data:`VARIED_PROPORTIONS`) instead of the fixed ones.
    ``folded``: a gyrified cortex of real thickness (:func:`_folded_cortex`) in place of the
    thick ribbon with notched sulci.
    ``surface``: the cerebrum of a real brain, FreeSurfer's fsaverage5 white and pial
    surfaces (:mod:`.surface`), at the subject's warped coordinates (randomly mirrored,
    with a random cortical thickness offset), in place of the ellipsoid and its cortex.
    ``detail``: a second generator for the proportions (cortical thickness, sulcal width
    and depth, extra-cerebral CSF, ventricles) while ``rng`` draws the brain's size, shape
    and folding pattern: subjects that share ``rng``'s seed share them, as brains registered
    to a template roughly do; None: ``rng`` draws all."""
    detail = rng if detail is None else detail
    k = _proportions(detail, vary)
    extent = np.asarray(shape, np.float32) * np.asarray(spacing, np.float32)
    brain_radii = extent * np.array([0.40, 0.42, 0.36], np.float32) * rng.uniform(0.95, 1.05, 3)
    axes = [((np.arange(n, dtype=np.float32) + 0.5) * s - e / 2) / b
            for n, s, e, b in zip(shape, spacing, extent, brain_radii)]
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)
    # low-frequency warp of the coordinates: every subject has its own brain shape
    p = [g + 0.06 * smooth_field(rng, shape, (4, 5, 4)) for g in grid]
    x, y, z = p

    # cerebrum: depth below the (folded) pial surface, in brain-radius units
    rho = _ellipsoid(p, (0.0, 0.05, 0.2), (1.0, 1.0, 0.95))
    folds = smooth_field(rng, shape, (9, 11, 9))
    depth = 1.0 - rho + 0.05 * folds
    # interhemispheric fissure: down to an arch over the callosum, through at the poles
    arch = 0.4 - 4.0 * np.maximum(np.abs(y - 0.05) - 0.35, 0.0) ** 2
    fissure = (np.abs(x) - 0.03) * 1.4 + 2.0 * np.maximum(arch - z, 0.0)
    depth = np.minimum(depth, fissure)
    thickness = k["cortex"] + 0.03 * smooth_field(rng, shape, (5, 6, 5))
    sulci = np.abs(smooth_field(rng, shape, (14, 17, 14))) < k["sulcus_width"]
    labels = np.zeros(shape, np.uint8)
    if surface:
        return _surface_anatomy(rng, p, fissure, folds, shape, spacing, k)
    cranial = np.minimum(rho, _ellipsoid(p, (0.0, -0.55, -0.5), (0.72, 0.45, 0.42)))
    edge = FOLDED_CSF_EDGE if folded else k["csf_edge"]
    labels[cranial < edge] = CSF
    labels[(cranial >= edge) & (cranial < edge + 0.08)] = SKULL
    labels[(cranial >= edge + 0.08) & (cranial < edge + 0.18)] = SCALP
    if folded:
        white, grey = _folded_cortex(rng, depth, shape, spacing, float(np.mean(brain_radii)))
        labels[(depth > 0) & ~white & ~grey] = CSF
        labels[grey] = GM
        labels[white] = WM
    else:
        labels[(depth > 0) & ~(sulci & (depth < k["sulcus_depth"] * thickness))] = GM
        labels[depth >= thickness] = WM

    return _deep_structures(labels, p, folds, rho > 0.86, k)


def _cerebellum(p) -> np.ndarray:
    """Ellipsoidal radius of the two cerebellar lobes (< 1 inside)."""
    return np.minimum(_ellipsoid(p, (-0.3, -0.55, -0.55), (0.34, 0.36, 0.3)),
                      _ellipsoid(p, (0.3, -0.55, -0.55), (0.34, 0.36, 0.3)))


def _deep_structures(labels, p, folds, below_cerebrum, k):
    """Cerebellum (where ``below_cerebrum``), brainstem, deep grey matter and ventricles drawn
    over ``labels``; returns ``(labels, distance to the ventricles)``."""
    x, y, z = p
    # cerebellum: two posterior-inferior lobes with CSF folia, below the tentorium
    cb = _cerebellum(p)
    labels[(cb < 1.0) & below_cerebrum] = CB
    labels[(cb < 0.95) & (np.sin(40.0 * cb + 3.0 * folds) > 0.85) & below_cerebrum] = CSF
    # brainstem: an inferior cylinder, slightly tilted, up to the thalami
    stem = (((x / 0.15) ** 2 + ((y + 0.25 + 0.25 * z) / 0.17) ** 2) < 1) & (z < -0.05)
    labels[stem] = BS
    # deep grey matter beside the ventricles: thalamus, lentiform and caudate nuclei
    for side in (-1.0, 1.0):
        for centre, radii in (((0.12, -0.12, 0.02), (0.13, 0.19, 0.13)),
                              ((0.29, 0.1, 0.05), (0.09, 0.2, 0.14)),
                              ((0.17, 0.3, 0.16), (0.08, 0.13, 0.1))):
            labels[_ellipsoid(p, (side * centre[0], *centre[1:]), radii) < 1] = DGM
    # lateral ventricles: two curved (banana-shaped) ellipsoids
    vent = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), np.inf, np.float32)
    for side in (-1.0, 1.0):
        bend = (x - side * 0.1) / 0.07, y / 0.5, (z - 0.22 + 0.45 * y**2) / 0.09
        vent = np.minimum(vent, sum(b**2 for b in bend) ** 0.5)
    labels[vent < k["ventricles"]] = CSF
    return labels, vent / k["ventricles"]


# the surface cerebrum (``surface=True``): a cortical thickness offset (mm, added to the pial
# surface's and taken from the white surface's), CSF over the brain's hull (mm; 1-4 mm
# under the inner table in adults), skull and scalp thickness (mm); anatomy ranges, not fitted
SURFACE = {"thickness_offset_mm": (-0.6, 0.4), "rim_mm": (1.0, 4.0), "skull_mm": (4.0, 8.0), "scalp_mm": (4.0, 9.0)}
_CEREBRUM_CENTRE, _CEREBRUM_RADII = np.array([0.0, 0.05, 0.2]), np.array([1.0, 1.0, 0.95])


def _surface_anatomy(rng, p, fissure, folds, shape, spacing, k):
    """The phantom with fsaverage5's cerebrum (see ``_anatomy``'s ``surface``)."""
    from scipy.ndimage import distance_transform_edt

    from . import surface as fs

    white, pial, origin, step = fs.cortex_distances()
    centre, half = fs.cerebrum_box()
    d = {key: float(rng.uniform(lo, hi)) for key, (lo, hi) in SURFACE.items()}
    mirror = -1.0 if rng.random() < 0.5 else 1.0  # the other hemisphere's folding on each side
    mm = [c + (q - c0) / r0 * h * (mirror if i == 0 else 1.0)
          for i, (q, c, h, c0, r0) in enumerate(zip(p, centre, half, _CEREBRUM_CENTRE, _CEREBRUM_RADII))]
    to_white = fs.sample(white, mm, origin, step) + 0.5 * d["thickness_offset_mm"]
    to_pial = fs.sample(pial, mm, origin, step) - 0.5 * d["thickness_offset_mm"]
    to_hull = fs.sample(fs.pial_hull_distance(), mm, origin, step)
    labels = np.zeros(shape, np.uint8)
    fossa = _ellipsoid(p, (0.0, -0.55, -0.5), (0.72, 0.45, 0.42)) < 1.0  # cerebellum and brainstem
    cavity = (to_hull < d["rim_mm"]) | fossa
    outside = distance_transform_edt(~cavity, sampling=spacing)
    labels[cavity] = CSF
    labels[(outside > 0) & (outside <= d["skull_mm"])] = SKULL
    labels[(outside > d["skull_mm"]) & (outside <= d["skull_mm"] + d["scalp_mm"])] = SCALP
    labels[to_pial <= 0] = GM
    labels[(fissure < 0) & (to_white > 0)] = CSF  # the falx between the hemispheres
    labels[to_white <= 0] = WM
    return _deep_structures(labels, p, folds, to_pial > 0, k)


def lesion_blob(rng, radius: float) -> np.ndarray:
    """An irregular lesion: the union of 1-4 rotated ellipsoids around the centre."""
    half = int(np.ceil(radius * 1.6)) + 1
    g = np.mgrid[-half:half + 1, -half:half + 1, -half:half + 1].reshape(3, -1).astype(np.float32)
    blob = np.zeros(g.shape[1], bool)
    for k in range(int(rng.integers(1, 5))):
        rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        radii = radius * rng.uniform(0.4, 1.0 if k else 1.1, 3)
        shift = rng.uniform(-0.8, 0.8, 3)[:, None] * radius * (k > 0)
        q = rot.T @ (g - shift)
        blob |= ((q / np.maximum(radii, 0.6)[:, None]) ** 2).sum(0) <= 1.0
    return blob.reshape((2 * half + 1,) * 3)


def _lesions(rng, tissue, vent, count: int):
    """Lesion mask (inside white matter only) and a per-voxel FLAIR brightness."""
    lesion = np.zeros(tissue.shape, bool)
    flair = np.zeros(tissue.shape, np.float32)
    wm = np.flatnonzero(tissue == WM)
    if count == 0 or wm.size == 0:
        return lesion, flair
    # mostly periventricular / deep: weight WM voxels by closeness to the ventricles
    weight = np.exp(-(vent.reshape(-1)[wm] - 1.0) / 0.6).astype(np.float64) + 0.05
    centres = rng.choice(wm, size=count, replace=False, p=weight / weight.sum())
    for c in np.array(np.unravel_index(centres, tissue.shape)).T:
        blob = lesion_blob(rng, float(rng.uniform(1.0, 6.0)))
        h = blob.shape[0] // 2
        lo, hi = c - h, c + h + 1
        clo, chi = np.maximum(lo, 0), np.minimum(hi, tissue.shape)
        sub = tuple(slice(a, b) for a, b in zip(clo, chi))
        bsub = tuple(slice(a - l, b - l) for a, b, l in zip(clo, chi, lo))
        hit = blob[bsub] & (tissue[sub] == WM)
        lesion[sub] |= hit
        flair[sub][hit] = rng.uniform(1.1, 1.3)
    return lesion, flair


def _contrast(rng, classes, means, lesion=None, lesion_value=None, noise=0.03) -> np.ndarray:
    """Class means with texture, partial volume, a bias field and Rician noise.

    ``lesion_value`` (FLAIR) gives each lesion its own brightness; the bias field is
    drawn per call, so every modality gets a different one, as on a scanner.
    """
    img = means[classes] * (1.0 + 0.03 * smooth_field(rng, classes.shape, (12, 14, 12)))
    if lesion is not None and lesion.any():
        img = np.where(lesion, lesion_value, img)
    img = ndimage.gaussian_filter(img, 0.7)  # partial volume
    img *= np.exp(0.12 * smooth_field(rng, classes.shape, (3, 3, 3)))
    return rician(rng, img, noise)


def rician(rng, img: np.ndarray, noise: float) -> np.ndarray:
    """Magnitude of ``img`` with complex Gaussian noise of SD ``noise`` (MRI's Rician noise)."""
    real = img + noise * rng.standard_normal(img.shape, dtype=np.float32)
    imag = noise * rng.standard_normal(img.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def draw_anatomy(rng, shape, spacing, lesions, vary: bool = False, detail=None, folded: bool = False,
                 surface: bool = False):
    """``(classes, tissue, lesion, lesion_flair)`` of one subject: phantom classes with skull
    and scalp, the brain's tissue labels, the lesion mask and each lesion's FLAIR brightness.
    ``vary``: the anatomy's proportions are drawn too (see :data:`VARIED_PROPORTIONS`);
    ``detail``, ``folded``, ``surface``: see :func:`_anatomy`."""
    classes, vent = _anatomy(tuple(int(s) for s in shape), spacing, rng, vary, detail, folded, surface)
    tissue = np.where(classes >= SKULL, 0, classes).astype(np.uint8)
    lesion, lesion_flair = _lesions(rng, tissue, vent, _lesion_count(lesions, rng))
    return classes, tissue, lesion, lesion_flair


def brain_phantom(shape=(96, 112, 96), seed: int = 0, label_set: str = "full",
                  lesions=True, spacing=(1.5, 1.5, 1.5)) -> Phantom:
    """One subject. ``lesions``: True (3-15), False, a count, or a (low, high) range."""
    if label_set not in LABEL_SETS:
        raise InputError(f"Unknown label set {label_set!r}; use one of {list(LABEL_SETS)}.")
    if len(shape) != 3 or min(shape) < 16:
        raise InputError(f"The phantom needs a 3-D shape of at least 16 voxels a side, got {shape}.")
    rng = np.random.default_rng(seed)
    spacing = tuple(float(s) for s in spacing)
    classes, tissue, lesion, lesion_flair = draw_anatomy(rng, shape, spacing, lesions)
    jitter = rng.uniform(0.95, 1.05, T1_MEANS.size).astype(np.float32)  # scanner/contrast
    jitter[0] = 0.0
    with_lesion = np.where(lesion, LESION, classes)
    t1 = _contrast(rng, with_lesion, T1_MEANS * jitter)
    flair_means = FLAIR_MEANS * rng.uniform(0.95, 1.05, FLAIR_MEANS.size).astype(np.float32)
    flair = _contrast(rng, classes, flair_means, lesion, lesion_flair * flair_means[WM] / FLAIR_MEANS[WM])
    joint = np.where(lesion, LESION, tissue).astype(np.uint8)
    if label_set == "reduced":
        tissue, joint = _TO_REDUCED[tissue], _TO_REDUCED[joint]
    return Phantom(t1, flair, tissue, lesion.astype(np.uint8), joint, centred_affine(shape, spacing), spacing,
                   label_set)


def centred_affine(shape, spacing) -> np.ndarray:
    """A 4x4 affine with ``spacing`` on the diagonal and the volume centred on the origin."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.asarray(spacing) * (np.asarray(shape) - 1) / 2
    return affine
