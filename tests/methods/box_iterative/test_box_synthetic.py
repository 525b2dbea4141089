"""box_iterative.synthetic: seeded PAS-like kidney images, their glomeruli, and pyramid TIFFs."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_medseg.core.errors import InputError
from napari_medseg.methods.box_iterative import slides, synthetic as syn
from napari_medseg.methods.box_iterative.boxes import boxes_from_instances


@pytest.fixture(scope="module")
def slide():
    return syn.synthetic_kidney((1024, 1024), seed=0)


def test_types_shapes_and_mask(slide):
    assert slide.rgb.shape == (1024, 1024, 3) and slide.rgb.dtype == np.uint8
    assert slide.instances.shape == (1024, 1024) and slide.instances.dtype == np.uint16
    assert slide.boxes.dtype == np.int64 and slide.boxes.shape[1] == 4
    mask = slide.mask
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask, slide.instances > 0)


def test_same_seed_same_image_other_seed_other_image(slide):
    again = syn.synthetic_kidney((1024, 1024), seed=0)
    np.testing.assert_array_equal(again.rgb, slide.rgb)
    np.testing.assert_array_equal(again.instances, slide.instances)
    np.testing.assert_array_equal(again.boxes, slide.boxes)
    other = syn.synthetic_kidney((1024, 1024), seed=1)
    assert not np.array_equal(other.instances, slide.instances)
    assert np.abs(other.rgb.astype(int) - slide.rgb).mean() > 20


def test_boxes_are_minimum_rectangles_of_labels_one_to_n(slide):
    n = len(slide.boxes)
    assert np.array_equal(np.unique(slide.instances), np.arange(n + 1))
    np.testing.assert_array_equal(slide.boxes, boxes_from_instances(slide.instances))
    for label, (y0, x0, y1, x1) in enumerate(slide.boxes, start=1):
        own = slide.instances == label
        assert own[y0:y1, x0:x1].sum() == own.sum()  # encloses the whole glomerulus
        crop = own[y0:y1, x0:x1]
        assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()  # tight
        assert ndi.label(own)[1] == 1  # one piece


def test_count_scales_with_area_and_density():
    # about one glomerulus per 400 x 400 pixels at density 1
    assert len(syn.synthetic_kidney((1024, 1024), 3).boxes) == round(1024 * 1024 / 400**2)
    assert len(syn.synthetic_kidney((800, 1600), 3, density=0.5).boxes) == round(800 * 1600 * 0.5 / 400**2)
    assert len(syn.synthetic_kidney((1024, 1024), 3, density=2.0).boxes) >= 12
    empty = syn.synthetic_kidney((256, 256), 3, density=0)
    assert len(empty.boxes) == 0 and not empty.instances.any()


def test_glomeruli_keep_apart_and_have_the_asked_size(slide):
    inst = slide.instances
    for label in range(1, len(slide.boxes) + 1):
        near = ndi.binary_dilation(inst == label, iterations=4)
        assert not (near & (inst > 0) & (inst != label)).any()
    heights, widths = (slide.boxes[:, 2] - slide.boxes[:, 0]), (slide.boxes[:, 3] - slide.boxes[:, 1])
    assert np.maximum(heights, widths).max() <= 2 * 60 + 2
    areas = np.bincount(inst.ravel())[1:]
    assert areas.min() >= np.pi * 30 * 30 * np.sqrt(1 - 0.75**2) * 0.9
    small = syn.synthetic_kidney((512, 512), 4, glomerulus_radius=(8, 12), density=10)
    sides = np.maximum(small.boxes[:, 2] - small.boxes[:, 0], small.boxes[:, 3] - small.boxes[:, 1])
    assert len(sides) > 10 and sides.max() <= 2 * 12 + 2 and sides.min() >= 2 * 8 * np.sqrt(1 - 0.75**2) - 2
    # round to elliptical, eccentricity up to 0.75
    from skimage.measure import regionprops

    ecc = np.array([r.eccentricity for r in regionprops(inst)])
    assert ecc.max() > 0.4 and ecc.max() < 0.8


def test_glomeruli_are_darker_and_more_purple_than_the_cortex(slide):
    rgb = slide.rgb.astype(float)
    tuft = ndi.binary_erosion(slide.mask, iterations=12)
    cortex = ~ndi.binary_dilation(slide.mask, iterations=5)
    assert tuft.sum() > 1000
    inside, outside = rgb[tuft].mean(axis=0), rgb[cortex].mean(axis=0)
    assert inside.sum() < outside.sum() - 60  # darker
    assert inside[2] - inside[0] > outside[2] - outside[0]  # more blue than red: purple
    # PAS pink/magenta cortex: green is the most absorbed colour
    assert outside[1] < outside[0] - 25 and outside[1] < outside[2] - 25
    # textured, not flat
    assert rgb[tuft].std(axis=0).min() > 15


def test_distractors_are_round_things_that_are_not_glomeruli(slide):
    d = slide.distractor_boxes
    assert d.dtype == np.int64 and len(d) >= 3
    centres = ((d[:, 0] + d[:, 2]) // 2, (d[:, 1] + d[:, 3]) // 2)
    assert not slide.instances[centres].any()
    sides = np.maximum(d[:, 2] - d[:, 0], d[:, 3] - d[:, 1])
    glom = np.maximum(slide.boxes[:, 2] - slide.boxes[:, 0], slide.boxes[:, 3] - slide.boxes[:, 1])
    assert 0.5 < np.median(sides) / np.median(glom) < 2.5
    assert len(syn.synthetic_kidney((512, 512), 0, distractors=0).distractor_boxes) == 0


def test_border_keeps_objects_inside():
    k = syn.synthetic_kidney((600, 500), 5, border=60, density=2)
    assert len(k.boxes) > 0
    both = np.concatenate([k.boxes, k.distractor_boxes])
    assert both[:, :2].min() >= 60 and (both[:, 2] <= 600 - 60).all() and (both[:, 3] <= 500 - 60).all()


def test_texture_joins_across_blocks():
    kw = dict(density=0, distractors=0, texture_seed=9)
    a = syn.synthetic_kidney((256, 256), 1, origin=(0, 0), **kw).rgb[128:, 64:].astype(float)
    b = syn.synthetic_kidney((256, 256), 2, origin=(128, 64), **kw).rgb[:128, :192].astype(float)
    far = syn.synthetic_kidney((256, 256), 1, origin=(5000, 64), **kw).rgb[:128, :192].astype(float)
    smooth = lambda x: ndi.gaussian_filter(x.mean(axis=-1), 1.5).ravel()  # noqa: E731
    assert np.corrcoef(smooth(a), smooth(b))[0, 1] > 0.95  # same tissue, other noise
    assert abs(np.corrcoef(smooth(a), smooth(far))[0, 1]) < 0.5


def test_bad_arguments_raise_input_error():
    for kwargs in (
        dict(glomerulus_radius=(50, 10)),
        dict(glomerulus_radius=(1, 10)),
        dict(density=-1),
        dict(distractors=float("nan")),
        dict(shape=(0, 10)),
        dict(seed=-3),
    ):
        args = {"shape": (64, 64), **kwargs}
        with pytest.raises(InputError):
            syn.synthetic_kidney(**args)


def test_pyramid_reads_back_and_matches_the_blocks(tmp_path, monkeypatch):
    from napari_medseg.core.io import read_image

    made = []  # (origin, KidneySlide) of every block generated while writing
    real = syn.synthetic_kidney

    def spy(shape, *a, **kw):
        made.append((kw["origin"], real(shape, *a, **kw)))
        return made[-1][1]

    monkeypatch.setattr(slides, "synthetic_kidney", spy)
    info = slides.write_kidney_pyramid(tmp_path / "kidney.tif", 3000, seed=3, tile=256, block=1024)
    monkeypatch.undo()
    assert len(made) == 9 and max(max(k.rgb.shape[:2]) for _, k in made) <= 1024  # one block at a time
    assert [p.name for p in tmp_path.iterdir()] == ["kidney.tif"]  # no temporary files left
    assert info["shape"] == (3000, 3000, 3)
    assert info["levels"] == [(3000, 3000, 3), (1500, 1500, 3), (750, 750, 3)]
    levels, meta = read_image(info["path"])
    assert [tuple(lv.shape) for lv in levels] == info["levels"] and meta["rgb"] and meta["pyramid"] == "file"

    level0 = levels[0].compute()
    for (y0, x0), k in made:
        h, w = k.rgb.shape[:2]
        np.testing.assert_array_equal(level0[y0 : y0 + h, x0 : x0 + w], k.rgb)
        # glomeruli keep off block edges, so none is cut by a block border
        assert k.boxes[:, :2].min() >= syn.BLOCK_BORDER
        assert (k.boxes[:, 2] <= h - syn.BLOCK_BORDER).all() and (k.boxes[:, 3] <= w - syn.BLOCK_BORDER).all()
    assert made[-1][1].rgb.shape == (952, 952, 3)  # the smaller corner block
    boxes = np.concatenate([k.boxes + [y0, x0, y0, x0] for (y0, x0), k in made])
    np.testing.assert_array_equal(info["boxes"], boxes)
    assert info["n_glomeruli"] == len(boxes) >= 40

    # regenerating a block gives the same pixels
    blocks = slides.kidney_blocks(3000, 3, 1024)
    next(blocks)
    y0, x0, again = next(blocks)
    assert (y0, x0) == (0, 1024)
    np.testing.assert_array_equal(level0[:1024, 1024:2048], again.rgb)

    mean = level0[1000:1400, 1800:2200].astype(float).reshape(200, 2, 200, 2, 3).mean(axis=(1, 3))
    assert np.abs(levels[1][500:700, 900:1100].compute() - mean).max() <= 0.5 + 1e-9
    quarter = level0[:1000, :1000].astype(float).reshape(250, 4, 250, 4, 3).mean(axis=(1, 3))
    assert np.abs(levels[2][:250, :250].compute() - quarter).max() <= 1.0


def test_pyramid_small_non_square_and_bad_settings(tmp_path):
    from napari_medseg.core.io import read_image

    info = slides.write_kidney_pyramid(tmp_path / "small.tif", (700, 900), seed=1, tile=256, block=512)
    assert info["levels"] == [(700, 900, 3)]
    (lv,), _ = read_image(info["path"])
    (_, _, first), *_ = slides.kidney_blocks((700, 900), 1, 512)
    np.testing.assert_array_equal(lv[:512, :512].compute(), first.rgb)
    two = slides.write_kidney_pyramid(tmp_path / "two.tif", 600, seed=1, tile=128, block=256, levels=2,
                                   compression=None, density=0)
    assert two["levels"] == [(600, 600, 3), (300, 300, 3)] and two["n_glomeruli"] == 0
    assert len(read_image(two["path"])[0]) == 2
    with pytest.raises(InputError, match="multiple of the tile"):
        slides.write_kidney_pyramid(tmp_path / "bad.tif", 1000, tile=512, block=768)
    with pytest.raises(InputError, match="multiple of 16"):
        slides.write_kidney_pyramid(tmp_path / "bad.tif", 1000, tile=100, block=500)
    assert not (tmp_path / "bad.tif").exists()


# ------------------------------------------------------------ the hard generator (issue 17)
def _touching(inst):
    n = 0
    for label in range(1, int(inst.max()) + 1):
        near = ndi.binary_dilation(inst == label, iterations=2)
        n += bool((near & (inst > 0) & (inst != label)).any())
    return n


def test_hard_slides_have_touching_glomeruli_with_true_instances_and_boxes():
    hard = syn.synthetic_kidney((1024, 1024), 7, density=2.0, **syn.HARD)
    easy = syn.synthetic_kidney((1024, 1024), 7, density=2.0)
    assert _touching(easy.instances) == 0 and _touching(hard.instances) >= 4
    np.testing.assert_array_equal(hard.boxes, boxes_from_instances(hard.instances))
    assert np.array_equal(np.unique(hard.instances), np.arange(len(hard.boxes) + 1))
    # touching glomeruli are a single component of the mask: a binary map cannot tell them apart
    assert ndi.label(hard.mask, structure=np.ones((3, 3)))[1] < len(hard.boxes)
    again = syn.synthetic_kidney((1024, 1024), 7, density=2.0, **syn.HARD)
    np.testing.assert_array_equal(again.rgb, hard.rgb)


def test_sclerotic_and_faint_glomeruli_look_as_named():
    base = dict(shape=(1024, 1024), seed=3, density=2.0, distractors=0)
    normal = syn.synthetic_kidney(**base)
    scler = syn.synthetic_kidney(**base, sclerotic=1.0)
    faint = syn.synthetic_kidney(**base, faint=1.0)

    def tuft_stats(k):
        grey = k.rgb.astype(float).mean(axis=-1)
        tuft = ndi.binary_erosion(k.mask, iterations=10)
        cortex = ~ndi.binary_dilation(k.mask, iterations=5)
        return grey[tuft].std(), grey[cortex].mean() - grey[tuft].mean()

    (sd_n, contrast_n), (sd_s, _), (_, contrast_f) = tuft_stats(normal), tuft_stats(scler), tuft_stats(faint)
    assert sd_s < 0.75 * sd_n  # homogeneous: no capillary loops, few nuclei
    assert contrast_f < 0.7 * contrast_n  # faint: closer to the cortex around it


def test_stain_and_focus_vary_by_slide_and_are_shared_by_its_blocks():
    pas_a, hem_a, sig_a = syn.slide_style(1, 0.25, 1.6)
    pas_b, _, _ = syn.slide_style(2, 0.25, 1.6)
    assert not np.allclose(pas_a, pas_b) and 0 <= sig_a <= 1.6
    assert np.array_equal(syn.slide_style(1, 0.25, 1.6)[0], pas_a)  # one draw per slide
    assert syn.slide_style(1)[2] == 0.0 and np.array_equal(syn.slide_style(1)[0], syn.PAS)
    sharp = syn.synthetic_kidney((256, 256), 4, distractors=0, density=0, texture_seed=31)
    seed = next(t for t in range(31, 200) if syn.slide_style(t, 0, 4.0)[2] > 2.0)
    blurred = syn.synthetic_kidney((256, 256), 4, distractors=0, density=0, texture_seed=seed, blur=4.0)
    sharp2 = syn.synthetic_kidney((256, 256), 4, distractors=0, density=0, texture_seed=seed)
    grad = lambda k: np.abs(np.diff(k.rgb.astype(float).mean(-1), axis=1)).mean()  # noqa: E731
    assert grad(blurred) < 0.6 * grad(sharp2) and grad(sharp) > 0
    for bad in (dict(touching=1.5), dict(blur=-1), dict(stain_jitter=2)):
        with pytest.raises(InputError):
            syn.synthetic_kidney((64, 64), **bad)
