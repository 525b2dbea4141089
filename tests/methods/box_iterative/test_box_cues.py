"""Cues 1 and Cues 2 of Gupta et al. (2019) on hand-made slides with known answers; box- and block-wise reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from skimage.measure import label, regionprops

from napari_medseg.core.errors import InputError
from napari_medseg.methods.box_iterative import cues
from napari_medseg.methods.box_iterative.cues import Cues2, ObjectProps
from napari_medseg.methods.box_iterative.labels import BACKGROUND, GLOMERULUS, UNKNOWN


class Guarded:
    """A slide that refuses to be read or written whole: every access must be at most ``limit`` pixels."""

    def __init__(self, a, limit):
        self.a, self.limit, self.shape, self.dtype = a, limit, a.shape, a.dtype

    def __getitem__(self, key):
        block = np.asarray(self.a[key])
        assert block.size <= self.limit, f"read {block.shape} at once"
        return block

    def __setitem__(self, key, value):
        assert np.asarray(self.a[key]).size <= self.limit, "wrote too much at once"
        self.a[key] = value

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole slide was read")


def zarr_like(tmp_path, name, a, fill=None):
    z = zarr.open_array(str(tmp_path / name), mode="w", shape=a.shape, dtype=a.dtype, chunks=(8, 8))
    z[...] = a if fill is None else fill
    return z


def stage1_slide():
    """Box A kept (foreground leaks out of it), box B missed, box C under-covered, a false positive blob."""
    pred = np.zeros((20, 30), np.uint8)
    pred[3:8, 2:10] = 1  # 30 px inside A = [2, 2, 8, 8], 10 px outside every box
    pred[4:6, 13:15] = 1  # 4 px inside C = [2, 12, 8, 18]
    pred[14:17, 20:24] = 1  # 12 px outside every box
    pred[0, 29] = UNKNOWN  # not foreground
    boxes = np.array([[2, 2, 8, 8], [10, 2, 16, 8], [2, 12, 8, 18]], np.int64)
    want = np.zeros_like(pred)
    want[3:8, 2:8] = GLOMERULUS
    want[10:16, 2:8] = GLOMERULUS
    want[2:8, 12:18] = GLOMERULUS
    return pred, boxes, want


def test_cues1_resets_missed_and_under_covered_boxes_and_removes_foreground_outside_boxes():
    pred, boxes, want = stage1_slide()
    out = np.full(pred.shape, 7, np.uint8)  # stale content must be cleared
    rep = cues.cues_stage1(pred, boxes, out)
    np.testing.assert_array_equal(out, want)
    assert (rep.n_boxes, rep.n_missed, rep.n_under_covered, rep.n_kept) == (3, 1, 1, 1)
    assert rep.fp_pixels_removed == 22 and rep.n_fixed_pixels == 0
    np.testing.assert_allclose(rep.coverage, [30 / 36, 0, 4 / 36])
    d = json.loads(json.dumps(rep.as_dict()))
    assert d["n_missed"] == 1 and d["coverage"][1] == 0.0


def test_cues1_works_box_and_block_wise_on_zarr(tmp_path):
    pred, boxes, want = stage1_slide()
    out = zarr_like(tmp_path, "out.zarr", pred, fill=9)
    rep = cues.cues_stage1(Guarded(pred, 64), boxes, Guarded(out, 64), block=8)
    np.testing.assert_array_equal(out[...], want)
    assert rep.fp_pixels_removed == 22 and rep.n_missed == 1


def test_cues1_half_coverage_is_kept_and_just_below_is_reset():
    pred = np.zeros((4, 4), np.uint8)
    pred[0, 0:4] = 1  # 4 of the 8 pixels of box [0, 0, 2, 4]
    out = np.zeros_like(pred)
    rep = cues.cues_stage1(pred, [[0, 0, 2, 4]], out)
    assert rep.n_kept == 1 and out[:2].sum() == 4
    pred[0, 3] = 0
    rep = cues.cues_stage1(pred, [[0, 0, 2, 4]], out)
    assert rep.n_under_covered == 1 and out[:2].sum() == 8 and out[2:].sum() == 0


def test_cues1_overlapping_boxes_are_judged_alone_and_united():
    pred = np.zeros((10, 10), np.uint8)
    pred[0:6, 0:4] = 1  # 24/36 of box 1, 3/36 of box 2
    out = np.zeros_like(pred)
    rep = cues.cues_stage1(pred, [[0, 0, 6, 6], [3, 3, 9, 9]], out)
    np.testing.assert_allclose(rep.coverage, [24 / 36, 3 / 36])
    want = np.zeros_like(pred)
    want[0:6, 0:4] = 1
    want[3:9, 3:9] = 1
    np.testing.assert_array_equal(out, want)
    assert (rep.n_kept, rep.n_under_covered, rep.fp_pixels_removed) == (1, 1, 0)


def test_cues1_never_overwrites_fixed_pixels(tmp_path):
    pred, boxes, want = stage1_slide()
    mask = np.zeros(pred.shape, bool)
    labels = np.zeros(pred.shape, np.uint8)
    mask[10:16, 2:8] = True  # the user drew the object in box B by hand
    labels[11:14, 3:6] = GLOMERULUS
    mask[14:17, 20:24] = True  # and kept the blob outside every box as a glomerulus
    labels[14:17, 20:24] = GLOMERULUS
    out = np.zeros_like(pred)
    rep = cues.cues_stage1(pred, boxes, out, fixed=(mask, labels))
    want[10:16, 2:8] = 0
    want[11:14, 3:6] = GLOMERULUS
    want[14:17, 20:24] = GLOMERULUS
    np.testing.assert_array_equal(out, want)
    assert rep.n_fixed_pixels == 48 and rep.fp_pixels_removed == 10
    zout = zarr_like(tmp_path, "o.zarr", pred)
    cues.cues_stage1(Guarded(pred, 64), boxes, Guarded(zout, 64), fixed=(Guarded(mask, 64), Guarded(labels, 64)),
                     block=8)
    np.testing.assert_array_equal(zout[...], want)


def test_cues1_without_boxes_makes_everything_background():
    pred, _, _ = stage1_slide()
    out = np.ones_like(pred)
    rep = cues.cues_stage1(pred, np.zeros((0, 4), np.int64), out)
    assert out.sum() == 0 and rep.fp_pixels_removed == 56 and rep.n_boxes == 0


def test_boxes_are_checked_and_clipped():
    np.testing.assert_array_equal(cues.check_boxes([[-3, -2, 5, 40]], (20, 30)), [[0, 0, 5, 30]])
    assert cues.check_boxes([[1, 2, 3, 4]], (20, 30)).dtype == np.int64
    for bad in ([1, 2, 3, 4], [[1, 2, 3]], [[5, 2, 5, 4]], [[1, 9, 3, 4]], [[25, 0, 30, 5]], [[0.5, 0, 2, 2]]):
        with pytest.raises(InputError):
            cues.check_boxes(bad, (20, 30))


def test_cues1_rejects_bad_input():
    pred, boxes, _ = stage1_slide()
    for out in (np.zeros(pred.shape, np.int32), np.zeros((20, 31), np.uint8)):
        with pytest.raises(InputError, match="output labels"):
            cues.cues_stage1(pred, boxes, out)
    out = np.zeros_like(pred)
    with pytest.raises(InputError, match="2-D"):
        cues.cues_stage1(pred[None], boxes, out)
    with pytest.raises(InputError, match="corrections"):
        cues.cues_stage1(pred, boxes, out, fixed=np.zeros(pred.shape, bool))
    with pytest.raises(InputError, match="corrections"):
        cues.cues_stage1(pred, boxes, out, fixed=(np.zeros((3, 3), bool), np.zeros((3, 3), np.uint8)))
    with pytest.raises(InputError, match="coverage"):
        cues.cues_stage1(pred, boxes, out, coverage=0)


def known_objects():
    img = np.zeros((12, 12), np.uint8)
    img[1:4, 1:5] = 1  # rectangle, area 12
    img[8, 8] = 1  # single pixel
    img[6, 1] = img[7, 2] = img[8, 3] = 1  # diagonal: one object with 8-connectivity
    img[10, 5:10] = 1  # horizontal line: eccentricity 1
    return img


def test_objects_known_answers():
    obj = sorted(cues.objects(known_objects()), key=lambda o: o.bbox)
    assert [o.bbox for o in obj] == [(1, 1, 4, 5), (6, 1, 9, 4), (8, 8, 9, 9), (10, 5, 11, 10)]
    assert [o.area for o in obj] == [12, 3, 1, 5]
    assert obj[0].centroid == pytest.approx((2.0, 2.5))
    assert obj[0].mask.shape == (3, 4) and obj[0].mask.all()
    np.testing.assert_array_equal(obj[1].mask, np.eye(3, dtype=bool))
    assert obj[3].eccentricity == pytest.approx(1.0) and obj[2].eccentricity == 0
    assert [o.bbox for o in cues.objects(known_objects(), min_area=3)] == [(1, 1, 4, 5), (6, 1, 9, 4), (10, 5, 11, 10)]


def blobs(rng, shape=(60, 70), n=45):
    img = np.zeros(shape, np.uint8)
    for _ in range(n):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        img[y:y + rng.integers(1, 6), x:x + rng.integers(1, 6)] = 1
    return img


def _key(o: ObjectProps):
    return o.bbox, o.area, o.mask.shape, o.mask.tobytes()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_objects_blockwise_equals_whole_image_each_object_once(seed):
    img = blobs(np.random.default_rng(seed))
    props = regionprops(label(img, connectivity=2))
    margin = max(max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1]) for p in props)
    whole = sorted(cues.objects(img, block=1000, margin=margin), key=lambda o: o.bbox)
    small = sorted(cues.objects(Guarded(img, (7 + 2 * margin) ** 2), block=7, margin=margin), key=lambda o: o.bbox)
    ref = sorted(props, key=lambda p: p.bbox)
    assert len(whole) == len(small) == len(ref) > 10
    assert [_key(o) for o in whole] == [_key(o) for o in small]
    assert [o.bbox for o in small] == [p.bbox for p in ref] and [o.area for o in small] == [p.area for p in ref]
    np.testing.assert_allclose([o.eccentricity for o in small], [p.eccentricity for p in ref], atol=1e-12)
    np.testing.assert_allclose([o.centroid for o in small], [p.centroid for p in ref], atol=1e-9)


def test_objects_wider_than_the_margin_raise_or_are_skipped():
    img = np.zeros((40, 40), np.uint8)
    img[5, 2:32] = 1  # 30 px long
    img[20:23, 20:23] = 1
    for block in (8, 100):
        with pytest.raises(InputError, match="margin"):
            list(cues.objects(img, block=block, margin=10))
        assert [o.bbox for o in cues.objects(img, block=block, margin=10, large="skip")] == [(20, 20, 23, 23)]
    with pytest.raises(InputError):
        cues.objects(img, large="maybe")
    with pytest.raises(InputError):
        cues.objects(img, margin=0)


def fake(area, ecc):
    return ObjectProps((0, 0, 1, 1), area, ecc, (0.0, 0.0), np.ones((1, 1), bool))


def test_shape_statistics_percentiles_and_round_trip():
    stats = cues.shape_statistics(fake(a, e) for a, e in zip(range(1, 101), np.linspace(0, 0.99, 100)))
    assert stats.area_range == pytest.approx((3.475, 97.525))
    assert stats.eccentricity_range == pytest.approx((0.99 * 0.025, 0.99 * 0.975))
    assert stats.n_objects == 100
    assert Cues2.from_dict(json.loads(json.dumps(stats.as_dict()))) == stats
    with pytest.raises(InputError, match="too few"):
        cues.shape_statistics([fake(10, 0.5)] * 4)
    for bad in ({"area_range": [1, 2]}, {"area_range": [5, 1], "eccentricity_range": [0, 1], "n_objects": 3}):
        with pytest.raises(InputError):
            Cues2.from_dict(bad)


def test_cues2_reasons_include_the_range_ends():
    stats = Cues2((10, 30), (0.2, 0.9), 50)
    assert stats.reasons(10, 0.2) == [] and stats.reasons(30, 0.9) == []
    assert stats.reasons(9, 0.95) == ["too_small", "too_eccentric"]
    assert stats.reasons(31, 0.1) == ["too_large", "too_round"]


def stage2_slide():
    img = np.zeros((40, 40), np.uint8)
    img[2:7, 2:7] = 1  # kept: area 25, eccentricity 0
    img[2:4, 20:22] = 1  # too small: 4
    img[20:27, 2:9] = 1  # too large: 49
    img[35, 5:20] = 1  # too eccentric: area 15, eccentricity 1
    return img


@pytest.mark.parametrize("outliers, rest", [("unknown", UNKNOWN), ("background", BACKGROUND)])
def test_cues2_keeps_objects_within_the_ranges(outliers, rest):
    img = stage2_slide()
    out = np.full(img.shape, 3, np.uint8)
    rep = cues.cues_stage2(img, Cues2((10, 30), (0.0, 0.9), 50), out, outliers=outliers)
    want = np.where(img > 0, rest, BACKGROUND)
    want[2:7, 2:7] = GLOMERULUS
    np.testing.assert_array_equal(out, want)
    assert (rep.n_objects, rep.n_kept, rep.n_outliers) == (4, 1, 3)
    assert rep.reasons == {"too_small": 1, "too_large": 1, "too_round": 0, "too_eccentric": 1, "oversized": 0}
    assert rep.as_dict()["outliers"] == outliers
    rep = cues.cues_stage2(img, Cues2((10, 30), (0.5, 0.9), 50), out, outliers=outliers)
    assert rep.n_kept == 0 and rep.reasons["too_round"] == 3 and not (out == GLOMERULUS).any()


def test_cues2_blockwise_on_zarr_with_corrections(tmp_path):
    img = stage2_slide()
    mask = np.zeros(img.shape, bool)
    mask[20:27, 2:9] = True  # the user vouched for the large object
    labels = mask.astype(np.uint8)
    want = np.zeros_like(img)
    cues.cues_stage2(img, Cues2((10, 30), (0.0, 0.9), 50), want, fixed=(mask, labels))
    assert (want[20:27, 2:9] == GLOMERULUS).all() and (want[35, 5:20] == UNKNOWN).all()
    out = zarr_like(tmp_path, "o.zarr", img, fill=5)
    limit = (8 + 2 * 16) ** 2
    rep = cues.cues_stage2(Guarded(img, limit), Cues2((10, 30), (0.0, 0.9), 50), Guarded(out, limit),
                           fixed=(Guarded(mask, limit), Guarded(labels, limit)), block=8, margin=16)
    np.testing.assert_array_equal(out[...], want)
    assert rep.n_fixed_pixels == 49 and rep.n_objects == 4


def test_cues2_objects_wider_than_the_margin_are_outliers():
    img = stage2_slide()
    out = np.zeros_like(img)
    rep = cues.cues_stage2(img, Cues2((10, 30), (0.0, 1.0), 50), out, margin=10)
    assert rep.reasons["oversized"] == 1 and rep.n_kept == 1 and (out[35, 5:20] == UNKNOWN).all()
    with pytest.raises(InputError):
        cues.cues_stage2(img, Cues2((10, 30), (0.0, 1.0), 50), out, outliers="drop")
    with pytest.raises(InputError, match="Cues 2"):
        cues.cues_stage2(img, {"area_range": [1, 2]}, out)


def test_fixed_from_correction_fixes_touched_objects_in_full():
    orig = np.zeros((12, 12), np.uint8)
    orig[1:4, 1:4] = 1  # A: the user extends it by a row
    orig[1:3, 8:10] = 1  # B: a false positive the user erases
    orig[8:10, 8:10] = 1  # D: untouched
    orig[6:9, 1:5] = 1  # E: the user trims its last column
    corr = orig.copy()
    corr[4, 1:4] = 1
    corr[1:3, 8:10] = 0
    corr[10:12, 0:2] = 2  # C: a new object, painted with another label value
    corr[6:9, 4] = 0
    corr[0, 11] = UNKNOWN
    mask, labels = cues.fixed_from_correction(orig, corr)
    want = np.zeros(orig.shape, bool)
    want[1:5, 1:4] = want[1:3, 8:10] = want[10:12, 0:2] = want[6:9, 1:5] = True
    want[0, 11] = True
    np.testing.assert_array_equal(mask, want)
    assert not mask[8:10, 8:10].any()
    assert labels[10, 0] == GLOMERULUS and labels[0, 11] == UNKNOWN and labels[1, 8] == BACKGROUND
    assert labels[7, 4] == BACKGROUND and labels[7, 3] == GLOMERULUS and labels.dtype == np.uint8
    with pytest.raises(InputError):
        cues.fixed_from_correction(orig, corr[:, :-1])


def test_cues1_with_the_ellipse_prior_resets_boxes_to_their_ellipses_with_unknown_corners():
    from napari_medseg.methods.box_iterative.boxes import box_prior_mask

    pred, boxes, _ = stage1_slide()
    out = np.zeros(pred.shape, np.uint8)
    rep = cues.cues_stage1(pred, boxes, out, prior="ellipse")
    assert (rep.n_missed, rep.n_under_covered, rep.n_kept) == (1, 1, 1)  # the same judgement as with boxes
    ell = box_prior_mask(6, 6, "ellipse")
    assert ell.sum() == 32 and not ell[0, 0] and ell[0, 2] and ell[3, 3]  # the inscribed disc: corners out
    for y0, x0, y1, x1 in boxes[1:]:  # missed (B) and under-covered (C): the ellipse, its corners unknown
        np.testing.assert_array_equal(out[y0:y1, x0:x1], np.where(ell, GLOMERULUS, UNKNOWN))
    np.testing.assert_array_equal(out[2:8, 2:8], (pred[2:8, 2:8] > 0) * GLOMERULUS)  # kept A: the prediction
    assert not out[:, 8:12].any() and not out[14:17, 20:24].any()  # outside the boxes: background
    with pytest.raises(InputError, match="box prior"):
        cues.cues_stage1(pred, boxes, out, prior="circle")


def test_the_ellipse_prior_never_unknowns_another_boxs_glomerulus():
    from napari_medseg.methods.box_iterative.boxes import fill_boxes

    boxes = np.array([[0, 0, 8, 8], [4, 4, 12, 12]])  # overlapping boxes of touching glomeruli
    lab = fill_boxes((14, 14), boxes, "ellipse")
    box = fill_boxes((14, 14), boxes)
    assert set(np.unique(lab)) == {BACKGROUND, GLOMERULUS, UNKNOWN}
    assert ((lab == GLOMERULUS) <= (box == GLOMERULUS)).all() and (lab[box == BACKGROUND] == BACKGROUND).all()
    assert lab[0, 7] == UNKNOWN and lab[11, 4] == UNKNOWN  # a corner of one box only: unknown
    assert lab[4, 4] == GLOMERULUS  # the second box's corner, but the first disc's centre
    assert lab[7, 7] == GLOMERULUS  # the first box's corner, but inside the second disc
