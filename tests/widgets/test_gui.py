"""Open napari, dock every widget in the manifest and click through them (headless, Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

from napari_medseg.core.metrics import dice  # noqa: E402
from napari_medseg.core.registry import Registry  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer(show=True)


@pytest.fixture
def errors(monkeypatch):
    seen = []
    import napari_medseg.widgets._controller as controller_mod
    import napari_medseg.widgets._runner as runner_mod

    monkeypatch.setattr(controller_mod, "show_error", seen.append)
    monkeypatch.setattr(runner_mod, "show_error", seen.append)
    return seen


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-medseg", name)[1]


def _wait(qtbot, widget, timeout=180_000):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)


def test_every_manifest_widget_docks(viewer):
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-medseg")
    names = [w.display_name for w in manifest.contributions.widgets]
    for name in names:
        assert _dock(viewer, name) is not None
    docked = set(viewer.window.dock_widgets)
    assert all(any(n in d for d in docked) for n in names), docked
    # every dock fits napari's dock area: none forces it wider than 400 px (issue 19: the
    # staining dock used to); long forms scroll instead
    for key, widget in viewer.window.dock_widgets.items():
        q = getattr(widget, "native", widget)
        assert q.minimumSizeHint().width() <= 400, (key, q.minimumSizeHint().width())
    assert len(viewer.window.dock_widgets) >= len(names)


def test_segment_correct_retrain_roll_back(viewer, qtbot, errors):
    viewer.open_sample("napari-medseg", "synthetic_slide")
    slide, truth = viewer.layers["synthetic slide"], viewer.layers["tissue ground truth"]
    assert slide.multiscale and slide.rgb and len(slide.data) == 3
    gt = np.asarray(truth.data[0])
    seg = _dock(viewer, "Segment")
    seg.image.value = slide
    seg.level.value = 1  # a coarser level: fast, and exercises level scaling
    seg.run_button.clicked()
    _wait(qtbot, seg)
    result = seg.last_result
    assert result is not None and errors == []
    assert "tile_megapixels_per_s" in seg.runner.metrics.text() and seg.runner.status.text() == "done"
    info = result.metadata["medseg"]
    assert info["model"] == "tissue" and info["version"] == 1 and len(info["sha256"]) == 64
    assert result.data.shape == tuple(s // 2 for s in gt.shape)
    assert tuple(result.scale) == (2.0, 2.0)  # lines up with the full-resolution slide
    # ... and so does the OME-NGFF result on disk, for other tools
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    [node] = list(Reader(parse_url(info["prediction"]))())
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 2.0]
    # the widget's tiled run is the engine's whole-image prediction at that level
    import torch

    from napari_medseg.core.tiling import predict_whole

    model, _ = Registry().get("tissue").load()
    prob = predict_whole(model, np.asarray(slide.data[1]), channel_axis=-1, postprocess=lambda y: torch.softmax(y, 1),
                         preprocess=lambda b: b.astype(np.float32) / 255.0)
    sure = np.abs(prob[1] - prob[0]) > 1e-4
    assert np.array_equal(np.asarray(result.data)[sure], prob.argmax(0)[sure])
    # the sample's faded stain is a domain shift: the shipped model finds the well-stained half
    assert 0.3 < dice(np.asarray(result.data), gt[::2, ::2]) < 0.95
    models = _dock(viewer, "Model manager")
    tissue = lambda: [e.version for e in models.entries if e.name == "tissue"]  # noqa: E731
    assert tissue() == [1] and {"tissue", "tracking", "glomeruli"} <= {e.name for e in models.entries}
    # the researcher paints a correction, then retrains
    painted = np.asarray(result.data).copy()
    painted[:40, :40] = 1 - painted[:40, :40]
    result.data = painted
    seg.labels.value = result
    seg.steps.value = 4
    seg.retrain_button.clicked()
    _wait(qtbot, seg)
    assert errors == []
    reg = Registry()
    assert [e.version for e in reg.list("tissue")] == [1, 2] and reg.get("tissue").version == 2
    assert seg.entry().version == 2 and "v2" in seg.rounds.value
    saved = list((reg.user_root.parent / "corrections" / "tissue").glob("corrections_*.zarr"))
    assert len(saved) == 1
    import zarr

    assert np.array_equal(zarr.open_array(str(saved[0]), mode="r")[...], painted)
    # the model manager followed by itself; roll back there, and Segment follows too
    qtbot.waitUntil(lambda: tissue() == [1, 2], timeout=5000)
    models.select("tissue", 1)
    assert models.restore_selected().version == 1
    assert Registry().get("tissue").version == 1 and seg.entry().version == 1
    assert "MODEL_CARD" not in models.card.value
    assert "Tissue detector" in models.card.value or "tissue detector" in models.card.value
    html = models.card.native.toHtml()  # the card is rendered, not shown as markdown source
    assert "<h1" in html or "<h2" in html
    assert not any(line.startswith("#") for line in models.card.value.splitlines())
    # the retrained version leaves as a bioimage.io package and comes back as version 3
    models.select("tissue", 2)
    package = reg.user_root.parent / "tissue_v2.zip"
    models.package.value = package
    models.export_button.clicked()
    assert package.is_file() and errors == []
    models.import_button.clicked()
    qtbot.waitUntil(lambda: tissue() == [1, 2, 3], timeout=5000)
    imported = Registry().get("tissue", 3)
    for k, v in Registry().get("tissue", 2).load()[0].state_dict().items():
        assert (imported.load()[0].state_dict()[k] == v).all(), k
    assert Registry().get("tissue").version == 1  # an import is never made current by itself
    stamp = package.stat().st_mtime_ns
    assert models.export_selected() is None  # the file is there now: refused, nothing replaced
    assert package.stat().st_mtime_ns == stamp


def test_stop_during_retraining_keeps_best(viewer, qtbot, errors):
    rng = np.random.default_rng(0)
    from napari_medseg.methods.tissue import synthetic_slide

    rgb, mask = synthetic_slide((256, 256), 5)
    viewer.add_image(rgb, name="slide", rgb=True)
    seg = _dock(viewer, "Segment")
    seg.image.value = viewer.layers["slide"]
    seg.tile.value = 256
    seg.run()
    _wait(qtbot, seg)
    seg.steps.value = 5000
    steps = []
    seg.retrain()
    seg.runner.worker.yielded.connect(lambda p: steps.append(p.step))
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=120_000)
    seg.runner.stop_button.click()
    _wait(qtbot, seg)
    assert seg.runner.status.text() == "stopped" and max(steps) < 5000
    assert Registry().get("tissue").version == 2  # the best so far was kept
    assert rng is not None and errors == []


def test_bad_input_gets_one_message_and_leaves_layers_alone(viewer, qtbot, errors):
    seg = _dock(viewer, "Segment")
    seg.run()
    assert errors and "image layer" in errors[-1]
    img = np.zeros((300, 300), np.float32)
    img[100, 100] = np.nan
    viewer.add_image(img, name="nan image")
    seg.image.value = viewer.layers["nan image"]
    seg.tile.value = 256
    seg.run()
    assert any("RGB" in e for e in errors)  # the tissue model needs colour
    gray = viewer.add_labels(np.zeros((10, 10), np.uint8), name="not from a model")
    seg.labels.value = gray
    seg.retrain()
    assert "labels layer that a model produced" in errors[-1]
    assert np.isnan(viewer.layers["nan image"].data[100, 100]) and len(viewer.layers) == 2


def test_reader_and_writer_keep_the_nifti_affine(viewer, tmp_path):
    import nibabel as nib

    affine = np.diag([0.5, 0.75, 2.0, 1.0])
    affine[:3, 3] = [-10, 20, 3]
    data = np.random.default_rng(0).random((12, 14, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "brain.nii.gz")
    [layer] = viewer.open(str(tmp_path / "brain.nii.gz"), plugin="napari-medseg")
    assert np.allclose(layer.scale, [0.5, 0.75, 2.0]) and np.allclose(layer.translate, [-10, 20, 3])
    labels = viewer.add_labels((data > 0.5).astype(np.uint8), name="mask", scale=layer.scale,
                               translate=layer.translate, metadata={"medseg_io": layer.metadata["medseg_io"]})
    out = tmp_path / "mask.nii.gz"
    labels.save(str(out), plugin="napari-medseg")
    back = nib.load(out)
    assert np.allclose(back.affine, affine) and np.array_equal(np.asarray(back.dataobj), labels.data)


def test_reader_refuses_files_it_does_not_own(tmp_path):
    from napari_medseg._reader import napari_get_reader

    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None
    assert napari_get_reader(str(tmp_path / "a.nii.gz")) is not None


def test_big_results_show_as_a_pyramid_while_filling(viewer, qtbot, errors, monkeypatch):
    """Past the paintable size a result is a multiscale layer napari never reads whole."""
    import napari_medseg.widgets._common as common_mod
    import napari_medseg.widgets.segment.controller as seg_mod
    from napari_medseg.core import tilestore

    for mod in (seg_mod, common_mod):  # the layer's data and the retraining check
        monkeypatch.setattr(mod, "SMALL_ENOUGH_TO_PAINT", 100_000)
    monkeypatch.setattr(tilestore, "PYRAMID_FROM", 1000)
    monkeypatch.setattr(tilestore, "PYRAMID_DOWN_TO", 256)
    viewer.open_sample("napari-medseg", "synthetic_slide")
    seg = _dock(viewer, "Segment")
    seg.image.value = viewer.layers["synthetic slide"]
    seg.level.value = 1  # 1024 x 1024
    seg.tile.value = 512
    seg.run()
    _wait(qtbot, seg)
    lay = seg.last_result
    assert errors == [] and lay.multiscale
    assert [tuple(d.shape) for d in lay.data] == [(1024, 1024), (512, 512), (256, 256)]
    np.testing.assert_array_equal(np.asarray(lay.data[2]), np.asarray(lay.data[0])[::4, ::4])
    seg.labels.value = lay
    seg.retrain()
    assert "too large to retrain" in errors[-1]


def test_opening_a_broken_file_is_one_clear_error_and_changes_nothing(viewer, tmp_path):
    import tifffile

    good = tmp_path / "slide.tif"
    tifffile.imwrite(good, np.zeros((256, 256), np.uint8), tile=(64, 64))
    viewer.open(str(good), plugin="napari-medseg")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    before = broken.read_bytes()
    with pytest.raises(Exception) as err:
        viewer.open(str(broken), plugin="napari-medseg")
    assert "broken.tif" in str(err.value) and "truncated" in str(err.value)
    assert [lay.name for lay in viewer.layers] == ["slide"] and broken.read_bytes() == before


def test_jobs_report_to_napari_activity_dock_and_close_there(viewer, qtbot):
    import time

    from napari.utils import progress

    from napari_medseg.core.jobs import Progress
    from napari_medseg.widgets._runner import JobRunner

    def job(n, pause):
        for i in range(n):
            yield Progress(i + 1, n, f"step {i + 1}")
            time.sleep(pause)  # a step of real work
        return "ok"

    def run(n, pause):
        runner, done, events = JobRunner(), [], []
        runner.start(job(n, pause), on_done=done.append, title="napari-medseg: test job")
        bar = runner.activity  # what napari's Activity dock listens to
        for kind in ("description", "value", "total"):
            getattr(bar.events, kind).connect(lambda e, kind=kind: events.append((kind, e.value)))
        qtbot.waitUntil(lambda: not runner.running, timeout=20_000)
        assert done == ["ok"]
        assert runner.activity is None and not any("test job" in str(p.desc) for p in progress._all_instances)
        return [v for k, v in events if k == "description"], [v for k, v in events if k == "value"], events

    described, values, events = run(3, 0.6)  # slow steps: every message shows
    assert described == [f"napari-medseg: test job — step {i}" for i in (1, 2, 3)]
    assert values == [1, 2, 3] and ("total", 3) in events
    # fast steps: the count follows every report, the description (a redraw of the Activity
    # dock, ~0.1 s each) at most twice a second
    described, values, _ = run(12, 0.05)
    assert values[-1] == 12 and 1 <= len(described) <= 4 < len(values), (described, values)


def test_training_plots_have_labelled_axes_and_a_shared_scale(viewer):
    seg = _dock(viewer, "Box-supervised training")
    assert seg.plot.axis_labels() == {"bottom": "round", "left": "object score"}
    for x, f1 in enumerate((0.2, 0.5, 0.7), start=1):
        seg.plot.add(x, {"object_precision": f1 + 0.1, "object_recall": f1 - 0.1, "object_f1": f1})
    low, high = seg.plot.widget.getPlotItem().getViewBox().viewRange()[1]
    assert low <= 0.0 and high >= 1.0  # every series on the fixed 0-1 axis, not each on its own range
    track = _dock(viewer, "Axon tracking")
    assert track.plot.axis_labels() == {"bottom": "PPO update", "left": "mean_reward", "right": "%"}
