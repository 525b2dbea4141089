"""Seeded synthetic PAS-stained kidney cortex with glomeruli, their instances and boxes.

Colours mix two stains in optical density: PAS (magenta) and hematoxylin (purple
nuclei). Tubules, their nuclei and the stain drift depend only on slide coordinates,
so blocks of one big slide join without seams. Glomeruli and distractors (dilated
tubules, arteries, empty vessels) are drawn per image, inside it, never overlapping.

The hard variant (``HARD``, the bench's and the shipped model's data) adds what real
kidney sections have and the default image lacks: glomeruli that touch or overlap a
neighbour, faint ones (thin or pale sections), sclerotic ones (a homogeneous
PAS-positive tuft without capillary loops or nuclei), stain colour and strength that
vary from slide to slide, and out-of-focus blur.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ...core.errors import InputError
from .boxes import boxes_from_instances

PAS = np.array([0.22, 0.91, 0.33], np.float32)  # optical density of one unit of stain
HEMATOXYLIN = np.array([0.65, 0.70, 0.29], np.float32)
CELL = 36  # tubule grid spacing (px): about one tubule cross-section per cell
NUCLEUS_CELL = 7  # grid spacing of candidate nuclei (px)
NUCLEUS_SIGMA = 1.8  # nuclei are blurred dots, about 3 px in radius
MARGIN = 16  # drawn around the image, so blurred nuclei join across block edges
GLOMERULI_PER_PX = 1 / 400**2  # at density 1
GAP = 8  # least distance (px) between the bounding circles of two drawn objects
BLOCK_BORDER = 8  # objects keep this far from the edges of pyramid blocks
#: the hard generator's settings (see :func:`synthetic_kidney`)
HARD = {"touching": 0.35, "faint": 0.2, "sclerotic": 0.15, "stain_jitter": 0.25, "blur": 1.6}
_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


@dataclass
class KidneySlide:
    """One synthetic image: RGB, glomerulus instances (0 = background) and their boxes."""

    rgb: np.ndarray  # (H, W, 3) uint8
    instances: np.ndarray  # (H, W) uint16 (int32 past 65535 glomeruli), labels 1..N
    boxes: np.ndarray  # (N, 4) int64 [y0, x0, y1, x1], half-open; row i is label i + 1
    distractor_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))

    @property
    def mask(self) -> np.ndarray:  # glomerulus mask, uint8 0/1
        return (self.instances > 0).astype(np.uint8)


def _hash01(seed: int, iy, ix, k: int) -> np.ndarray:
    """Uniform numbers in [0, 1) fixed by (seed, grid row, grid column, channel k)."""
    salt = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + k * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) % 2**64)
    y = np.ascontiguousarray(iy, dtype=np.int64).view(np.uint64)
    x = np.ascontiguousarray(ix, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = (y * np.uint64(0xBF58476D1CE4E5B9)) ^ (x * np.uint64(0x94D049BB133111EB)) ^ salt
        for shift, mul in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            z = (z ^ (z >> np.uint64(shift))) * np.uint64(mul)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _stain_fields(seed: int, y0: int, x0: int, h: int, w: int) -> list[np.ndarray]:
    """Three slow waves (std about 1) in slide coordinates: PAS gain, hematoxylin gain, thickness."""
    rng = np.random.default_rng([int(seed), 7])
    ys, xs = np.arange(y0, y0 + h, dtype=np.float64), np.arange(x0, x0 + w, dtype=np.float64)
    out = []
    for _ in range(3):
        freq, (angle, phase) = 2 * np.pi / rng.uniform(1500, 9000, 6), rng.uniform(0, 2 * np.pi, (2, 6))
        ay, bx = ys[:, None] * (freq * np.cos(angle)) + phase, xs[:, None] * (freq * np.sin(angle))
        # cos(a + b) = cos a cos b - sin a sin b: one small matrix product
        fy = np.concatenate([np.cos(ay), -np.sin(ay)], axis=1)
        out.append((fy @ np.concatenate([np.cos(bx), np.sin(bx)], axis=1).T / np.sqrt(3)).astype(np.float32))
    return out


def _tubules(seed: int, gy: int, gx: int, ny: int, nx: int):
    """Nearest tubule (an ellipse, one per grid cell) of each pixel of the region at (gy, gx).

    Images (rho, proximal, lumen, tone); rho is 0 at the tubule centre, 1 on its basement membrane.
    """
    c = CELL
    cy, cx = np.arange(gy // c - 1, gy // c + ny + 1)[:, None], np.arange(gx // c - 1, gx // c + nx + 1)[None]
    h = [_hash01(seed, cy, cx, k).astype(np.float32) for k in range(8)]
    oy, ox = (0.1 + 0.8 * h[0]) * c, (0.1 + 0.8 * h[1]) * c  # centre inside its own cell
    r2, stretch, angle = (c * (0.58 + 0.2 * h[2])) ** 2, 1 + 0.6 * h[3], np.pi * h[4]
    cos, sin, ia, ib = np.cos(angle), np.sin(angle), 1 / (r2 * stretch), stretch / r2
    qa, qc, qb = cos**2 * ia + sin**2 * ib, sin**2 * ia + cos**2 * ib, 2 * cos * sin * (ia - ib)
    ly, lx = np.arange(c, dtype=np.float32)[None, :, None, None], np.arange(c, dtype=np.float32)[None, None, None]
    best = np.full((ny, c, nx, c), np.inf, np.float32)
    arg = np.zeros(best.shape, np.uint8)
    for k, (dy, dx) in enumerate(_OFFSETS):  # the nearest centre is in one of the 9 cells around
        s = (slice(1 + dy, 1 + dy + ny), slice(1 + dx, 1 + dx + nx))
        u, v = ly - (oy + dy * c)[s][:, None, :, None], lx - (ox + dx * c)[s][:, None, :, None]
        q = (qb[s][:, None, :, None] * u) * v
        q += qa[s][:, None, :, None] * u * u
        q += qc[s][:, None, :, None] * v * v
        np.copyto(arg, k, where=q < best)
        np.minimum(best, q, out=best)
    base = ((np.arange(ny) + 1) * (nx + 2))[:, None, None, None] + (np.arange(nx) + 1)[None, None, :, None]
    idx = (base.astype(np.int32) + np.array([dy * (nx + 2) + dx for dy, dx in _OFFSETS], np.int32)[arg])
    proximal = h[5] < 0.75
    lumen = np.where(proximal, 0.1 + 0.18 * h[6], 0.3 + 0.15 * h[6])
    take = lambda a: a.astype(np.float32).ravel().take(idx).reshape(ny * c, nx * c)  # noqa: E731
    return np.sqrt(best).reshape(ny * c, nx * c), take(proximal), take(lumen), take(0.85 + 0.3 * h[7])


def _ring(x, centre, half_width):
    """1 on a ring at ``centre`` falling to 0 at ``half_width`` either side."""
    return np.clip(1 - np.abs(x - centre) / half_width, 0, 1)


def _scatter(rng, dots, sl, where, n, weight=(0.7, 1.2)):
    """Add ``n`` nuclei (unit dots) at random pixels of the crop where ``where`` holds."""
    ys, xs = np.nonzero(where)
    pick = rng.integers(0, len(ys), int(n) if len(ys) else 0)
    np.add.at(dots[sl], (ys[pick], xs[pick]), rng.uniform(*weight, len(pick)).astype(np.float32))


def _draw(kind, canvas, rng, cy, cx, a, b, angle, label=0, variant="normal"):
    """Paint one object (glomerulus or distractor) into the canvas maps; return its box.

    ``variant`` (glomeruli): "normal", "faint" (tuft and capsule at 35-55 % contrast) or
    "sclerotic" (a homogeneous, strongly PAS-positive tuft, no loops, few nuclei)."""
    P, H, dots, owner, inst = canvas
    y0, x0 = max(0, int(cy - a - 3)), max(0, int(cx - a - 3))
    sl = (slice(y0, min(P.shape[0], int(cy + a + 4))), slice(x0, min(P.shape[1], int(cx + a + 4))))
    yy = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] - cy
    xx = np.arange(sl[1].start, sl[1].stop, dtype=np.float32)[None, :] - cx
    p, q = (yy * np.cos(angle) + xx * np.sin(angle)) / a, (xx * np.cos(angle) - yy * np.sin(angle)) / b
    rho, phi, px = np.hypot(p, q), np.arctan2(q, p), 0.5 * (a + b)  # px: pixels per unit of rho
    inside = np.clip((1 - rho) * px + 0.5, 0, 1)
    noise = rng.standard_normal(rho.shape, dtype=np.float32)  # band-pass texture, std 1
    noise = ndi.gaussian_filter(noise, 1.5) - ndi.gaussian_filter(noise, 4.0)
    noise /= noise.std() + 1e-6
    if kind == "glomerulus":  # lobulated tuft of capillary loops, Bowman's space, capsule
        cap, bowman, (dp, dq) = 2.2 / px, rng.uniform(0.07, 0.15), rng.uniform(-0.04, 0.04, 2)
        rt, pt = np.hypot(p - dp, q - dq), np.arctan2(q - dq, p - dp)
        lobes = sum(rng.uniform(0, 0.035) * np.cos(k * pt + rng.uniform(0, 6.3)) for k in range(3, 8))
        tuft = np.clip(((1 - cap - bowman) * (1 + lobes) - rt) * px + 0.5, 0, 1)
        loops = np.clip((noise - 0.6) * 2, 0, 1)  # capillary lumens
        cells = 1 / 55
        if variant == "sclerotic":  # collapsed tuft: glassy matrix, lumens and cells gone
            loops, cells = loops * 0.1, 1 / 400
            inner = rng.uniform(1.1, 1.4) * (1 + 0.08 * noise)
        else:
            inner = rng.uniform(0.85, 1.15) * (0.9 - 0.65 * loops + 0.5 * _ring(noise, 0.6, 0.3))
        obj_p = tuft * inner + (1 - tuft) * 0.05 + 1.1 * _ring(rho, 1 - cap / 2, 1.2 / px)
        obj_h = tuft * 0.3 * (1 - loops)
        if variant == "faint":  # drawn at a fraction of its contrast over the cortex around it
            k = rng.uniform(0.35, 0.55)
            obj_p, obj_h, cells = k * obj_p + (1 - k) * P[sl], k * obj_h + (1 - k) * H[sl], cells * k
        inst[sl][rho <= 1] = label
        _scatter(rng, dots, sl, (tuft > 0.5) & (loops < 0.5), tuft.sum() * cells)
        _scatter(rng, dots, sl, _ring(rho, 1 - 1.5 * cap, 0.6 / px) > 0.5, 2 * np.pi * px / 30, (0.5, 0.7))
    elif kind == "tubule":  # dilated tubule: same size, wide pale lumen, thin light epithelium
        lumen = rng.uniform(0.5, 0.72)
        lum = np.clip((lumen - rho) * px + 0.5, 0, 1)
        brush = (rng.random() < 0.5) * _ring(rho, lumen + 2.5 / px, 2 / px)
        cast = (rng.random() < 0.35) * np.clip((0.6 * lumen - np.hypot(p - 0.1, q)) * px * 0.2, 0, 1)
        obj_p = (1 - lum) * 0.36 * rng.uniform(0.8, 1.05) * (1 + 0.15 * noise) + lum * (0.04 + 0.3 * cast)
        obj_p = obj_p + 0.8 * brush + 0.8 * _ring(rho, 1 - 1.5 / px, 1.2 / px)
        obj_h = (1 - lum) * 0.03
        ring = (rho > lumen + 0.1) & (rho < 0.9)
        _scatter(rng, dots, sl, ring, ring.sum() / 80)
    elif kind == "artery":  # concentric smooth muscle and a wavy elastic lamina around the lumen
        lumen = rng.uniform(0.25, 0.4)
        lum = np.clip((lumen - rho) * px + 0.5, 0, 1)
        media = np.clip((0.8 - rho) * px * 0.5, 0, 1) * (1 - lum)
        lamina = _ring(rho + 0.015 * np.cos(28 * phi), lumen + 1.5 / px, 1.5 / px)
        obj_p = lum * 0.06 + (1 - lum) * (0.3 + 0.45 * media) * (1 + 0.1 * noise) + 1.1 * lamina
        obj_h = media * 0.1
        _scatter(rng, dots, sl, media > 0.5, (media > 0.5).sum() / 70, (0.8, 1.0))
    else:  # empty vessel or gap: white, a thin endothelial rim, irregular outline
        rho = rho * (1 + sum(rng.uniform(0, 0.05) * np.cos(k * phi + rng.uniform(0, 6.3)) for k in (2, 3, 5)))
        inside, rim = np.clip((1 - rho) * px + 0.5, 0, 1), _ring(rho, 1 - 1.0 / px, 1.0 / px)
        obj_p, obj_h = 0.02 + 0.35 * rim, np.float32(0)
        _scatter(rng, dots, sl, rim > 0.5, 2 * np.pi * px / 60, (0.5, 0.7))
    P[sl] = P[sl] * (1 - inside) + inside * obj_p
    H[sl] = H[sl] * (1 - inside) + inside * obj_h
    owner[sl] |= inside > 0
    rows, cols = np.nonzero((rho <= 1).any(axis=1))[0], np.nonzero((rho <= 1).any(axis=0))[0]
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) + [y0, x0, y0, x0]


def _place(rng, h, w, sizes, border, touch=None):
    """Centres (or None) for bounding circles of radii ``sizes`` inside (h, w), apart by GAP.

    Where ``touch[i]`` is set, object i is first tried against an earlier one, its circle
    reaching 70-95 % of the way to that one's centre line (so the two touch or overlap);
    every other object still keeps GAP."""
    out, taken = [], np.zeros((0, 3))
    for i, a in enumerate(sizes):
        lo = border + a + 2
        out.append(None)
        if 2 * lo >= min(h, w):
            continue
        cand = np.stack([rng.uniform(lo, h - lo, 64), rng.uniform(lo, w - lo, 64)], axis=1)
        partner = -1
        if touch is not None and touch[i] and len(taken):
            partner = int(rng.integers(len(taken)))
            py_, px_, pa = taken[partner]
            theta = rng.uniform(0, 2 * np.pi, 64)
            reach = (pa + a) * rng.uniform(0.7, 0.95, 64)
            near = np.stack([py_ + reach * np.sin(theta), px_ + reach * np.cos(theta)], axis=1)
            inside = (near >= lo).all(axis=1) & (near[:, 0] <= h - lo) & (near[:, 1] <= w - lo)
            cand = np.concatenate([near[inside], cand])
        dist = np.hypot(cand[:, None, 0] - taken[None, :, 0], cand[:, None, 1] - taken[None, :, 1])
        need = taken[None, :, 2] + a + GAP + np.zeros_like(dist)
        if partner >= 0:
            need[:, partner] = 0
        ok = (dist >= need).all(axis=1)
        if ok.any():
            out[-1] = tuple(cand[np.argmax(ok)])
            taken = np.vstack([taken, [*out[-1], a]])
    return out


def synthetic_kidney(shape=(2048, 2048), seed: int = 0, *, glomerulus_radius=(30, 60), density: float = 1.0,
                     distractors: float = 1.0, border: int = 0, origin=(0, 0),
                     texture_seed: int | None = None, touching: float = 0.0, faint: float = 0.0,
                     sclerotic: float = 0.0, stain_jitter: float = 0.0, blur: float = 0.0) -> KidneySlide:
    """A PAS-like kidney cortex image with glomeruli; the same arguments give the same image.

    ``glomerulus_radius``: range of the long half-axis in pixels (eccentricity up to
    0.75). About one glomerulus per 400 x 400 pixels at ``density`` 1; ``distractors``
    scales the dilated tubules, arteries and empty vessels. Objects stay ``border``
    pixels inside the image. ``origin`` and ``texture_seed`` (default ``seed``) place
    the image in a bigger slide: tubules and stain drift depend only on those.

    Harder images (``**HARD``): ``touching``, ``faint`` and ``sclerotic`` are the fractions
    of glomeruli placed against a neighbour, drawn faint, or drawn sclerotic;
    ``stain_jitter`` the relative spread of the slide's stain colours and strengths (one
    draw per slide, from ``texture_seed``); ``blur`` the largest Gaussian blur sigma (px)
    of the slide's focus (also one draw per slide).
    """
    lo, hi = (float(r) for r in glomerulus_radius)
    if len(shape) != 2 or min(shape) < 1 or seed < 0 or not 3 <= lo <= hi or not 0 <= density <= 100 \
            or not 0 <= distractors <= 100 or not all(0 <= v <= 1 for v in (touching, faint, sclerotic)) \
            or not 0 <= stain_jitter <= 1 or not 0 <= blur <= 8:
        raise InputError(
            f"Got shape={tuple(shape)}, seed={seed}, glomerulus_radius={tuple(glomerulus_radius)}, "
            f"density={density}, distractors={distractors}; use (height, width) >= 1, seed >= 0, "
            "radii with 3 <= low <= high, density and distractors between 0 and 100, touching, faint, "
            "sclerotic and stain_jitter between 0 and 1, and blur between 0 and 8 px."
        )
    (h, w), (oy, ox) = (int(s) for s in shape), (int(o) for o in origin)
    rng, tseed = np.random.default_rng(int(seed)), int(seed if texture_seed is None else texture_seed)
    gy, gx = (oy - MARGIN) // CELL * CELL, (ox - MARGIN) // CELL * CELL  # canvas corner, on the grid
    ny, nx = -(-(oy + h + MARGIN - gy) // CELL), -(-(ox + w + MARGIN - gx) // CELL)
    py, px = oy - gy, ox - gx  # image corner inside the canvas

    rho, prox, lumen, tone = _tubules(tseed, gy, gx, ny, nx)
    inside, lum = np.clip((0.97 - rho) * 18, 0, 1), np.clip((lumen - rho) * 18, 0, 1)
    P = 0.2 + inside * ((0.3 + 0.2 * prox) * tone * (1 - lum) + 0.1 * lum - 0.2)
    P += 0.9 * prox * _ring(rho, lumen + 0.07, 0.07) + 0.7 * _ring(rho, 0.95, 0.045)  # brush border, membrane
    P *= 1 + 0.5 * ndi.gaussian_filter(rng.standard_normal(P.shape, dtype=np.float32), 1.0)
    H = 0.04 - 0.01 * inside - 0.03 * lum
    dots, owner, inst = np.zeros(P.shape, np.float32), np.zeros(P.shape, bool), np.zeros(P.shape, np.int32)

    # glomeruli first, then things that are not glomeruli
    n_dis = h * w * distractors * GLOMERULI_PER_PX
    specs = [("glomerulus", rng.uniform(lo, hi), 0.75) for _ in range(round(h * w * density * GLOMERULI_PER_PX))]
    specs += [("tubule", rng.uniform(lo, hi) * 0.95, 0.6) for _ in range(round(0.5 * n_dis))]
    specs += [("artery", rng.uniform(lo, hi) * 0.8, 0.4) for _ in range(round(0.2 * n_dis))]
    specs += [("vessel", rng.uniform(0.5, 1.4) * hi, 0.95) for _ in range(round(0.35 * n_dis))]
    label, others = 0, []
    hard = touching or faint or sclerotic
    touch = [k == "glomerulus" and rng.random() < touching for k, _, _ in specs] if hard else None
    variants = [str(rng.choice(["faint", "sclerotic", "normal"], p=[faint, sclerotic, 1 - faint - sclerotic]))
                if hard and k == "glomerulus" else "normal" for k, _, _ in specs]
    centres = _place(rng, h, w, [s[1] for s in specs], max(0, int(border)), touch)
    for (kind, a, ecc), centre, variant in zip(specs, centres, variants):
        b, angle = a * np.sqrt(1 - rng.uniform(0.7 if kind == "vessel" else 0, ecc) ** 2), rng.uniform(0, np.pi)
        if centre is not None:
            label += kind == "glomerulus"
            box = _draw(kind, (P, H, dots, owner, inst), rng, centre[0] + py, centre[1] + px, a, b, angle, label,
                        variant)
            if kind != "glomerulus":
                others.append(box - [py, px, py, px])

    # nuclei everywhere: one candidate per cell of a slide-wide grid, kept by where it falls
    n = NUCLEUS_CELL
    ky = np.arange(-(-gy // n), (gy + P.shape[0]) // n)[:, None]
    kx = np.arange(-(-gx // n), (gx + P.shape[1]) // n)[None]
    yy = (ky * n + _hash01(tseed, ky, kx, 10) * n - gy).astype(np.int64).ravel()
    xx = (kx * n + _hash01(tseed, ky, kx, 11) * n - gx).astype(np.int64).ravel()
    r, L = rho[yy, xx], lumen[yy, xx]
    chance = np.where(r >= 1, 0.10, np.where(r > 0.9, 0.15, np.where(r > L + 0.12, 0.42, 0.0)))
    accept = (_hash01(tseed, ky, kx, 12).ravel() < chance) & ~owner[yy, xx]
    dots[yy[accept], xx[accept]] += 0.75 + 0.5 * _hash01(tseed, ky, kx, 13).ravel()[accept].astype(np.float32)
    del rho, prox, lumen, tone, inside, lum, owner

    crop = (slice(py, py + h), slice(px, px + w))
    peak = 1 / (2 * np.pi * NUCLEUS_SIGMA**2)  # height of one blurred unit dot
    nuc = np.clip((ndi.gaussian_filter(dots, NUCLEUS_SIGMA) / peak - 0.25) * 2.5, 0, 1)
    pas, hem, sigma = slide_style(tseed, stain_jitter, blur)
    P, H = P + 0.2 * nuc, H + 1.5 * nuc
    if sigma > 0.3:  # out of focus: blurred in optical density, on the canvas (its margin hides the edge)
        P, H = ndi.gaussian_filter(P, sigma), ndi.gaussian_filter(H, sigma)
    f_pas, f_hem, f_thick = _stain_fields(tseed, oy, ox, h, w)
    P = P[crop] * (1 + 0.1 * f_pas) * (1 + 0.06 * f_thick)
    H = H[crop] * (1 + 0.1 * f_hem) * (1 + 0.06 * f_thick)
    rgb = np.empty((h, w, 3), np.uint8)
    for c in range(3):  # one colour at a time keeps memory low; 3 grey levels of pixel noise
        rgb[..., c] = np.clip(np.exp(-(P * pas[c] + H * hem[c])) * 250 + 0.5
                              + rng.standard_normal((h, w), dtype=np.float32) * 3, 0, 255)
    instances = inst[crop].astype(np.uint16 if label < 2**16 else np.int32)
    return KidneySlide(rgb, instances, boxes_from_instances(instances), np.array(others, np.int64).reshape(-1, 4))


def slide_style(texture_seed: int, stain_jitter: float = 0.0, blur: float = 0.0):
    """(PAS colour, hematoxylin colour, blur sigma) of one slide: its stain batch and focus.

    Each colour's three optical densities and its strength vary by up to ``stain_jitter``
    (relative); sigma is uniform in [0, ``blur``]. One draw per ``texture_seed``, so the
    blocks of one slide share them."""
    if not (stain_jitter or blur):
        return PAS, HEMATOXYLIN, 0.0
    rng, j = np.random.default_rng([int(texture_seed), 11]), float(stain_jitter)
    pas = np.clip(PAS * rng.uniform(1 - j, 1 + j, 3), 0.02, None) * rng.uniform(1 - j, 1 + j)
    hem = np.clip(HEMATOXYLIN * rng.uniform(1 - j, 1 + j, 3), 0.02, None) * rng.uniform(1 - j, 1 + j)
    return pas.astype(np.float32), hem.astype(np.float32), float(rng.uniform(0, blur))
