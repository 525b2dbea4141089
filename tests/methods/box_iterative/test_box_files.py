"""Boxes from files and training from the user's own image on the command line (issue 17, item 3)."""

import json

import numpy as np
import pytest
import tifffile

from napari_medseg.core.errors import InputError
from napari_medseg.methods.box_iterative.boxfiles import read_boxes
from napari_medseg.methods.box_iterative.synthetic import synthetic_kidney

BOXES = [[10, 20, 30, 40], [50, 60, 90, 100]]


def test_box_table_napari_csv_and_geojson_give_the_same_boxes(tmp_path):
    from napari.layers import Shapes
    from napari_builtins.io import napari_write_shapes

    table = tmp_path / "boxes.csv"
    table.write_text("y0,x0,y1,x1\n" + "\n".join(",".join(map(str, b)) for b in BOXES))
    xywh = tmp_path / "xywh.csv"
    xywh.write_text("x,y,width,height\n" + "\n".join(f"{b[1]},{b[0]},{b[3] - b[1]},{b[2] - b[0]}" for b in BOXES))
    layer = Shapes([np.array([[b[0], b[1]], [b[0], b[3]], [b[2], b[3]], [b[2], b[1]]]) for b in BOXES],
                   shape_type="rectangle")
    shapes_csv = tmp_path / "shapes.csv"
    napari_write_shapes(str(shapes_csv), layer.data, {"shape_type": layer.shape_type})
    geo = tmp_path / "qupath.geojson"
    feats = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[b[1], b[0]], [b[3], b[0]],
                                                                                  [b[3], b[2]], [b[1], b[2]],
                                                                                  [b[1], b[0]]]]},
              "properties": {"objectType": "annotation"}} for b in BOXES]
    geo.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    for path in (table, xywh, shapes_csv, geo):
        assert np.array_equal(read_boxes(path, (128, 128)).boxes, BOXES), path.name


def test_bad_box_files_get_one_clear_error(tmp_path):
    cases = {"cols.csv": ("a,b\n1,2\n", "columns"), "nan.csv": ("y0,x0,y1,x1\n1,2,x,4\n", "not a number"),
             "out.csv": ("y0,x0,y1,x1\n1,2,300,4\n", "past the image border"), "bad.geojson": ("{nope", "not valid JSON"),
             "point.geojson": (json.dumps({"type": "FeatureCollection", "features": [
                 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}]}), "only polygons"),
             "boxes.xml": ("<x/>", ".csv")}
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=match):
            read_boxes(tmp_path / name, (128, 128))
    with pytest.raises(InputError, match="does not exist"):
        read_boxes(tmp_path / "missing.csv", (128, 128))


def test_train_from_a_16_bit_grey_image_and_a_box_file(tmp_path, monkeypatch, capsys, one_thread):
    from napari_medseg import cli
    from napari_medseg.core.registry import Registry

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    slide = synthetic_kidney((256, 256), 7, density=3.0)
    grey = (slide.rgb.astype(np.float32).mean(-1) * 200).astype(np.uint16)  # a 16-bit single channel
    tifffile.imwrite(tmp_path / "slide.tif", grey)
    (tmp_path / "boxes.csv").write_text("y0,x0,y1,x1\n" + "\n".join(",".join(map(str, b)) for b in slide.boxes))
    code = cli.main(["train", "box_iterative", "--image", str(tmp_path / "slide.tif"), "--boxes",
                     str(tmp_path / "boxes.csv"), "--rounds1", "1", "--rounds2", "0", "--steps", "2", "--patch",
                     "64", "--batch-size", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"{len(slide.boxes)} box" in err and "percentiles" in err and "repeated" in err
    entries = Registry().list("glomeruli")
    assert any(e.source == "user" for e in entries)
    assert cli.main(["train", "box_iterative", "--image", str(tmp_path / "slide.tif")]) == 2  # no --boxes


def test_segment_cli_takes_a_16_bit_grey_image_for_an_rgb_model(tmp_path, monkeypatch, capsys, one_thread):
    """`napari-medseg segment` goes through the same input path as the dock (issue 17, item 1)."""
    import zarr

    from napari_medseg import cli

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    slide = synthetic_kidney((128, 128), 5, density=3.0)
    grey = (slide.rgb.astype(np.float32).mean(-1) * 200).astype(np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", grey)
    out = tmp_path / "out.zarr"
    assert cli.main(["segment", str(tmp_path / "grey.tif"), "--model", "glomeruli", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "percentiles to 8 bits" in err and "repeated as R, G and B" in err
    assert zarr.open_group(str(out), mode="r")["0"].shape == (128, 128)
    code = cli.main(["segment", str(tmp_path / "grey.tif"), "--model", "glomeruli", "--out", str(tmp_path / "o2.zarr"),
                     "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 2 and "convert it first" in capsys.readouterr().err


def test_train_stage2_defaults_to_replay_and_takes_the_papers(tmp_path, monkeypatch):
    """``--stage2`` picks Stage 2's training slides: replay (the default, chosen on validation)
    or the paper's (unlabelled slides only)."""
    from napari_medseg import cli
    from napari_medseg.methods.box_iterative import cli as box_cli

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    seen = []

    def fake_job(registry, args, config, resume=None):
        seen.append(config.stage2_replay)
        return None
        yield

    monkeypatch.setattr(box_cli, "user_data_job", fake_job)
    tifffile.imwrite(tmp_path / "slide.tif", np.zeros((64, 64), np.uint16))
    (tmp_path / "boxes.csv").write_text("y0,x0,y1,x1\n10,10,30,30\n")
    base = ["train", "box_iterative", "--image", str(tmp_path / "slide.tif"), "--boxes", str(tmp_path / "boxes.csv")]
    cli.main(base)
    cli.main(base + ["--stage2", "paper"])
    assert seen == [True, False]
