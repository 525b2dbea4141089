"""The despeckling part of ``bench staining``: the shipped network against classical despecklers.

Images are the inverted luma (Y of YUV) of held-out real H&E with multiplicative speckle
``Y = X * N(1, std)``, as in Combalia et al. 2019 (Table 1). Each classical despeckler has
one parameter, chosen from a small grid by PSNR on ONE tuning crop that is never scored
(it comes from rows of the held-out image that the scored crops do not touch):

- ``median``: a median filter, its size tuned among 3 and 5;
- ``nlm``: scikit-image's non-local means (5x5 patches, distance 6, fast mode), ``h`` tuned;
- ``tv``: total variation, Chambolle's algorithm, ``weight`` tuned;
- ``log_gaussian``: homomorphic filtering, ``exp(gaussian(log(y + eps), sigma)) - eps``, ``sigma`` tuned.

PSNR and SSIM are those of scikit-image with data range 1, on the estimate clipped to
[0, 1] (the noisy input too), averaged over the scored crops.
"""

from __future__ import annotations

import numpy as np

LOG_EPS = 1e-3
GRIDS = {  # wide enough that every optimum on the tuning crop lies inside, at both operating points
    "median": (3, 5),
    "nlm": tuple(round(0.03 * 1.2**k, 4) for k in range(14)),  # 0.03 … 0.32
    "tv": tuple(round(0.01 * 1.25**k, 4) for k in range(18)),  # 0.01 … 0.44
    "log_gaussian": tuple(round(0.4 * 1.2**k, 3) for k in range(13)),  # 0.4 … 3.6
}
PARAM_NAMES = {"median": "size", "nlm": "h", "tv": "weight", "log_gaussian": "sigma"}
TUNING_ROWS = 300  # the first rows of the held-out CMU-1 region give the tuning crop; the rest are scored


def median(y: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(y, size=int(size), mode="nearest")


def nlm(y: np.ndarray, h: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(y, h=float(h), patch_size=5, patch_distance=6, fast_mode=True).astype(np.float32)


def tv(y: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(y, weight=float(weight)).astype(np.float32)


def log_gaussian(y: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    logy = np.log(np.maximum(y, 0.0) + LOG_EPS)  # a speckle draw below -1/std would make y negative
    return (np.exp(gaussian_filter(logy, float(sigma), mode="nearest")) - LOG_EPS).astype(np.float32)


CLASSICAL = {"median": median, "nlm": nlm, "tv": tv, "log_gaussian": log_gaussian}


def psnr(clean: np.ndarray, estimate: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(clean, np.clip(estimate, 0, 1), data_range=1.0))


def ssim(clean: np.ndarray, estimate: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(clean, np.clip(estimate, 0, 1).astype(clean.dtype), data_range=1.0))


def scores(clean, estimates) -> tuple[float, float]:
    """Mean PSNR and mean SSIM over crops."""
    return (float(np.mean([psnr(c, e) for c, e in zip(clean, estimates)])),
            float(np.mean([ssim(c, e) for c, e in zip(clean, estimates)])))


def tune(name: str, clean: np.ndarray, noisy: np.ndarray, grid=None) -> tuple[float, dict]:
    """The grid value with the best PSNR on this one (tuning) crop, and every value's PSNR."""
    fn = CLASSICAL[name]
    table = {p: psnr(clean, fn(noisy, p)) for p in (grid or GRIDS[name])}
    return max(table, key=table.get), table


def speckle(clean, std: float, seed: int) -> list[np.ndarray]:
    """Each crop times its own N(1, std) draw; crop ``i`` always gets seed ``seed + i``, so
    the noise only scales with ``std`` (noisy PSNR falls monotonically as std rises)."""
    from ..methods.staining.speckle import add_speckle

    return [add_speckle(c, std, seed + i) for i, c in enumerate(clean)]


def noisy_psnr(clean, std: float, seed: int) -> float:
    return float(np.mean([psnr(c, n) for c, n in zip(clean, speckle(clean, std, seed))]))


def matched_std(clean, target: float = 16.2, seed: int = 0, lo: float = 0.01, hi: float = 2.0,
                tol: float = 0.02, iters: int = 40) -> float:
    """Bisection on the speckle std until the mean noisy PSNR of ``clean`` is ``target`` dB (± ``tol``)."""
    if noisy_psnr(clean, lo, seed) < target or noisy_psnr(clean, hi, seed) > target:
        raise ValueError(f"A noisy PSNR of {target} dB is not reached for std in [{lo}, {hi}].")
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        p = noisy_psnr(clean, mid, seed)
        if abs(p - target) <= tol:
            return mid
        lo, hi = (mid, hi) if p > target else (lo, mid)
    return 0.5 * (lo + hi)


def network_despeckle(model, noisy) -> list[np.ndarray]:
    import torch

    x = torch.from_numpy(np.stack(noisy)[:, None].astype(np.float32))
    with torch.inference_mode():
        y = torch.cat([model.eval()(x[i: i + 4]) for i in range(0, len(x), 4)])
    return [np.clip(o[0], 0.0, 1.0) for o in y.numpy()]


def operating_point(model, tune_clean, scored_clean, std: float, seed: int) -> dict:
    """Noisy, network and each classical despeckler (tuned on ``tune_clean`` only) on the
    scored crops at one speckle std."""
    tune_noisy = speckle([tune_clean], std, seed + 10_000)[0]
    noisy = speckle(scored_clean, std, seed)
    out = {"std": std}
    out["psnr_noisy"], out["ssim_noisy"] = scores(scored_clean, noisy)
    if model is not None:
        out["psnr_despeckled"], out["ssim_despeckled"] = scores(scored_clean, network_despeckle(model, noisy))
    for name, fn in CLASSICAL.items():
        param, _ = tune(name, tune_clean, tune_noisy)
        out[f"param_{name}"] = param
        out[f"psnr_{name}"], out[f"ssim_{name}"] = scores(scored_clean, [fn(n, param) for n in noisy])
    edge = [n for n in CLASSICAL if n != "median" and out[f"param_{n}"] in (GRIDS[n][0], GRIDS[n][-1])]
    out["tuned_at_grid_edge"] = ",".join(edge) or "none"  # an optimum at the edge: the grid was too small
    best = max(CLASSICAL, key=lambda n: out[f"psnr_{n}"])
    out["best_classical"] = best
    out["psnr_best_classical"], out["ssim_best_classical"] = out[f"psnr_{best}"], out[f"ssim_{best}"]
    return out


def held_out_crops(n: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(tuning crop, scored crops) of the inverted luma of held-out H&E; the tuning crop comes
    from the first :data:`TUNING_ROWS` rows of the held-out CMU-1 region, the scored ones from
    the rest of it and from stardist's histo.jpg, so they never overlap."""
    from ..methods.staining import hne
    from ..methods.staining.training import crops, luma_images

    cmu, other = luma_images(hne.split().held_out)
    tuning = crops([cmu[:TUNING_ROWS]], 1, size, np.random.default_rng(seed + 1))[0, 0]
    rest = cmu[TUNING_ROWS:]
    half = rest.shape[1] // 2  # two halves and stardist: stardist gives about a third of the crops
    scored = crops([rest[:, :half], rest[:, half:], other], n, size, np.random.default_rng(seed))
    return tuning, [c[0] for c in scored]


def despeckle_study(model, n_crops: int, size: int = 256, seed: int = 0, target: float = 16.2) -> dict:
    """Both operating points: the paper's std 0.2, and the std whose noisy PSNR is ``target`` dB."""
    from ..methods.staining.speckle import PAPER_STD

    tuning, scored = held_out_crops(n_crops, size, seed)
    paper = operating_point(model, tuning, scored, PAPER_STD, seed)
    std = matched_std(scored, target, seed=seed)
    matched = operating_point(model, tuning, scored, std, seed)
    res = {k: v for k, v in paper.items() if k != "std"}
    res.update({f"{k}_matched": v for k, v in matched.items() if k != "std"})
    res["std_matched"] = std
    res["n_scored_crops"], res["crop_size"] = len(scored), size
    return res
