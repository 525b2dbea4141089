"""Data for issue 7: the cardiac, tumour and multi-site phantoms, Chen's slice mapping, JSD."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.adversarial_segmentation import cardiac
from napari_medseg.methods.modality_transfer import tumour
from napari_medseg.methods.site_normalization import sites
from napari_medseg.methods.adversarial_segmentation.cardiac import LV, MYO, RV, map_slices, pseudo_masks
from napari_medseg.methods.site_normalization.sites import check_domains, histogram_jsd
from napari_medseg.core.intensity import percentile_scale
from napari_medseg.methods.modality_transfer.tumour import ED, ET, NCR_NET

SMALL, SPACING = (48, 56, 48), (3.0, 3.0, 3.0)


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def patient():
    return cardiac.cardiac_patient(seed=3)


@pytest.fixture(scope="module")
def cohort():
    return cardiac.cardiac_cohort(9, seed=1, size=(64, 64))


@pytest.fixture(scope="module")
def hg():
    return tumour.tumour_subject(seed=1, shape=SMALL, spacing=SPACING, grade="HG")


@pytest.fixture(scope="module")
def two_sites():
    return sites.multi_site(2, seed=2, shape=SMALL, spacing=SPACING)


# --- cardiac -----------------------------------------------------------------------------

def test_cardiac_is_deterministic_per_seed(patient):
    again = cardiac.cardiac_patient(seed=3)
    other = cardiac.cardiac_patient(seed=4)
    for s in cardiac.SEQUENCES:
        np.testing.assert_array_equal(patient.images[s], again.images[s])
        np.testing.assert_array_equal(patient.labels[s], again.labels[s])
    np.testing.assert_array_equal(patient.scar, again.scar)
    assert any(patient.images[s].shape != other.images[s].shape
               or not np.array_equal(patient.labels[s], other.labels[s]) for s in cardiac.SEQUENCES)


def test_cardiac_stacks_labels_and_slice_counts(patient):
    for s in cardiac.SEQUENCES:
        img, lab = patient.images[s], patient.labels[s]
        assert img.dtype == np.float32 and lab.dtype == np.uint8
        assert img.shape == lab.shape and img.shape[1:] == (96, 96)
        assert set(np.unique(lab)) == {0, LV, MYO, RV}
        lo, hi = cardiac.DEFAULT_SLICES[s]
        assert lo <= len(img) <= hi
    n = {s: len(patient.images[s]) for s in cardiac.SEQUENCES}
    assert n["T2"] < n["bSSFP"] and n["T2"] < n["LGE"]
    p = cardiac.cardiac_patient(0, size=(64, 80), slices={"bSSFP": 12, "T2": 5, "LGE": 10})
    assert [len(p.images[s]) for s in cardiac.SEQUENCES] == [12, 5, 10]
    assert p.images["LGE"].shape[1:] == (64, 80) and p.scar.shape == p.labels["LGE"].shape


def test_cardiac_anatomy_shrinks_from_base_to_apex(patient):
    lab = patient.labels["bSSFP"]
    lv = (lab == LV).sum(axis=(1, 2))
    assert lv[0] > 3 * lv[-1] and np.all(np.diff(lv) <= lv[0] * 0.05)
    assert (lab[0] == RV).sum() > 100 and (lab[-1] == RV).sum() == 0  # no RV at the apex


def test_cardiac_contrasts(patient):
    def mean(s, mask):
        return float(patient.images[s][mask].mean())

    lab = patient.labels
    assert mean("bSSFP", lab["bSSFP"] == LV) > 2 * mean("bSSFP", lab["bSSFP"] == MYO)  # bright blood
    assert mean("T2", lab["T2"] == MYO) > 2 * mean("T2", lab["T2"] == LV)  # black blood
    scar = patient.scar.astype(bool)
    healthy = (lab["LGE"] == MYO) & ~scar
    assert scar.any() and np.all(lab["LGE"][scar] == MYO)  # scar lies in the myocardium
    assert mean("LGE", scar) > 2 * mean("LGE", healthy)
    assert mean("LGE", lab["LGE"] == LV) > 2 * mean("LGE", healthy)


def test_map_slices_hand_computed():
    assert map_slices(10, 4).tolist() == [0, 2, 5, 7]
    assert map_slices(4, 10).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert map_slices(6, 6).tolist() == list(range(6))
    assert map_slices(1, 3).tolist() == [0, 0, 0]
    for n, m in [(3, 17), (12, 10), (7, 5)]:
        j = map_slices(n, m)
        assert len(j) == m and j[0] == 0 and j.max() < n and np.all(np.diff(j) >= 0)


@pytest.mark.parametrize("n, m", [(0, 4), (10, 0)])
def test_map_slices_without_slices_is_an_input_error(n, m):
    with pytest.raises(InputError, match="no slices in common"):
        map_slices(n, m)


def test_pseudo_masks_copy_the_mapped_source_slices(patient):
    src = patient.labels["bSSFP"][:10]
    out = pseudo_masks(src, 4, target_shape=(96, 96))
    np.testing.assert_array_equal(out, src[[0, 2, 5, 7]])
    with pytest.raises(InputError, match="in-plane"):
        pseudo_masks(src, 4, target_shape=(64, 64))
    with pytest.raises(InputError, match="stack"):
        pseudo_masks(src[0], 4)
    with pytest.raises(InputError, match="no slices in common"):
        pseudo_masks(src[:0], 4)


def test_pseudo_masks_are_close_to_but_not_the_lge_truth(patient):
    masks = cardiac.patient_pseudo_masks(patient)
    truth = patient.labels["LGE"]
    for source, pm in masks.items():
        assert pm.shape == truth.shape
        d = [dice(pm == c, truth == c) for c in (LV, MYO, RV)]
        assert 0.45 < np.mean(d) < 0.99, (source, d)  # weak labels: overlapping, not exact


def test_cohort_layout_follows_mscmr(cohort):
    roles = [c.role for c in cohort]
    assert roles == ["fully labelled"] + ["partly labelled"] * 6 + ["unlabelled"] * 2
    assert cohort[0].labelled == ("bSSFP", "T2", "LGE")
    assert all(c.labelled == ("bSSFP", "T2") for c in cohort[1:7])
    assert all(c.labels == {} and set(c.truth) == set(cardiac.SEQUENCES) for c in cohort[7:])
    assert len({c.id for c in cohort}) == 9 and cohort[0].id == "patient01"
    assert cohort[3].images["LGE"].shape[1:] == (64, 64)
    with pytest.raises(InputError, match="do not fit"):
        cardiac.cardiac_cohort(3, n_fully_labelled=2, n_unlabelled=2)
    with pytest.raises(InputError, match="Unknown sequence"):
        cardiac.cardiac_cohort(3, labelled_sequences=("cine",))


def test_patient_without_needed_sequences_gets_one_clear_message(cohort):
    masks = cardiac.patient_pseudo_masks(cohort[2])
    assert set(masks) == {"bSSFP", "T2"} and len(masks["T2"]) == len(cohort[2].images["LGE"])
    with pytest.raises(InputError, match="patient08 has no labels on bSSFP or T2"):
        cardiac.patient_pseudo_masks(cohort[7])
    with pytest.raises(InputError, match="no cine slices"):
        cardiac.patient_pseudo_masks(cohort[2], target="cine")


def test_from_mscmr_values():
    raw = np.array([[0, 500, 200], [600, 421, 200]])
    assert cardiac.from_mscmr(raw).tolist() == [[0, LV, MYO], [RV, 0, MYO]]


# --- tumour ------------------------------------------------------------------------------

def test_tumour_is_deterministic_with_brats_regions(hg):
    again = tumour.tumour_subject(seed=1, shape=SMALL, spacing=SPACING, grade="HG")
    for m in tumour.MODALITIES:
        np.testing.assert_array_equal(hg.images[m], again.images[m])
        assert hg.images[m].shape == SMALL and hg.images[m].dtype == np.float32
    assert set(np.unique(hg.regions)) == {0, NCR_NET, ED, ET}
    np.testing.assert_array_equal(hg.whole, hg.regions > 0)
    assert not hg.tissue[hg.whole > 0].any() and hg.whole.sum() > 100
    lg = tumour.tumour_subject(seed=2, shape=SMALL, spacing=SPACING, grade="LG")
    assert ET not in lg.regions and NCR_NET in lg.regions


def test_tumour_contrasts(hg):
    def mean(m, mask):
        return float(hg.images[m][mask].mean())

    wm = hg.tissue == 3
    assert mean("FLAIR", hg.regions == ED) > 1.3 * mean("FLAIR", wm)  # oedema bright on FLAIR
    assert mean("T2", hg.whole > 0) > 1.3 * mean("T2", wm)
    assert mean("T1c", hg.regions == ET) > 1.2 * mean("T1c", wm)  # enhancing rim on T1c only
    assert mean("T1", hg.regions == ET) < mean("T1", wm)
    assert mean("T1", hg.regions == NCR_NET) < 0.7 * mean("T1", wm)
    assert np.all(hg.images["FLAIR"][hg.tissue + hg.whole == 0] == 0)  # skull-stripped


def test_percentile_scale():
    rng = np.random.default_rng(0)
    img = rng.normal(5.0, 2.0, (40, 50)).astype(np.float32)
    img[0, 0], img[0, 1] = 1e6, -1e6  # outliers
    out = percentile_scale(img, 2, 98)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert 0.015 < (out == 0).mean() < 0.025 and 0.015 < (out == 1).mean() < 0.025
    assert 0.45 < np.median(out) < 0.55
    assert np.all(percentile_scale(np.full((4, 4), 3.0)) == 0)
    with pytest.raises(InputError, match="Percentiles"):
        percentile_scale(img, 98, 2)
    with pytest.raises(InputError, match="empty"):
        percentile_scale(np.zeros((0, 3)))


def test_tumour_slices_split_by_subject():
    d = tumour.tumour_slices(5, seed=1, modalities=("FLAIR", "T1c"), shape=(32, 40, 32), spacing=(4.5,) * 3)
    subjects = d["subjects"]
    assert sorted(sum(subjects.values(), [])) == list(range(5))
    assert all(subjects[k] for k in ("train", "val", "test"))
    for k in ("train", "val", "test"):
        part = d[k]
        n = len(part["mask"])
        assert n > 0 and set(part["subject"].tolist()) == set(subjects[k])
        assert set(part["images"]) == {"FLAIR", "T1c"} and part["images"]["FLAIR"].shape == (n, 32, 40)
        assert part["images"]["T1c"].min() >= 0 and part["images"]["T1c"].max() <= 1
        assert set(np.unique(part["mask"])) <= {0, 1}
    assert d["grades"].count("LG") == 1
    with pytest.raises(InputError, match="at least one subject"):
        tumour.tumour_slices(2, shape=(32, 40, 32), spacing=(4.5,) * 3)


# --- sites -------------------------------------------------------------------------------

def test_sites_same_anatomy_different_contrast(two_sites):
    assert list(two_sites) == ["infant", "adult"]
    again = sites.multi_site(2, seed=2, shape=SMALL, spacing=SPACING)
    np.testing.assert_array_equal(two_sites["adult"][1][0], again["adult"][1][0])

    def gm_wm_contrast(pairs):
        gm = np.mean([img[lab == 2].mean() for img, lab in pairs])
        wm = np.mean([img[lab == 3].mean() for img, lab in pairs])
        return abs(wm - gm) / (wm + gm)

    for pairs in two_sites.values():
        for img, lab in pairs:
            assert img.shape == lab.shape == SMALL and set(np.unique(lab)) == {0, 1, 2, 3}
            assert np.all(img[lab == 0] == 0)
    assert gm_wm_contrast(two_sites["adult"]) > 0.15 > 0.06 > gm_wm_contrast(two_sites["infant"])


def test_adult_site_has_thick_slices():
    from dataclasses import replace

    from napari_medseg.core.phantoms.brain import brain_phantom

    tissue = brain_phantom(SMALL, 4, "reduced", lesions=False, spacing=SPACING).tissue
    brain = tissue > 0

    def z_over_x(img):  # mean intensity step between brain neighbours along z, relative to x
        steps = []
        for axis in (2, 0):
            b, im = np.moveaxis(brain, axis, 0), np.moveaxis(img, axis, 0)
            steps.append(np.abs(np.diff(im, axis=0))[b[1:] & b[:-1]].mean())
        return steps[0] / steps[1]

    thick = sites.render_site(tissue, sites.ADULT, np.random.default_rng(0))
    thin = sites.render_site(tissue, replace(sites.ADULT, slice_thickness=1), np.random.default_rng(0))
    assert thick.shape == thin.shape == SMALL
    assert z_over_x(thick) < 0.9 * z_over_x(thin)  # smoother along z only


def test_k_sites_slices_and_paired_subjects():
    d = sites.multi_site(1, sites=3, seed=0, shape=(32, 40, 32), spacing=(4.5,) * 3, as_slices=True,
                         same_subjects=True)
    assert list(d) == ["infant", "adult", "site2"]
    assert len({len(v) for v in d.values()}) == 1 and all(p[0].ndim == 2 for v in d.values() for p in v)
    np.testing.assert_array_equal(d["infant"][0][1], d["site2"][0][1])  # same subject, same labels
    with pytest.raises(InputError, match="two or more sites"):
        sites.multi_site(1, sites=1)


def test_histogram_jsd(two_sites):
    a = [img for img, _ in two_sites["infant"]]
    b = [img for img, _ in two_sites["adult"]]
    masks = ([lab > 0 for _, lab in two_sites["infant"]], [lab > 0 for _, lab in two_sites["adult"]])
    assert histogram_jsd(a[0], a[0]) == 0.0
    ab = histogram_jsd(a, b, mask=masks)
    assert 0.05 < ab <= 1.0
    assert ab == pytest.approx(histogram_jsd(b, a, mask=masks[::-1]), abs=1e-12)
    # hand-computed, base 2: P = (1/2, 1/2), Q = (1, 0) -> 0.5 * (KL(P|M) + KL(Q|M)) = 0.3113
    jsd = histogram_jsd(np.array([0.1, 0.9]), np.array([0.1, 0.1]), bins=2, value_range=(0, 1))
    assert jsd == pytest.approx(0.5 * (0.5 * np.log2(2 / 3) + 0.5 * np.log2(2) + np.log2(4 / 3)), abs=1e-9)
    assert histogram_jsd(np.zeros(50), np.ones(50), bins=8) == pytest.approx(1.0)  # disjoint: the bound
    with pytest.raises(InputError, match="empty"):
        histogram_jsd(a[0], b[0], mask=np.zeros(SMALL, bool))


def test_check_domains(two_sites):
    assert check_domains(two_sites) == 3
    img, lab = two_sites["adult"][0]
    with pytest.raises(InputError, match="two or more domains"):
        check_domains({"adult": two_sites["adult"]})
    with pytest.raises(InputError, match="'infant' has 1 image"):
        check_domains({"infant": [img], "adult": two_sites["adult"]})
    with pytest.raises(InputError, match="labels must be on the image's grid"):
        check_domains({"a": [(img, lab), (img, lab[:, :, :-1])], "b": two_sites["adult"]})
    with pytest.raises(InputError, match="mix 2-D and 3-D"):
        check_domains({"a": [img[:, :, 10], img[:, :, 20]], "b": [img, img]})
    with pytest.raises(InputError, match="NaN"):
        check_domains({"a": [img, np.full((4, 4, 4), np.nan)], "b": [img, img]})
    assert check_domains({"a": [img[:, :, 10], img[:, :, 20]], "b": [(img[:, :, 5], None)] * 2}) == 2
