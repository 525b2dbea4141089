"""Domain-randomised training scans (issue 16): random contrast in the right order, skull or none."""

import numpy as np
import pytest

from napari_medseg.methods.joint_lesion_tissue.labels import REDUCED
from napari_medseg.methods.joint_lesion_tissue.synth import (averaged, cut_outer_csf, flair_means,
                                                            randomised_subject, randomised_training_data,
                                                            render_average, t1_means)
from napari_medseg.core.phantoms.brain import CSF, GM, LESION, WM

SHAPE = (40, 44, 40)


def test_class_means_keep_the_tissue_order_but_vary():
    t1s = np.array([t1_means(np.random.default_rng(i)) for i in range(50)])
    fls = np.array([flair_means(np.random.default_rng(i)) for i in range(50)])
    assert (t1s[:, CSF] < t1s[:, GM]).all() and (t1s[:, GM] < t1s[:, WM]).all()
    assert (fls[:, CSF] < fls[:, WM]).all() and (fls[:, WM] < fls[:, GM]).all() and (fls[:, LESION] > fls[:, GM]).all()
    assert t1s[:, GM].std() > 0.05 and fls[:, LESION].std() > 0.05  # really random, not a fixed contrast


def test_subject_is_deterministic_and_labels_follow_the_intensities():
    a, b = randomised_subject(3, SHAPE), randomised_subject(3, SHAPE)
    assert np.array_equal(a["T1"], b["T1"]) and np.array_equal(a["labels"], b["labels"])
    c = randomised_subject(4, SHAPE)
    assert not np.allclose(a["T1"], c["T1"])
    for s in (a, c):
        lab, t1, fl = s["labels"], s["T1"], s["FLAIR"]
        med = [float(np.median(t1[lab == k])) for k in (1, 2, 3)]  # CSF, GM, WM in the reduced set
        assert med[0] < med[1] < med[2]
        if (lab == REDUCED.lesion).sum() > 20:
            assert np.median(fl[lab == REDUCED.lesion]) > np.median(fl[lab == 2])
        assert s["T1"].dtype == np.float32 and set(np.unique(lab)) <= set(range(REDUCED.n_classes))


def test_skull_stripped_and_not():
    seen = {True: None, False: None}
    for seed in range(12):
        s = randomised_subject(seed, SHAPE, lesions=False, flair=False)
        seen[s["stripped"]] = s
    assert all(v is not None for v in seen.values())  # both kinds are drawn
    stripped, skull = seen[True], seen[False]
    assert (stripped["T1"][~stripped["brain"]] == 0).all()
    outside = ~skull["brain"]
    assert (skull["T1"][outside] > 0.1).mean() > 0.05  # skull and scalp carry signal
    assert "FLAIR" not in stripped and stripped["lesion"].sum() == 0


def test_training_data_is_preprocessed_and_task_specific():
    controls, patients, val = randomised_training_data(2, 2, 1, seed=1, shape=SHAPE, spacing=(4.0, 4.0, 4.0))
    assert "FLAIR" not in controls[0] and {"T1", "tissue"} <= set(controls[0])
    assert {"T1", "FLAIR", "lesion"} <= set(patients[0]) and "labels" in val[0]
    brain = val[0]["labels"] > 0
    assert abs(float(val[0]["T1"][brain].mean())) < 0.7  # z-normalised inside the head or brain
    assert controls[0]["tissue"].max() <= 3 and controls[0]["tissue"].any()


def test_varied_anatomy_draws_the_proportions_and_the_fixed_one_does_not():
    """``vary_anatomy``: extra-cerebral CSF, sulci, cortex and ventricles drawn per subject
    (atrophy-like variation); without it the same label map proportions as the fixed phantom."""
    from napari_medseg.core.phantoms.brain import FIXED_PROPORTIONS, _proportions

    def csf_fraction(seed, vary):
        t = randomised_subject(seed, SHAPE, (4.0, 4.0, 4.0), lesions=False, vary_anatomy=vary)["tissue"]
        return float((t == 1).sum() / (t > 0).sum())

    fixed = [csf_fraction(s, False) for s in range(6)]
    varied = [csf_fraction(s, True) for s in range(6)]
    assert np.ptp(varied) > 1.5 * np.ptp(fixed)  # CSF volume varies much more between subjects
    a, b = (randomised_subject(7, SHAPE, vary_anatomy=True) for _ in range(2))
    assert np.array_equal(a["labels"], b["labels"])  # still deterministic in the seed
    rng = np.random.default_rng(0)
    assert _proportions(rng, False) == FIXED_PROPORTIONS and rng.random() == np.random.default_rng(0).random()


def test_template_like_subject_averages_registered_subjects_into_a_t1_template():
    from napari_medseg.core.errors import InputError
    from napari_medseg.core.phantoms.brain import draw_anatomy
    from napari_medseg.methods.joint_lesion_tissue.synth import template_like_subject

    shape, spacing = (40, 44, 40), (4.0, 4.0, 4.0)
    a = template_like_subject(5, n_subjects=3, shape=shape, spacing=spacing)
    b = template_like_subject(5, n_subjects=3, shape=shape, spacing=spacing)
    np.testing.assert_array_equal(a["T1"], b["T1"])
    np.testing.assert_array_equal(a["reference"] > 0, a["mask"])
    assert set(np.unique(a["reference"])) == {0, 1, 2, 3} and (a["T1"][~a["mask"]] == 0).all()
    mean = [float(a["T1"][a["reference"] == c].mean()) for c in (1, 2, 3)]
    assert mean[0] < mean[1] < mean[2]  # T1-like: CSF < grey < white matter
    # subjects sharing the shape generator share the brain's outline; the detail one changes proportions
    rng = lambda *s: np.random.default_rng(list(s))  # noqa: E731
    one = draw_anatomy(rng(5, 0), shape, spacing, False, vary=True, detail=rng(5, 2, 0))[1]
    two = draw_anatomy(rng(5, 0), shape, spacing, False, vary=True, detail=rng(5, 2, 1))[1]
    brain_overlap = ((one > 0) & (two > 0)).sum() / max((one > 0).sum(), 1)
    assert brain_overlap > 0.9 and (one != two).any()
    with pytest.raises(InputError, match="at least 2"):
        template_like_subject(5, n_subjects=1, shape=shape, spacing=spacing)


def test_folded_cortex_is_thin_and_gyrified_and_p_folded_zero_changes_nothing():
    from scipy.ndimage import distance_transform_edt

    from napari_medseg.core.phantoms.brain import draw_anatomy

    shape, spacing = (64, 72, 64), (2.0, 2.0, 2.0)

    def grey_depth(folded):  # how far cortical grey matter lies from white matter (mm), and the fractions
        _, tissue, _, _ = draw_anatomy(np.random.default_rng(1), shape, spacing, False, folded=folded)
        d = distance_transform_edt(tissue != WM, sampling=spacing)[tissue == GM]
        n = (tissue > 0).sum()
        return np.median(d), [(tissue == c).sum() / n for c in (CSF, GM, WM)]

    shell, _ = grey_depth(False)
    folded, (csf, gm, wm) = grey_depth(True)
    assert folded <= 3.5 < shell  # a cortex of real thickness (2-3.5 mm) against the phantom's thick ribbon
    assert 0.1 < csf < 0.3 and 0.2 < gm < 0.55 and 0.3 < wm < 0.6  # adult proportions, roughly
    a = randomised_subject(3, SHAPE, p_folded=1.0)
    assert a["folded"] and not randomised_subject(3, SHAPE)["folded"]
    np.testing.assert_array_equal(randomised_subject(3, SHAPE, p_folded=0.0)["T1"], randomised_subject(3, SHAPE)["T1"])
    assert [randomised_subject(s, SHAPE, p_folded=0.5)["folded"] for s in range(12)].count(True) in range(2, 11)


def test_surface_cerebrum_is_a_closed_real_cortex_of_real_thickness():
    """fsaverage5's white and pial surfaces, voxelised: closed, nested, about 2-4 mm apart."""
    from napari_medseg.core.phantoms import surface

    white, pial, origin, step = surface.cortex_distances()
    inside_white, inside_pial = white <= 0, pial <= 0
    assert (inside_white & inside_pial).sum() >= 0.99 * inside_white.sum()  # white matter lies under the cortex
    for volume_ml, (lo, hi) in ((inside_white.sum() * step**3 / 1000, (500, 1000)),
                                (inside_pial.sum() * step**3 / 1000, (900, 1400))):
        assert lo < volume_ml < hi  # an adult cerebrum (a leak would fill the box, a hole empty it)
    vertices, _ = surface.read_mesh("white_left")
    thickness = -surface.sample(pial, vertices.T, origin, step)  # how deep each white-surface vertex lies under the pial
    assert 2.0 < np.median(thickness) < 4.5
    assert surface.sample(pial, [np.array([500.0])] * 3, origin, step)[0] > 0  # far away is outside


def test_surface_subjects_fold_like_a_brain_and_p_surface_zero_changes_nothing():
    a = randomised_subject(11, (64, 72, 64), (2.5, 2.5, 2.5), p_surface=1.0, lesions=False)
    b = randomised_subject(11, (64, 72, 64), (2.5, 2.5, 2.5), p_surface=1.0, lesions=False)
    assert a["surface"] and not a["folded"]
    np.testing.assert_array_equal(a["tissue"], b["tissue"])  # deterministic in the seed
    tissue = a["tissue"]
    n = (tissue > 0).sum()
    csf, gm, wm = ((tissue == c).sum() / n for c in (CSF, GM, WM))
    assert 0.1 < csf < 0.4 and 0.2 < gm < 0.5 and 0.3 < wm < 0.6
    # gyri: the cortex's outer boundary is far more folded than a smooth hull's
    from scipy import ndimage

    brain = ndimage.binary_fill_holes((tissue == GM) | (tissue == WM))
    hull = ndimage.binary_closing(np.pad(brain, 4), iterations=4)[4:-4, 4:-4, 4:-4]
    assert (hull & ~brain).sum() > 0.05 * brain.sum()
    other = randomised_subject(12, (64, 72, 64), (2.5, 2.5, 2.5), p_surface=1.0, lesions=False)["tissue"]
    assert (other != tissue).mean() > 0.05  # another warp, size, mirror and thickness
    assert not randomised_subject(3, SHAPE)["surface"]
    np.testing.assert_array_equal(randomised_subject(3, SHAPE, p_surface=0.0)["T1"], randomised_subject(3, SHAPE)["T1"])
    draws = [randomised_subject(s, SHAPE, p_surface=0.5, p_folded=1.0) for s in range(10)]
    assert all(d["surface"] != d["folded"] for d in draws)  # the rest are gyrified with folded share 1
    assert [d["surface"] for d in draws].count(True) in range(2, 9)


def test_surface_cerebrum_without_nilearn_is_one_clear_error(monkeypatch):
    import importlib.util

    from napari_medseg.core.errors import InputError
    from napari_medseg.core.phantoms import surface

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(InputError, match="nilearn"):
        surface.read_mesh("pial_left")


def test_an_average_loses_thin_structures_and_keeps_thick_ones():
    """Smoothing the class indicators (σ 0.5-2.5 mm; at 0.5 mm voxels 1-5 voxels): a sheet one
    voxel thick is gone from the arg-max, a slab 12 voxels thick is still there."""
    classes = np.full((40, 30, 30), WM, np.uint8)
    classes[10] = CSF  # a thin sheet
    classes[24:36] = GM  # a thick slab
    for seed in range(4):
        p = averaged(np.random.default_rng(seed), classes, (0.5, 0.5, 0.5))
        assert p.shape[1:] == classes.shape and np.allclose(p.sum(0), 1.0, atol=1e-5) and p.min() >= 0
        top = np.argmax(p, 0)
        assert not (top[8:13] == CSF).any() and (top[27:33] == GM).all() and (top[0:6] == WM).all()
        assert 0.0 < p[CSF, 10].mean() < 0.5  # the sheet is still in the probabilities, diluted


def test_an_average_mixes_the_class_intensities_linearly():
    rng = np.random.default_rng(5)
    means = t1_means(rng)
    probs = np.zeros((len(means), 3, 24, 24), np.float32)
    probs[CSF, 0], probs[WM, 2] = 1.0, 1.0
    probs[CSF, 1], probs[WM, 1] = 0.5, 0.5  # a partial-volume plane between the two
    img = render_average(np.random.default_rng(6), probs, means, None)
    csf, mix, wm = (float(np.median(img[k])) for k in range(3))
    assert csf < mix < wm and abs(mix - 0.5 * (csf + wm)) < 0.15 * (wm - csf)
    outside = np.zeros((3, 24, 24), bool)
    outside[:, :4] = True
    assert (render_average(np.random.default_rng(6), probs, means, outside)[outside] == 0).all()


def test_average_subjects_are_an_option_that_leaves_other_seeds_alone():
    a = randomised_subject(21, SHAPE, lesions=False, flair=False, p_average=1.0)
    assert a["average"] and a["T1"].dtype == np.float32
    plain = randomised_subject(21, SHAPE, lesions=False, flair=False)
    assert not plain["average"]
    np.testing.assert_array_equal(randomised_subject(21, SHAPE, lesions=False, flair=False, p_average=0.0)["T1"],
                                  plain["T1"])
    lab, t1 = a["tissue"], a["T1"]
    med = [float(np.median(t1[lab == k])) for k in (1, 2, 3)]
    assert med[0] < med[1] < med[2]
    # the image follows the (smoothed) labels closely: little noise, unlike a plain subject
    for s in (a, plain):
        inside = s["tissue"] == 3
        s["spread"] = float(np.std(s["T1"][inside]) / np.median(s["T1"][inside]))
    assert a["spread"] < plain["spread"]


def test_a_closer_cut_removes_only_outer_csf():
    z, y, x = np.mgrid[:48, :48, :48] - 23.5
    r = np.sqrt(z * z + y * y + x * x)
    drawn = np.full(r.shape, 0, np.uint8)
    drawn[r < 20] = CSF
    drawn[r < 16] = GM
    drawn[r < 12] = WM
    drawn[r < 3] = CSF  # a ventricle, deep inside
    removed_any = False
    for seed in range(6):
        cut = cut_outer_csf(np.random.default_rng(seed), drawn, (1.0, 1.0, 1.0))
        gone = (drawn != 0) & (cut == 0)
        assert (drawn[gone] == CSF).all() and (r[gone] > 15.0).all()  # only the outer CSF, within 4 mm (+1 voxel)
        assert (cut[drawn != CSF] == drawn[drawn != CSF]).all() and (cut[r < 3] == CSF).all()
        removed_any |= bool(gone.any())
    assert removed_any


def test_tight_masks_apply_to_stripped_subjects_only_and_leave_other_seeds_alone():
    for seed in range(6):
        plain = randomised_subject(seed, SHAPE, lesions=False, flair=False)
        tight = randomised_subject(seed, SHAPE, lesions=False, flair=False, p_tight=1.0)
        if not plain["stripped"]:  # nothing drawn, nothing changed
            np.testing.assert_array_equal(tight["T1"], plain["T1"])
            continue
        assert (tight["T1"][~tight["brain"]] == 0).all()
        assert tight["brain"].sum() <= plain["brain"].sum()
        assert ((plain["tissue"] != tight["tissue"]) <= (plain["tissue"] == 1)).all()  # only CSF was taken off
    np.testing.assert_array_equal(randomised_subject(3, SHAPE, p_tight=0.0)["T1"], randomised_subject(3, SHAPE)["T1"])
