"""SWC import/export of traces: round trips, the file's columns, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.core.errors import InputError
from napari_medseg.methods.tracking.swc import SwcForest, read_swc, write_swc


def _forest():
    t = np.linspace(0.0, 1.0, 30)
    main = np.stack([10 + 80 * t, 5 + 90 * t + 3 * np.sin(7 * t)], axis=1)
    branch = np.stack([main[12, 0] + np.arange(1, 16) * 1.3, main[12, 1] - np.arange(1, 16) * 0.7], axis=1)
    twig = np.stack([branch[6, 0] - np.arange(1, 9) * 0.9, branch[6, 1] - np.arange(1, 9) * 1.1 + 0.123456], axis=1)
    return [main, branch, twig], [None, (0, 12), (1, 6)], [2, 3, 4]


def _write(tmp_path, text, name="bad.swc"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_round_trip_with_a_branch_off_a_branch(tmp_path):
    traces, parents, types = _forest()
    radii = [1.5, np.linspace(0.5, 1.0, len(traces[1])), None]
    path = tmp_path / "tree.swc"
    write_swc(path, traces, parents=parents, types=types, radii=radii, header="made by a test")
    back = read_swc(path)
    assert isinstance(back, SwcForest)
    assert len(back.traces) == 3
    for a, b in zip(traces, back.traces):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
    assert back.parents == parents
    assert back.types == types
    np.testing.assert_allclose(back.radii[0], 1.5)
    np.testing.assert_allclose(back.radii[1], radii[1], atol=1e-9)
    np.testing.assert_allclose(back.radii[2], 1.0)
    assert all(np.all(z == 0) for z in back.z)
    assert path.read_text().startswith("# made by a test\n")
    # writing what was read gives the same file
    again = tmp_path / "again.swc"
    write_swc(again, back.traces, back.parents, back.types, back.radii, "made by a test", z=back.z)
    assert again.read_text() == path.read_text()


def test_parent_traces_may_come_after_their_branches(tmp_path):
    traces, _, _ = _forest()
    # the twig (branch of the branch) first, the main trace last
    write_swc(tmp_path / "t.swc", [traces[2], traces[1], traces[0]], parents=[(1, 6), (2, 12), None])
    back = read_swc(tmp_path / "t.swc")
    # written (and so read) with parents first: main, branch, twig
    for a, b in zip(traces, back.traces):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
    assert back.parents == [None, (0, 12), (1, 6)]
    ids = [int(line.split()[0]) for line in (tmp_path / "t.swc").read_text().splitlines() if not line.startswith("#")]
    parents = [int(line.split()[6]) for line in (tmp_path / "t.swc").read_text().splitlines() if not line.startswith("#")]
    assert ids == list(range(1, len(ids) + 1)) and all(p < i for i, p in zip(ids, parents))


def test_columns_are_id_type_x_y_z_radius_parent(tmp_path):
    path = tmp_path / "one.swc"
    write_swc(path, [np.array([[10.0, 20.0], [11.0, 23.5]])], radii=[[0.75, 0.5]], z=[4.0])
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    assert len(rows) == 2 and all(len(r) == 7 for r in rows)
    nid, kind, x, y, z, radius, parent = rows[0]
    assert (nid, kind, parent) == ("1", "2", "-1")
    assert (float(x), float(y), float(z), float(radius)) == (20.0, 10.0, 4.0, 0.75)  # x is the column
    assert float(rows[1][2]) == 23.5 and float(rows[1][3]) == 11.0 and rows[1][6] == "1"
    back = read_swc(path)
    np.testing.assert_array_equal(back.traces[0], [[10.0, 20.0], [11.0, 23.5]])
    np.testing.assert_array_equal(back.z[0], [4.0, 4.0])


def test_reads_foreign_files_in_any_node_order(tmp_path):
    # children listed before their parents, a second tree, comments and blank lines
    text = "# from another tool\n\n3 3 7 5 0 1 2\n2 1 6 5 0 2 1\n1 1 5 5 0 2 -1\n4 3 6 9 0 1 2\n10 2 0 0 0 1 -1\n"
    back = read_swc(_write(tmp_path, text, "foreign.swc"))
    assert len(back.traces) == 3
    # node 3 comes first in the file, so it continues 1 → 2; node 4 branches off node 2
    np.testing.assert_array_equal(back.traces[0], [[5, 5], [5, 6], [5, 7]])  # nodes 1, 2, 3
    np.testing.assert_array_equal(back.traces[1], [[9, 6]])  # node 4
    np.testing.assert_array_equal(back.traces[2], [[0, 0]])  # node 10
    assert back.parents == [None, (0, 1), None]
    assert back.types == [1, 3, 2]  # the most common type of each trace's nodes


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("1 2 0 0 0 1 -1\n2 2 1 0 0 1 7\n", r"line 2: node 2 has parent 7, which does not exist \(broken parent link"),
        ("1 2 0 0 0 1 -1\n2 2 1 0 0 1 1\n2 2 2 0 0 1 1\n", r"line 3: duplicate node id 2 \(first defined on line 2\)"),
        ("1 2 0 0 0 1 -1\n2 2 1 0 0 1 3\n3 2 2 0 0 1 2\n", r"nodes 2 → 3 → 2 form a cycle"),
        ("1 2 0 0 0 1 -1\n2 2 1 0 0 1 2\n", r"nodes 2 → 2 form a cycle"),
        ("1 2 0 0 0 1 -1\n# ok\n2 2 1 0 0 1\n", r"line 3: expected 7 numeric columns"),
        ("1 2 0 0 0 1 -1\n2 2 one 0 0 1 1\n", r"line 2: expected 7 numeric columns"),
        ("1 2 0 0 0 1 -1\n2 2.5 1 0 0 1 1\n", r"line 2: id, type and parent must be integers"),
        ("", r"no nodes"),
        ("# only a comment\n\n", r"no nodes"),
    ],
    ids=["broken-link", "duplicate-id", "cycle", "self-parent", "short-line", "not-numeric", "float-type",
         "empty", "comments-only"],
)
def test_bad_files_raise_one_clear_error(tmp_path, text, pattern):
    with pytest.raises(InputError, match=pattern):
        read_swc(_write(tmp_path, text))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_swc(tmp_path / "nope.swc")
    with pytest.raises(InputError, match="Cannot read"):
        read_swc(tmp_path)  # a directory
    (tmp_path / "bin.swc").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="Cannot read"):
        read_swc(tmp_path / "bin.swc")


def test_a_failed_write_leaves_the_existing_file_untouched(tmp_path, monkeypatch):
    traces, parents, types = _forest()
    path = tmp_path / "keep.swc"
    write_swc(path, traces, parents, types)
    before = path.read_bytes()
    bad = [
        dict(traces=[traces[0], np.zeros((0, 2))], match="Trace 1 is empty"),
        dict(traces=[], match="no traces"),
        dict(traces=traces, parents=[None, (0, 99), (1, 6)], match="point 99 of trace 0"),
        dict(traces=traces, parents=[(2, 0), (0, 12), (1, 6)], match="cycle"),
        dict(traces=traces, parents=[None, (1, 0), None], match="not another trace"),
        dict(traces=[np.array([[1.0, np.nan]])], match="NaN"),
        dict(traces=[np.zeros((3, 3))], match=r"\(N, 2\)"),
        dict(traces=traces, types=[2, 2, "axon"], match="type of trace 2"),
        dict(traces=traces, radii=[1.0, [1.0, 2.0], 1.0], match="radii of trace 1"),
    ]
    for case in bad:
        match = case.pop("match")
        with pytest.raises(InputError, match=match):
            write_swc(path, **case)
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.swc"]  # no temp files left
    # a failure inside the atomic write itself (here: the final rename) also keeps them
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(InputError, match="Cannot write the SWC file .*Permission denied"):
        write_swc(path, traces[:1])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.swc"]


# ------------------------------------------------------------ physical units (issue 19, item 2)
def test_physical_units_are_written_declared_and_placed_back_on_the_image(tmp_path):
    traces, parents, types = _forest()
    path = tmp_path / "um.swc"
    write_swc(path, traces, parents=parents, types=types, radii=[2.0, None, None], scale=(0.5, 0.25),
              unit="micrometer")
    text = path.read_text()
    assert "# napari-medseg: scale 1 0.5 0.25 unit micrometer" in text
    first = next(line for line in text.splitlines() if not line.startswith("#")).split()
    assert float(first[2]) == pytest.approx(traces[0][0, 1] * 0.25)  # x = column × sx
    assert float(first[3]) == pytest.approx(traces[0][0, 0] * 0.5)  # y = row × sy
    assert float(first[5]) == pytest.approx(2.0 * 0.375)  # radius × the mean in-plane pixel size
    forest = read_swc(path)
    assert forest.unit == "micrometer" and forest.scale == (1.0, 0.5, 0.25)
    np.testing.assert_allclose(forest.traces[0], traces[0] * [0.5, 0.25])  # as the file has them
    back = forest.in_pixels((0.5, 0.25))
    for a, b in zip(back.traces, traces):
        np.testing.assert_allclose(a, b, atol=1e-9)
    assert back.parents == parents and back.unit == "pixel"
    # on an image with another pixel size, the same physical place
    other = forest.in_pixels((1.0, 1.0))
    np.testing.assert_allclose(other.traces[1], traces[1] * [0.5, 0.25])


def test_pixel_files_and_foreign_files_are_placed_as_their_headers_say(tmp_path):
    traces, parents, _ = _forest()
    px = tmp_path / "px.swc"
    write_swc(px, traces, parents=parents)
    forest = read_swc(px)
    assert forest.unit == "pixel"
    np.testing.assert_allclose(forest.in_pixels((0.5, 0.5)).traces[0], traces[0])  # pixels stay pixels
    foreign = _write(tmp_path, "# from another tool\n1 2 10 20 0 1 -1\n2 2 12 22 0 1 1\n", "snt.swc")
    f = read_swc(foreign)
    assert f.unit is None
    np.testing.assert_allclose(f.in_pixels((2.0, 2.0)).traces[0], [[10, 5], [11, 6]])
    with pytest.raises(InputError):
        write_swc(tmp_path / "x.swc", traces, scale=(0.5, 0.5))  # a scale needs its unit
    for bad in ((0.5,), (0, 1), (float("nan"), 1), "ab"):
        with pytest.raises(InputError):
            write_swc(tmp_path / "x.swc", traces, scale=bad, unit="micrometer")
    assert not (tmp_path / "x.swc").exists()


def test_a_morphology_library_reads_our_files_in_their_units(tmp_path):
    import morphio
    traces, parents, types = _forest()
    path = tmp_path / "tree.swc"
    write_swc(path, traces, parents=parents, types=types, scale=(0.5, 0.25), unit="micrometer")
    morphio.set_maximum_warnings(0)
    m = morphio.Morphology(str(path))
    pts = np.concatenate([s.points for s in m.sections])
    expected = np.concatenate([t * [0.5, 0.25] for t in traces])[:, ::-1]  # (x, y)
    assert len(m.root_sections) == 1  # one tree: the branches hang from the main trace
    assert np.abs(pts[:, :2].max(axis=0) - expected.max(axis=0)).max() < 1e-4
    assert np.abs(pts[:, :2].min(axis=0) - expected.min(axis=0)).max() < 1e-4
    lengths = sum(np.linalg.norm(np.diff(s.points[:, :2], axis=0), axis=1).sum() for s in m.sections)
    ours = sum(np.linalg.norm(np.diff(t * [0.5, 0.25], axis=0), axis=1).sum() for t in traces)
    branch_joins = sum(np.linalg.norm(traces[i][0] * [0.5, 0.25] - traces[p[0]][p[1]] * [0.5, 0.25])
                       for i, p in enumerate(parents) if p is not None)
    assert lengths == pytest.approx(ours + branch_joins, rel=1e-5)


def test_napari_reads_swc_as_a_shapes_layer_in_the_files_units(tmp_path):
    from napari_medseg._reader import napari_get_reader

    traces, parents, types = _forest()
    path = tmp_path / "tree.swc"
    write_swc(path, traces, parents=parents, types=types, scale=(0.5, 0.5), unit="micrometer")
    reader = napari_get_reader(str(path))
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "shapes" and kwargs["shape_type"] == "path" and len(data) == 3
    np.testing.assert_allclose(data[0], traces[0] * 0.5)
    assert kwargs["units"] == ("micrometer", "micrometer")
    assert kwargs["metadata"]["swc"]["parents"] == parents
    assert kwargs["metadata"]["swc"]["types"] == ["axon", "basal dendrite", "apical dendrite"]
    bad = _write(tmp_path, "1 2 x 0 0 1 -1\n")
    with pytest.raises(InputError):
        reader(str(bad))
