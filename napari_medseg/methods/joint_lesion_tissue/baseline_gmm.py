"""A classical tissue baseline in the spirit of SPM / FSL-FAST: a Gaussian mixture on T1.

Why it is here. The paper compares its networks with SPM, the subject-specific
intensity model that established pipelines use, and argues that such models are not
built for lesions (a white-matter lesion is dark on T1 and gets called grey matter or
CSF). This baseline lets that comparison be made on the same data: three Gaussians
(CSF, grey matter, white matter) fitted to the T1 intensities inside the brain,
ordered by mean (on T1: CSF < GM < WM). There is no atlas prior and no MRF; an
optional Gaussian smoothing of the posteriors stands in for spatial regularisation.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError
from .labels import LabelSet, REDUCED

TISSUE_NAMES = ("CSF", "grey matter", "white matter")  # in increasing T1 intensity


def brain_mask(t1: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Foreground of a skull-stripped T1: smoothed intensity above half the Otsu threshold,
    holes filled. Otsu alone splits background from the bright tissue and would cut the
    dark CSF; half of it still rejects the near-zero background."""
    from scipy.ndimage import binary_fill_holes, gaussian_filter
    from skimage.filters import threshold_otsu

    smooth = gaussian_filter(np.asarray(t1, np.float32), sigma)
    if np.ptp(smooth) <= 0:
        raise InputError("The T1 image is constant; there is no brain to find.")
    mask = smooth > 0.5 * threshold_otsu(smooth)
    return binary_fill_holes(mask)


def gmm_tissue_segmentation(t1: np.ndarray, label_set: LabelSet = REDUCED, mask: np.ndarray | None = None,
                            smooth_sigma: float = 0.0, seed: int = 0, max_samples: int = 200_000) -> np.ndarray:
    """uint8 labels of ``label_set`` (CSF, grey matter, white matter; 0 outside the brain).

    ``mask``: the brain mask, else :func:`brain_mask`. ``smooth_sigma`` > 0 smooths the
    posterior maps before the arg-max. The mixture is fitted on at most ``max_samples``
    voxels (a random subset) to stay fast on full volumes.
    """
    from sklearn.mixture import GaussianMixture

    t1 = np.asarray(t1, np.float32)
    if t1.ndim not in (2, 3) or not np.isfinite(t1).all():
        raise InputError(f"T1 must be a finite 2D or 3D array; got shape {t1.shape}.")
    try:
        targets = [label_set.names.index(n) for n in TISSUE_NAMES]
    except ValueError:
        raise InputError(f"The label set {label_set.names} lacks one of {TISSUE_NAMES}.") from None
    mask = brain_mask(t1) if mask is None else np.asarray(mask, bool)
    if mask.shape != t1.shape:
        raise InputError(f"The brain mask {mask.shape} and the T1 {t1.shape} differ in shape.")
    values = t1[mask]
    if values.size < 30:
        raise InputError(f"Only {values.size} brain voxels: too few to fit three tissue classes.")
    rng = np.random.default_rng(seed)
    fit = values if values.size <= max_samples else rng.choice(values, max_samples, replace=False)
    gmm = GaussianMixture(3, random_state=seed, n_init=2).fit(fit[:, None])
    order = np.argsort(gmm.means_[:, 0])  # component indices from darkest to brightest
    if smooth_sigma > 0:
        from scipy.ndimage import gaussian_filter

        post = np.zeros((3, *t1.shape), np.float32)
        post[:, mask] = gmm.predict_proba(values[:, None]).T
        post = np.stack([gaussian_filter(p, smooth_sigma) for p in post])
        comp = np.argmax(post, 0)[mask]
    else:
        comp = gmm.predict(values[:, None])
    lut = np.zeros(3, np.uint8)
    for rank, c in enumerate(order):
        lut[c] = targets[rank]
    out = np.zeros(t1.shape, np.uint8)
    out[mask] = lut[comp]
    return out
