"""Native-resolution refinement, the brain mask and lesion support (issue 16)."""

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.joint_lesion_tissue.inference import check_mask
from napari_medseg.methods.joint_lesion_tissue.labels import REDUCED
from napari_medseg.methods.joint_lesion_tissue.postprocess import finish, lesion_support, refine, to_scan_grid


def _two_class_line(n=200, edge=120):
    """A 1-D 'scan': class A (dark) left of ``edge``, class B (bright) right of it, and a
    prior that puts the boundary 20 voxels too early and is unsure around it."""
    rng = np.random.default_rng(0)
    x = np.where(np.arange(n) < edge, 0.2, 0.8) + 0.03 * rng.standard_normal(n)
    pb = 1.0 / (1.0 + np.exp(-(np.arange(n) - (edge - 20)) / 8.0))
    return x.astype(np.float32), np.stack([1 - pb, pb]).astype(np.float32)


def test_refinement_moves_the_boundary_to_the_intensities():
    x, prior = _two_class_line()
    before = np.argmax(prior, 0)
    post = refine(prior, x[:, None])
    after = np.argmax(post, 0)
    truth = (np.arange(200) >= 120).astype(int)
    assert (before != truth).sum() >= 15  # the prior alone is wrong near the edge
    assert (after != truth).sum() <= 2
    assert np.allclose(post.sum(0), 1.0, atol=1e-5)


def test_a_tied_variance_puts_an_undecided_boundary_midway_between_the_means():
    """A narrow dark class and a broad bright one, a flat prior: with one variance per class
    the broad class claims voxels much nearer the dark mean; with a tied variance the
    boundary sits near the midpoint of the two means (0.5)."""
    rng = np.random.default_rng(1)
    a = 0.02 * rng.standard_normal(3000)
    b = 1.0 + 0.2 * rng.standard_normal(3000)
    probe = np.linspace(0.0, 1.0, 101)
    x = np.concatenate([a, b, probe]).astype(np.float32)[:, None]
    resp = np.concatenate([np.tile([[1.0], [0.0]], 3000), np.tile([[0.0], [1.0]], 3000),
                           np.full((2, probe.size), 0.5)], 1).astype(np.float32)
    flat = np.full_like(resp, 0.5)

    def boundary(variance):  # EM starts from the true responsibilities, then the flat prior decides
        from napari_medseg.methods.joint_lesion_tissue.postprocess import _fit, _log_lik
        mu, var = _fit(x, resp, variance)
        post = np.log(flat) + _log_lik(x, mu, var)
        called_b = np.argmax(post[:, -probe.size:], 0) == 1
        return probe[np.argmax(called_b)]  # first probe intensity called bright

    assert boundary("class") < 0.35
    assert 0.4 < boundary("tied") < 0.6
    post = refine(flat[:, :6000], x[:6000], variance="tied")
    assert np.allclose(post.sum(0), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="variance"):
        refine(flat, x, variance="pooled")


def test_a_class_the_prior_never_predicts_is_not_invented():
    x, prior = _two_class_line()
    third = np.full((1, x.size), 1e-4, np.float32)  # a class with almost no prior mass
    post = refine(np.concatenate([prior, third]), x[:, None])
    assert (np.argmax(post, 0) == 2).sum() == 0


def _scene():
    """3-D labels: WM block with two lesions (a big one, a 2-voxel one), GM around."""
    lab = np.full((20, 20, 20), 2, np.uint8)
    lab[3:17, 3:17, 3:17] = 3
    lab[6:11, 6:11, 6:11] = REDUCED.lesion  # 125 voxels
    lab[14, 14, 14:16] = REDUCED.lesion  # 2 voxels
    t1 = np.where(lab == 3, 1.0, 0.6).astype(np.float32)
    t1[lab == REDUCED.lesion] = 0.3
    flair = np.where(lab == 3, 0.5, 0.65).astype(np.float32)
    flair[lab == REDUCED.lesion] = 1.2
    return lab, t1, flair


def test_lesions_need_support_and_a_minimum_size():
    lab, t1, flair = _scene()
    spacing = (1.0, 1.0, 1.0)
    kept = lab.copy()
    assert lesion_support(kept, {"T1": t1, "FLAIR": flair}, REDUCED, spacing, 0.01) == 1  # 2 voxels < 10 mm3
    assert (kept == REDUCED.lesion).sum() == 125 and kept[14, 14, 14] == 3  # the small one became WM
    dark = lab.copy()  # a 'lesion' not bright on FLAIR is not a lesion
    flat = np.where(lab == REDUCED.lesion, 0.4, flair)
    assert lesion_support(dark, {"T1": t1, "FLAIR": flat}, REDUCED, spacing, 0.0) == 2
    assert not (dark == REDUCED.lesion).any()
    rng = np.random.default_rng(0)  # brighter than grey matter's median, but within its spread: not a lesion
    noisy = np.where(lab == 2, 0.65 + 0.1 * rng.standard_normal(lab.shape), flair).astype(np.float32)
    noisy[lab == REDUCED.lesion] = 0.72
    grey_ish = lab.copy()
    assert lesion_support(grey_ish, {"T1": t1, "FLAIR": noisy}, REDUCED, spacing, 0.0) == 2
    t1_only = lab.copy()  # on T1 alone: darker than the GM/WM boundary and inside WM
    assert lesion_support(t1_only, {"T1": t1}, REDUCED, spacing, 0.0) == 0
    bright = lab.copy()
    assert lesion_support(bright, {"T1": np.where(lab == REDUCED.lesion, 1.0, t1)}, REDUCED, spacing, 0.0) == 2


def test_mask_bounds_the_labels_and_removes_background_inside():
    lab, t1, flair = _scene()
    from scipy import ndimage

    probs = np.zeros((REDUCED.n_classes, *lab.shape), np.float32)
    probs[0] = 0.6  # the network calls everything background, and its WM is shifted and blurred...
    wm = ndimage.gaussian_filter(np.roll(lab >= 3, 2, axis=0).astype(np.float32), 2.0)
    probs[3], probs[2] = 0.4 * wm, 0.4 * (1 - wm)
    mask = np.zeros(lab.shape, bool)
    mask[2:18, 2:18, 2:18] = True
    out = finish(probs, {"T1": t1}, ["T1"], REDUCED, (1.0, 1.0, 1.0), mask=mask, refine_native=True)
    assert (out.labels[~mask] == 0).all() and (out.labels[mask] != 0).all()
    wm_true = lab == 3  # ...but with a mask, the intensities settle GM vs WM inside it
    prior_only = finish(probs, {"T1": t1}, ["T1"], REDUCED, (1.0, 1.0, 1.0), mask=mask, refine_native=False)
    before, after = (prior_only.labels[wm_true] == 3).mean(), (out.labels[wm_true] == 3).mean()
    assert before < 0.85 and after > before + 0.05, (before, after)
    no_mask = finish(probs, {"T1": t1}, ["T1"], REDUCED, (1.0, 1.0, 1.0))
    assert (no_mask.labels == 0).all()  # without one, the network's background stands


def test_probabilities_go_back_onto_the_scan_grid():
    probs = np.zeros((2, 4, 4, 4), np.float32)
    probs[1, :, :, 2:] = 1.0
    probs[0] = 1.0 - probs[1]
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])
    fine = np.eye(4)
    out = to_scan_grid(probs, coarse, fine, (8, 8, 8))
    assert out.shape == (2, 8, 8, 8) and np.allclose(out.sum(0), 1.0, atol=1e-5)
    assert out[1, 3, 3, 7] > 0.99 and out[1, 3, 3, 0] < 0.01
    assert to_scan_grid(probs, fine, fine, (4, 4, 4)) is probs


def test_bad_masks_are_refused():
    with pytest.raises(InputError, match="shape"):
        check_mask(np.ones((3, 3, 3)), (4, 4, 4))
    with pytest.raises(InputError, match="empty"):
        check_mask(np.zeros((4, 4, 4)), (4, 4, 4))
    with pytest.raises(InputError, match="NaN"):
        check_mask(np.full((4, 4, 4), np.nan), (4, 4, 4))
    assert check_mask(np.full((4, 4, 4), 7), (4, 4, 4)).all()


def test_joint_lesions_are_the_networks_one_vs_all_call_and_tissue_the_refined_argmax():
    """Lesion where the lesion probability is at least 0.5 (what the lesion loss trains and
    W uses), not where it merely tops the refined arg-max; tissue from the refinement."""
    lab, t1, flair = _scene()
    probs = np.zeros((REDUCED.n_classes, *lab.shape), np.float32)
    probs[2], probs[3] = (lab == 2) * 0.9 + 0.05, (lab == 3) * 0.9 + 0.05
    big = (lab == REDUCED.lesion) & (np.indices(lab.shape)[0] < 14)
    probs[REDUCED.lesion][big] = 0.6  # the 125-voxel lesion: p 0.6 (a call)
    probs[2][big], probs[3][big] = 0.1, 0.3
    weak = np.zeros(lab.shape, bool)
    weak[3:6, 12:15, 12:15] = True  # in WM, bright on FLAIR, lesion the largest class but p 0.4 < 0.5
    probs[REDUCED.lesion][weak], probs[2][weak], probs[3][weak] = 0.4, 0.3, 0.3
    flair = flair.copy()
    flair[weak] = 1.2
    mask = lab > 0
    for refine_native in (True, False):
        out = finish(probs, {"T1": t1, "FLAIR": flair}, ["T1", "FLAIR"], REDUCED, (1.0, 1.0, 1.0), mask=mask,
                     refine_native=refine_native)
        assert (out.labels[big] == REDUCED.lesion).all()
        assert not (out.labels[weak] == REDUCED.lesion).any() and (out.labels[weak] != 0).all()
        assert ((out.labels == REDUCED.lesion) & ~big).sum() == 0


def test_auto_power_trusts_a_right_prior_more_than_a_partly_wrong_one():
    """power="auto" (choose_power) weighs the network's prior by how well the scan's own
    intensities fit it: a prior right everywhere gets a larger τ than one wrong on a third
    of the voxels, and there the chosen τ refines better than trusting the prior fully."""
    from napari_medseg.methods.joint_lesion_tissue.postprocess import POWERS, choose_power

    rng = np.random.default_rng(0)
    n = 30000
    z = rng.integers(0, 3, n)
    x = (np.array([0.2, 0.5, 0.8])[z] + rng.normal(0, 0.08, n)).astype(np.float32)[:, None]

    def prior(wrong: float) -> np.ndarray:
        w = z.copy()
        m = rng.random(n) < wrong
        w[m] = (z[m] + rng.integers(1, 3, m.sum())) % 3
        p = np.full((3, n), 0.1, np.float32)
        p[w, np.arange(n)] = 0.8
        return p

    right, partly = prior(0.0), prior(0.3)
    tau_right, scores = choose_power(right, x)
    tau_partly, _ = choose_power(partly, x)
    assert set(scores) == set(POWERS) and tau_right > tau_partly
    acc = {t: float((refine(partly, x, power=t).argmax(0) == z).mean()) for t in (tau_partly, max(POWERS))}
    assert acc[tau_partly] > acc[max(POWERS)] + 0.05
