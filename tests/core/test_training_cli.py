"""Training keeps its best checkpoint when stopped; the CLI runs the same engine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from napari_medseg.core.tiling import open_pyramid_output
from napari_medseg.cli import main
from napari_medseg.core.jobs import Job
from napari_medseg.core.registry import Registry
from napari_medseg.core.training import train_supervised
from napari_medseg.methods.tissue import MODEL_NAME, synthetic_slide, train_tissue


def _toy():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.rand(4, 1, 16, 16)
    y = (x > 0.5).long()[:, 0]
    return model, (lambda _s: (x, y)), (lambda out, t: torch.nn.functional.cross_entropy(out, t))


def test_training_saves_each_improvement_and_keeps_best_on_stop():
    model, batch, loss = _toy()
    scores = iter([0.2, 0.6, 0.4, 0.9])
    saved = []
    job = Job(train_supervised(model, batch, loss, steps=100, validate=lambda m: {"dice": next(scores)},
                               val_every=2, save_best=lambda state, m, step: saved.append((m["dice"], step))))
    for p in job:
        if p.step == 6:
            job.stop()
    assert job.stopped
    assert saved == [(0.2, 2), (0.6, 4)]  # 0.4 at step 6 did not beat 0.6


def test_stopped_before_any_validation_still_keeps_a_model():
    model, batch, loss = _toy()
    saved = []
    job = Job(train_supervised(model, batch, loss, steps=100, validate=lambda m: {"dice": 0.1}, val_every=50,
                               save_best=lambda state, m, step: saved.append(step)))
    for p in job:
        if p.step == 3:
            job.stop()
    assert saved == [3]


def test_training_loss_goes_down():
    model, batch, loss = _toy()
    job = Job(train_supervised(model, batch, loss, steps=60, lr=5e-2))
    losses = [p.metrics["loss"] for p in job]
    assert losses[-1] < 0.5 * losses[0]


def test_stopping_tissue_training_writes_the_best_version(tmp_path):
    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "user")
    job = Job(train_tissue(reg, steps=40, batch_size=2, patch=96, slide_size=256, train_seeds=(1,)))
    for p in job:
        if p.step == 12:
            job.stop()
    entry = reg.get(MODEL_NAME)
    assert entry.version == 1 and entry.meta["metrics"]["best_step"] in (5, 10, 12)
    assert entry.meta["io"]["classes"] == ["background", "tissue"]


def test_synthetic_slide_is_seeded():
    a, ma = synthetic_slide((256, 256), 3)
    b, mb = synthetic_slide((256, 256), 3)
    c, _ = synthetic_slide((256, 256), 4)
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and not np.array_equal(a, c)
    assert 0.2 < ma.mean() < 0.7 and a.dtype == np.uint8 and a.shape == (256, 256, 3)


# ------------------------------------------------------------------------ CLI
def test_cli_info_lists_devices_and_the_shipped_model(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "cpu" in out and "tissue v1 (shipped)" in out


def test_cli_segment_and_models(tmp_path, capsys):
    rgb, mask = synthetic_slide((384, 320), 11)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(128, 128))
    out = tmp_path / "tissue.zarr"
    assert main(["segment", str(path), "--model", "tissue", "--out", str(out), "--tile", "256"]) == 0
    labels = open_pyramid_output(out)[0][...]
    assert labels.shape == mask.shape
    inter = np.logical_and(labels == 1, mask == 1).sum()
    assert 2 * inter / (labels.sum() + mask.sum()) > 0.9
    # the result is an OME-NGFF 0.5 image that ome-zarr-py itself finds and reads
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    [node] = list(Reader(parse_url(str(out)))())
    assert [a["name"] for a in node.metadata["axes"]] == ["y", "x"]
    np.testing.assert_array_equal(np.asarray(node.data[0]), labels)
    # an image with a physical pixel size: the result carries it, so it lands on the image
    from napari_medseg.core.io import write_ome_tiff

    calibrated = write_ome_tiff(tmp_path / "slide.ome.tif", rgb, axes="YXS", scale=[0.5, 0.25])
    out2 = tmp_path / "tissue_um.zarr"
    assert main(["segment", str(calibrated), "--model", "tissue", "--out", str(out2), "--tile", "256"]) == 0
    [node] = list(Reader(parse_url(str(out2)))())
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [0.5, 0.25]
    assert main(["models", "list"]) == 0
    assert "tissue v1 (shipped) (current)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "MISSING.tif", "--out", "x.zarr"], "MISSING.tif"),
        (["bench", "nonsense"], "Unknown benchmark"),
        (["models", "restore", "tissue", "9"], "no version 9"),
        (["info", "--device", "cuda:42"], "not available"),
        (["segment", "SLIDE", "--out", "x.zarr", "--level", "5"], "pyramid level"),
        (["segment", "SLIDE", "--out", "x.zarr", "--model", "tissue:abc"], "whole-number version"),
    ],
)
def test_cli_bad_input_is_one_clear_error(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite(tmp_path / "slide.tif", synthetic_slide((64, 64), 1)[0], photometric="rgb")
    argv = [str(tmp_path / "slide.tif") if a == "SLIDE" else a for a in argv]
    proc = subprocess.run([sys.executable, "-m", "napari_medseg.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_refuses_a_file_that_is_not_an_image(tmp_path, monkeypatch):
    bad = tmp_path / "notes.tif"
    bad.write_text("these are my notes, not an image")
    proc = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "segment", str(bad), "--out",
                           str(tmp_path / "o.zarr")], capture_output=True, text=True)
    assert proc.returncode == 2 and "notes.tif" in proc.stderr and "Traceback" not in proc.stderr
    assert bad.read_text() == "these are my notes, not an image"


@pytest.mark.slow
def test_cli_segment_on_a_two_worker_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    rgb, mask = synthetic_slide((320, 288), 12)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(128, 128))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main(["segment", str(path), "--out", str(tmp_path / "remote.zarr"), "--tile", "256",
                     "--scheduler", cluster.scheduler_address]) == 0
    assert main(["segment", str(path), "--out", str(tmp_path / "local.zarr"), "--tile", "256"]) == 0
    remote = open_pyramid_output(tmp_path / "remote.zarr")[0][...]
    assert np.array_equal(remote, open_pyramid_output(tmp_path / "local.zarr")[0][...])
    assert remote.shape == mask.shape and (remote == mask).mean() > 0.95


def test_diverging_training_is_one_clear_error_and_saves_nothing(tmp_path):
    from napari_medseg.core.errors import TrainingError

    model, batch, _loss = _toy()
    saved = []
    gen = train_supervised(model, batch, lambda out, t: out.sum() * float("nan"), steps=10,
                           validate=lambda m: {"dice": 0.5}, val_every=5, save_best=lambda *a: saved.append(a))
    with pytest.raises(TrainingError, match="lower the learning rate"):
        Job(gen).run()
    assert saved == []


def test_ship_renumbers_the_kept_round_and_never_overwrites(tmp_path):
    import torch

    from napari_medseg.cli import _ship
    from napari_medseg.core.errors import MedsegError
    from napari_medseg.core.registry import Registry

    reg = Registry(shipped_root=tmp_path / "none", user_root=tmp_path / "user")
    for i in range(3):
        reg.save_new_version("unit", {"w": torch.full((2,), float(i))}, method="m", arch={"name": "x"},
                             metrics={"f1": i / 10}, extra={"stage": 1, "round": i + 1})
    dest = tmp_path / "models" / "unit"
    path = _ship(reg.get("unit", 2), dest, [])
    assert path.name == "v0001.pt"
    shipped = Registry(shipped_root=tmp_path / "models", user_root=tmp_path / "other").get("unit")
    assert shipped.version == 1 and shipped.meta["trained_as_version"] == 2 and shipped.meta["round"] == 2
    assert shipped.meta["metrics"] == {"f1": 0.1}
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.full((2,), 1.0))
    assert _ship(reg.get("unit", 3), dest, [1]).name == "v0002.pt"
    with pytest.raises(MedsegError, match="never overwritten"):
        _ship(reg.get("unit", 1), dest, [0])
