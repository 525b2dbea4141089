"""A seeded multi-sequence cardiac MR phantom in the MS-CMR challenge layout, and Chen's slice mapping.

Chen et al. (2019) segment the left ventricle (LV), the myocardium (myo) and the right
ventricle (RV) on LGE short-axis stacks, where few annotations exist, using the labels of
the bSSFP and T2 stacks of the same patient as *pseudo-masks* (weak domain transfer).
MS-CMR 2019 has 45 patients with all three sequences: patients 1-5 are labelled on all
three, 6-35 on bSSFP and T2 only, 36-45 not at all. The challenge describes the stacks as
bSSFP 8-12 slices, T2 3-7 slices, LGE 10-18 slices (our defaults).

The phantom draws one heart per patient as a function of the long-axis position t
(0 = base, 1 = apex): an LV blood pool inside a myocardial ring, and an RV crescent on the
septal side, all shrinking towards the apex, inside a thorax with lungs and fat. Each
sequence samples that heart at its own number of slices, with its own small shift and
coverage (so pseudo-masks are close, not exact) and its own contrast, bias field and noise:

* bSSFP: bright blood, dark myocardium, bright fat;
* T2: black-blood, fat-suppressed (the MS-CMR T2 is a black-blood SPAIR sequence), low SNR;
* LGE: nulled (dark) healthy myocardium, bright scar within the myocardium, bright blood.

Labels follow the paper's order (LV, myo, RV): 0 background, 1 LV blood pool,
2 LV myocardium (scar included), 3 RV. MS-CMR files code them 500, 200, 600:
:func:`from_mscmr` converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core.errors import InputError
from ...core.phantoms.brain import smooth_field
from ...core.phantoms.render import render

BG, LV, MYO, RV = range(4)
LABEL_NAMES = ("background", "LV blood pool", "LV myocardium", "RV")
MSCMR_VALUES = {500: LV, 200: MYO, 600: RV}
SEQUENCES = ("bSSFP", "T2", "LGE")
DEFAULT_SLICES = {"bSSFP": (8, 12), "T2": (3, 7), "LGE": (10, 18)}
# rendering classes: the three labels, then scar, soft tissue, lung, fat
SCAR, SOFT, LUNG, FAT = 4, 5, 6, 7
#                        air   LV   myo   RV   scar  soft  lung  fat
MEANS = {"bSSFP": (0.0, 1.0, 0.25, 0.95, 0.27, 0.35, 0.05, 0.8),
         "T2": (0.0, 0.08, 0.5, 0.08, 0.62, 0.4, 0.04, 0.15),
         "LGE": (0.0, 0.7, 0.1, 0.65, 1.0, 0.3, 0.04, 0.6)}
NOISE = {"bSSFP": 0.03, "T2": 0.05, "LGE": 0.05}


@dataclass
class CardiacPatient:
    """One patient: per-sequence short-axis stacks (slices, H, W), base slice first."""

    images: dict[str, np.ndarray]  # float32
    labels: dict[str, np.ndarray]  # uint8, 0-3
    scar: np.ndarray  # uint8 0/1 on the LGE grid
    positions: dict[str, np.ndarray]  # long-axis position t of each slice (0 base, 1 apex)
    seed: int = 0


@dataclass
class CohortCase:
    """One MS-CMR-like patient. ``labels`` holds only the annotated sequences (``labelled``);
    ``truth`` holds every sequence's labels and is for scoring on phantoms only."""

    id: str
    seed: int
    role: str  # "fully labelled", "partly labelled" or "unlabelled"
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    scar: np.ndarray
    positions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def labelled(self) -> tuple[str, ...]:
        return tuple(self.labels)


def from_mscmr(labels: np.ndarray) -> np.ndarray:
    """MS-CMR label values (500 LV, 200 myo, 600 RV) to 1, 2, 3; anything else to 0."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint8)
    for value, cls in MSCMR_VALUES.items():
        out[labels == value] = cls
    return out


def _heart(rng, size):
    """The patient's anatomy as parameters, shared by all sequences."""
    s = float(min(size))
    return dict(
        centre=np.array(size, float) * [0.5, 0.53] + rng.uniform(-0.04, 0.04, 2) * s,
        endo=rng.uniform(0.11, 0.14) * s, wall=rng.uniform(0.075, 0.095) * s,
        ratio=rng.uniform(0.9, 1.1), tilt=rng.uniform(0, np.pi),
        harm=rng.normal(0, 0.04, (2, 2)), rv_dir=np.pi + rng.uniform(-0.35, 0.35),
        rv_len=rng.uniform(0.8, 1.0), rv_width=rng.uniform(1.4, 1.7),
        body=rng.uniform(0.42, 0.47, 2) * np.array(size, float),
    )


def _scars(rng, scars) -> list[dict]:
    lo, hi = (scars, scars) if isinstance(scars, (int, np.integer)) else scars
    out = []
    for _ in range(int(rng.integers(int(lo), int(hi) + 1))):
        t0 = rng.uniform(0.05, 0.45)
        out.append(dict(angle=rng.uniform(0, 2 * np.pi), half_width=rng.uniform(0.5, 1.2),
                        t=(t0, t0 + rng.uniform(0.35, 0.6)), depth=rng.uniform(0.5, 1.0)))
    return out


def _slice(h, t, shift, size, scars, field2d):
    """Class map of one short-axis slice at long-axis position t (and its scar mask)."""
    yy, xx = np.mgrid[:size[0], :size[1]].astype(np.float32)
    cy, cx = h["centre"] + shift
    dy, dx = yy - cy, xx - cx
    ang = np.arctan2(dy, dx)
    c, s = np.cos(h["tilt"]), np.sin(h["tilt"])
    u, v = c * dx + s * dy, (-s * dx + c * dy) * h["ratio"]
    wobble = 1 + sum(h["harm"][k, 0] * np.cos((k + 2) * ang + h["harm"][k, 1] * 6) for k in range(2))
    r = np.hypot(u, v) / wobble
    endo = h["endo"] * max(1.0 - 0.85 * t ** 1.6, 0.0)
    epi = endo + h["wall"] * (1.0 - 0.3 * t)
    classes = np.zeros(size, np.uint8)
    by, bx = yy - size[0] / 2 - shift[0], xx - size[1] / 2 - shift[1]
    body = (by / h["body"][0]) ** 2 + (bx / h["body"][1]) ** 2
    classes[body < 1.0] = SOFT
    classes[(body >= 0.86) & (body < 1.0)] = FAT
    for side in (-1.0, 1.0):  # two lungs beside the heart, kept off it by a margin
        lung = (by / (0.3 * size[0])) ** 2 + ((bx - side * 0.24 * size[1]) / (0.12 * size[1])) ** 2 < 1.0
        classes[lung & (np.hypot(dy, dx) > 1.25 * (h["endo"] + h["wall"]))] = LUNG
    rv = np.zeros(size, bool)
    rv_scale = max(1.0 - t / 0.85, 0.0) ** 0.7
    if rv_scale > 0:
        d = h["rv_dir"]
        ry, rx = cy + np.sin(d) * epi * 0.95, cx + np.cos(d) * epi * 0.95
        a, b = epi * h["rv_len"] * rv_scale, epi * h["rv_width"] * max(rv_scale, 0.5)
        pu = (xx - rx) * np.cos(d) + (yy - ry) * np.sin(d)
        pv = -(xx - rx) * np.sin(d) + (yy - ry) * np.cos(d)
        rv = ((pu / max(a, 1e-3)) ** 2 + (pv / b) ** 2 < 1.0) & (r > epi + 1.0)
        classes[(r < epi + 2.5) & ~rv & (r >= epi)] = FAT  # epicardial fat around the heart
    classes[rv] = RV
    myo = r < epi
    classes[myo] = MYO
    classes[r < endo] = LV
    scar = np.zeros(size, bool)
    depth = np.clip((r - endo) / max(epi - endo, 1e-3), 0, 1)
    for sc in scars:
        if sc["t"][0] <= t <= sc["t"][1]:
            da = np.abs((ang - sc["angle"] + np.pi) % (2 * np.pi) - np.pi)
            scar |= (da < sc["half_width"] * (1 + 0.3 * field2d)) & (depth < sc["depth"] + 0.2 * field2d)
    scar &= classes == MYO
    return classes, scar


def _count(spec, rng) -> int:
    n = int(rng.integers(spec[0], spec[1] + 1)) if isinstance(spec, (tuple, list)) else int(spec)
    if n < 1:
        raise InputError(f"A stack needs at least one slice, got {n}.")
    return n


def cardiac_patient(seed: int = 0, size=(96, 96), slices=None, scars=(1, 3), shift_px: float = 2.0,
                    coverage_jitter: float = 0.05) -> CardiacPatient:
    """One patient seen by bSSFP, T2 and LGE.

    ``slices``: per-sequence slice count or (low, high) range, default :data:`DEFAULT_SLICES`;
    ``scars``: number (or range) of scar regions in the LGE myocardium; ``shift_px``: in-plane
    shift between sequences (and half of it between slices: breath-holds); ``coverage_jitter``:
    how much each stack's base and apex positions vary along the long axis.
    """
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 32:
        raise InputError(f"The in-plane size must be two values of at least 32 pixels, got {size}.")
    spec = dict(DEFAULT_SLICES, **(slices or {}))
    unknown = set(spec) - set(SEQUENCES)
    if unknown:
        raise InputError(f"Unknown sequence(s) {sorted(unknown)}; use {SEQUENCES}.")
    rng = np.random.default_rng(seed)
    heart = _heart(rng, size)
    scar_regions = _scars(rng, scars)
    field2d = smooth_field(rng, size, (4, 4))
    images, labels, positions, scar_mask = {}, {}, {}, None
    for name in SEQUENCES:
        n = _count(spec[name], rng)
        lo, hi = rng.uniform(-1, 1, 2) * coverage_jitter + (0.02, 0.98)
        t = lo + (np.arange(n) + 0.5) / n * (hi - lo)
        shift = rng.uniform(-shift_px, shift_px, 2)
        out = [_slice(heart, ti, shift + rng.normal(0, shift_px / 2, 2), size, scar_regions, field2d) for ti in t]
        classes = np.stack([o[0] for o in out])
        scar = np.stack([o[1] for o in out])
        lab = classes.copy()
        if name == "LGE":
            classes[scar] = SCAR
            scar_mask = scar.astype(np.uint8)
        means = np.asarray(MEANS[name], np.float32) * rng.uniform(0.8, 1.25)
        images[name] = render(rng, classes, means, blur=(0.0, 0.7, 0.7), bias=0.2, noise=NOISE[name],
                              texture=0.05, bias_cells=(2, 3, 3))
        labels[name] = np.where(lab > RV, BG, lab).astype(np.uint8)
        positions[name] = np.clip(t, 0.0, 1.0)
    return CardiacPatient(images, labels, scar_mask, positions, int(seed))


def cardiac_cohort(n_patients: int = 45, seed: int = 0, labelled_sequences=("bSSFP", "T2"),
                   n_fully_labelled: int | None = None, n_unlabelled: int | None = None,
                   **patient_kwargs) -> list[CohortCase]:
    """MS-CMR-like cohort: fully labelled patients first, then partly labelled, then unlabelled.

    Defaults keep MS-CMR's proportions (5, 30, 10 of 45): ``n_fully_labelled`` patients have
    labels on all three sequences (the LGE validation/test patients), the next ones on
    ``labelled_sequences`` only, the last ``n_unlabelled`` on none.
    """
    n = int(n_patients)
    if n < 1:
        raise InputError(f"A cohort needs at least one patient, got {n}.")
    bad = set(labelled_sequences) - set(SEQUENCES)
    if bad:
        raise InputError(f"Unknown sequence(s) {sorted(bad)}; use {SEQUENCES}.")
    full = max(1, round(n * 5 / 45)) if n_fully_labelled is None else int(n_fully_labelled)
    none = round(n * 10 / 45) if n_unlabelled is None else int(n_unlabelled)
    if full < 0 or none < 0 or full + none > n:
        raise InputError(f"{full} fully labelled + {none} unlabelled patients do not fit in {n}.")
    cases = []
    for i in range(n):
        s = int(seed) * 100_000 + i
        p = cardiac_patient(s, **patient_kwargs)
        role = "fully labelled" if i < full else "unlabelled" if i >= n - none else "partly labelled"
        keep = SEQUENCES if role == "fully labelled" else () if role == "unlabelled" else labelled_sequences
        cases.append(CohortCase(f"patient{i + 1:02d}", s, role, p.images,
                                {k: p.labels[k] for k in SEQUENCES if k in keep}, p.labels, p.scar, p.positions))
    return cases


def map_slices(n_source: int, n_target: int) -> np.ndarray:
    """Chen's normalised slice index: target slice i of m takes source slice floor(i * n / m).

    ``n_source`` (n): slices of the annotated stack (bSSFP or T2); ``n_target`` (m): slices
    of the target stack (LGE). Returns m source indices. E.g. n=10, m=4 -> [0, 2, 5, 7].
    The paper writes Eq. (1) from the annotated side (its slice i goes to LGE slice
    floor(i * n_LGE / m_source)); read from the LGE side, as here, every LGE slice gets
    exactly one pseudo-mask, also when the source stack has fewer slices.
    """
    n, m = int(n_source), int(n_target)
    if n < 1 or m < 1:
        raise InputError(f"Sequences with no slices in common: the source stack has {n} slice(s), "
                         f"the target {m}; both need at least one.")
    return (np.arange(m) * n) // m


def pseudo_masks(source_labels: np.ndarray, n_target: int, target_shape=None) -> np.ndarray:
    """Pseudo-masks for an m-slice target stack: the source labels of :func:`map_slices`.

    ``source_labels``: (n, H, W). ``target_shape``: the target slices' (H, W), checked when given.
    """
    src = np.asarray(source_labels)
    if src.ndim != 3:
        raise InputError(f"Source labels must be a stack (slices, H, W), got shape {src.shape}.")
    if target_shape is not None and tuple(target_shape) != src.shape[1:]:
        raise InputError(f"The source labels are {src.shape[1:]} in-plane but the target slices "
                         f"{tuple(target_shape)}; resample them onto the target grid first.")
    return src[map_slices(src.shape[0], n_target)]


def patient_pseudo_masks(patient, target: str = "LGE", sources=("bSSFP", "T2")) -> dict[str, np.ndarray]:
    """Per source sequence, pseudo-masks (m, H, W) for ``patient``'s target stack.

    Works on a :class:`CohortCase` (annotated sequences only) or a :class:`CardiacPatient`.
    Sources without labels are skipped; none at all is an :class:`InputError`.
    """
    name = getattr(patient, "id", f"seed {getattr(patient, 'seed', '?')}")
    img = patient.images.get(target)
    if img is None or len(img) == 0:
        raise InputError(f"Patient {name} has no {target} slices, so there is nothing to transfer to.")
    found = {s: patient.labels[s] for s in sources if s in patient.labels}
    if not found:
        raise InputError(f"Patient {name} has no labels on {' or '.join(sources)}, so no pseudo-masks "
                         f"for {target} can be made.")
    return {s: pseudo_masks(lab, len(img), img.shape[1:]) for s, lab in found.items()}
