"""box_iterative.boxes: rectangles from a napari Shapes layer, checked; boxes to labels and back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.box_iterative import boxes as bx
from napari_medseg.methods.box_iterative.labels import BACKGROUND, GLOMERULUS

RECT = "rectangle"


def _rect(y0, x0, y1, x1):
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)


def test_round_trip_boxes_to_shapes_and_back():
    boxes = np.array([[0, 0, 10, 12], [15, 7, 40, 9], [90, 80, 100, 100], [33, 1, 34, 2]], np.int64)
    shapes = bx.boxes_to_shapes(boxes)
    assert len(shapes) == 4 and all(s.shape == (4, 2) and s.dtype == np.float64 for s in shapes)
    np.testing.assert_array_equal(shapes[0], [[0, 0], [0, 12], [10, 12], [10, 0]])
    got = bx.boxes_from_shapes(shapes, [RECT] * 4, (100, 100))
    np.testing.assert_array_equal(got.boxes, boxes)
    assert got.boxes.dtype == np.int64
    assert got.source_index == [0, 1, 2, 3] and len(got) == 4
    assert got.overlaps == [] and got.duplicates == [] and got.clipped == []


def test_nd_vertices_use_the_last_two_columns_and_any_corner_order():
    v = _rect(10, 20, 30, 50)[[2, 0, 3, 1]]  # corners shuffled
    v3 = np.column_stack([np.full(4, 7.0), v])  # (4, 3): a leading z column
    got = bx.boxes_from_shapes([v3], RECT, (64, 64))
    np.testing.assert_array_equal(got.boxes, [[10, 20, 30, 50]])


def test_rounding_floor_min_ceil_max_and_float_noise():
    shapes = [_rect(10.2, 5.7, 20.1, 15.0), _rect(3.0, 4.0, 8.0 + 1e-9, 9.0 - 1e-9)]
    got = bx.boxes_from_shapes(shapes, [RECT, RECT], (50, 50))
    np.testing.assert_array_equal(got.boxes, [[10, 5, 21, 15], [3, 4, 8, 9]])


def test_user_data_is_not_modified():
    shapes = [_rect(-3.5, 2.0, 10.0, 12.0), _rect(1.0, 1.0, 5.0, 5.0)]
    before = [s.copy() for s in shapes]
    types = [RECT, RECT]
    got = bx.boxes_from_shapes(shapes, types, (20, 20), clip=True)
    for s, b in zip(shapes, before):
        np.testing.assert_array_equal(s, b)
    assert types == [RECT, RECT]
    got.boxes[:] = 0
    np.testing.assert_array_equal(shapes[0], before[0])


def test_no_boxes_at_all():
    with pytest.raises(InputError) as err:
        bx.boxes_from_shapes([], [], (10, 10))
    assert str(err.value) == "The box layer has no rectangles: draw at least one box around a glomerulus."


def test_non_rectangles_are_named():
    shapes = [_rect(0, 0, 5, 5)] * 9
    types = [RECT] * 9
    types[3] = types[7] = "polygon"
    with pytest.raises(InputError) as err:
        bx.boxes_from_shapes(shapes, types, (10, 10))
    msg = str(err.value)
    assert msg.startswith("Shapes 3 and 7 are polygons, not rectangles;")
    assert "rectangles only" in msg and "another Shapes layer" in msg
    types = [RECT, "ellipse"]
    with pytest.raises(InputError, match="Shape 1 is an ellipse, not a rectangle; .*Delete it"):
        bx.boxes_from_shapes(shapes[:2], types, (10, 10))


def test_shape_types_must_match_the_data():
    with pytest.raises(InputError, match="2 shapes but 1 shape types"):
        bx.boxes_from_shapes([_rect(0, 0, 2, 2)] * 2, [RECT], (10, 10))


def test_bad_vertex_arrays_are_named():
    with pytest.raises(InputError, match="Shape 1 does not have 4 finite corner points"):
        bx.boxes_from_shapes([_rect(0, 0, 2, 2), np.zeros((3, 2))], [RECT, RECT], (10, 10))
    nan = _rect(0, 0, 2, 2)
    nan[0, 0] = np.nan
    with pytest.raises(InputError, match="Shape 0 does not"):
        bx.boxes_from_shapes([nan], [RECT], (10, 10))


def test_rotated_rectangle_is_refused():
    c, s = np.cos(0.3), np.sin(0.3)
    square = np.array([[-10, -10], [-10, 10], [10, 10], [10, -10]], float)
    rotated = square @ np.array([[c, -s], [s, c]]) + 50
    shapes = [_rect(0, 0, 5, 5), rotated, _rect(1, 1, 9, 9)]
    with pytest.raises(InputError, match="Shape 1 is rotated or skewed; boxes must have edges parallel"):
        bx.boxes_from_shapes(shapes, [RECT] * 3, (100, 100))
    # within the tolerance (1e-3 of the size) it is still axis-aligned
    nearly = _rect(10, 10, 30, 30)
    nearly[1, 0] += 0.01
    np.testing.assert_array_equal(bx.boxes_from_shapes([nearly], [RECT], (64, 64)).boxes, [[10, 10, 30, 30]])
    # a parallelogram with axis-aligned bounding values but a slanted edge
    skew = np.array([[0, 0], [0, 10], [10, 10], [10, 10]], float)
    with pytest.raises(InputError, match="rotated"):
        bx.boxes_from_shapes([skew], [RECT], (64, 64))


def test_zero_area_boxes_are_named():
    shapes = [_rect(0, 0, 5, 5), _rect(3, 3, 3, 9), _rect(1, 1, 6, 1.4)]
    with pytest.raises(InputError) as err:
        bx.boxes_from_shapes(shapes, [RECT] * 3, (10, 10))
    assert str(err.value).startswith("Shapes 1 and 2 have no area")


def test_boxes_wholly_outside_are_named():
    shapes = [_rect(0, 0, 5, 5), _rect(20, 20, 30, 30), _rect(-10, 2, -1, 8), _rect(2, 10, 5, 15)]
    with pytest.raises(InputError) as err:
        bx.boxes_from_shapes(shapes, [RECT] * 4, (10, 10), clip=True)
    msg = str(err.value)
    assert msg.startswith("Boxes 1, 2 and 3 lie wholly outside the 10 x 10 image")


def test_boxes_partly_outside_raise_or_are_clipped():
    shapes = [_rect(-5, 2, 8, 8), _rect(1, 1, 4, 4), _rect(3, 3, 9, 12.5)]
    with pytest.raises(InputError) as err:
        bx.boxes_from_shapes(shapes, [RECT] * 3, (10, 10))
    msg = str(err.value)
    assert msg.startswith("Boxes 0 and 2 reach past the image border (by 5 and 3 pixels)")
    assert "clip=True" in msg
    got = bx.boxes_from_shapes(shapes, [RECT] * 3, (10, 10), clip=True)
    np.testing.assert_array_equal(got.boxes, [[0, 2, 8, 8], [1, 1, 4, 4], [3, 3, 9, 10]])
    assert got.clipped == [0, 2]
    assert "boxes 0 and 2 clipped at the image border" in got.describe()
    with pytest.raises(InputError, match=r"Box 0 reaches past the image border \(by 1 pixel\)"):
        bx.boxes_from_shapes([_rect(0, 0, 11, 5)], [RECT], (10, 10))


def test_overlaps_are_kept_and_duplicates_removed():
    boxes = np.array(
        [[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [5, 5, 15, 15], [10, 0, 20, 10], [0, 0, 10, 10]]
    )
    got = bx.boxes_from_shapes(bx.boxes_to_shapes(boxes), [RECT] * 6, (40, 40))
    assert got.duplicates == [3, 5]
    assert got.source_index == [0, 1, 2, 4]
    np.testing.assert_array_equal(got.boxes, boxes[[0, 1, 2, 4]])
    # box 4 only touches box 0 (shared edge): no overlap; it does overlap box 1
    assert got.overlaps == [(0, 1), (1, 4)]
    text = got.describe()
    assert text.startswith("4 boxes; 2 pairs of boxes overlap (0 and 1, 1 and 4): their labels are united")
    assert "each still counts as its own object" in text
    assert "2 exact duplicates removed (boxes 3 and 5)" in text and text.endswith(".")


def test_describe_single_overlap_and_plain():
    one = bx.boxes_from_shapes([_rect(0, 0, 4, 4), _rect(2, 2, 6, 6)], [RECT, RECT], (8, 8))
    assert one.describe() == (
        "2 boxes; boxes 0 and 1 overlap: their labels are united, and each still counts as its own object."
    )
    plain = bx.boxes_from_shapes([_rect(0, 0, 4, 4)], [RECT], (8, 8))
    assert plain.describe() == "1 box, none overlapping."


def test_overlapping_pairs_matches_brute_force():
    rng = np.random.default_rng(1)
    y0, x0 = rng.integers(0, 200, (2, 300))
    boxes = np.stack([y0, x0, y0 + rng.integers(1, 30, 300), x0 + rng.integers(1, 30, 300)], axis=1)
    expected = [
        (i, j)
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if max(boxes[i, 0], boxes[j, 0]) < min(boxes[i, 2], boxes[j, 2])
        and max(boxes[i, 1], boxes[j, 1]) < min(boxes[i, 3], boxes[j, 3])
    ]
    assert expected and bx.overlapping_pairs(boxes) == expected


def test_boxes_from_instances_are_minimum_rectangles():
    inst = np.zeros((30, 40), np.uint16)
    inst[2:5, 3:9] = 1
    inst[10, 20] = 3  # label 2 missing: skipped
    inst[12:20, 30:40] = 4
    inst[14, 29] = 4
    got = bx.boxes_from_instances(inst)
    np.testing.assert_array_equal(got, [[2, 3, 5, 9], [10, 20, 11, 21], [12, 29, 20, 40]])
    assert got.dtype == np.int64
    assert bx.boxes_from_instances(np.zeros((5, 5), np.int32)).shape == (0, 4)
    np.testing.assert_array_equal(bx.boxes_from_instances(inst > 0)[0], [2, 3, 20, 40])
    with pytest.raises(InputError, match="must be integers"):
        bx.boxes_from_instances(inst.astype(float))
    with pytest.raises(InputError, match="2-D"):
        bx.boxes_from_instances(inst[None])


def test_fill_boxes_is_the_union_of_the_boxes():
    boxes = np.array([[0, 0, 3, 4], [2, 2, 6, 6], [-5, 8, 2, 20]])
    lab = bx.fill_boxes((8, 10), boxes)
    assert lab.dtype == np.uint8 and lab.shape == (8, 10)
    expected = np.full((8, 10), BACKGROUND, np.uint8)
    expected[0:3, 0:4] = GLOMERULUS
    expected[2:6, 2:6] = GLOMERULUS
    expected[0:2, 8:10] = GLOMERULUS  # clipped at the border, no wrap-around
    np.testing.assert_array_equal(lab, expected)
    # a BoxSet works too, and a round trip through shapes gives the same labels
    boxset = bx.boxes_from_shapes(bx.boxes_to_shapes(boxes[:2]), [RECT, RECT], (8, 10))
    np.testing.assert_array_equal(bx.fill_boxes((8, 10), boxset), bx.fill_boxes((8, 10), boxes[:2]))
    assert not bx.fill_boxes((4, 4), np.zeros((0, 4))).any()


def test_module_imports_no_gui_toolkit():
    code = (
        "import sys; import napari_medseg.methods.box_iterative.boxes, "
        "napari_medseg.methods.box_iterative.synthetic; "
        "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'vispy') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
