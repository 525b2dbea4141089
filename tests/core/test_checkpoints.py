"""Checkpoints (atomic, sidecar, weights_only) and the versioned model registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_medseg.core import nets
from napari_medseg.core.checkpoints import (
    data_fingerprint,
    load_checkpoint,
    load_model,
    save_checkpoint,
    sidecar_path,
)
from napari_medseg.core.errors import InputError, NotACheckpointError
from napari_medseg.core.registry import Registry

ARCH = {"name": "monai.UNet", "kwargs": {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                                        "channels": [4, 8], "strides": [2], "num_res_units": 0, "norm": "batch"}}


def _state(seed):
    torch.manual_seed(seed)
    return nets.build(ARCH).state_dict()


def _save(path, seed=0, version=1):
    return save_checkpoint(path, _state(seed), method="unit", arch=ARCH, version=version,
                           config={"lr": 1e-3}, metrics={"dice": 0.5 + seed / 100},
                           data_fingerprint=data_fingerprint(np.arange(10)))


def test_round_trip_with_sidecar(tmp_path):
    path = tmp_path / "m.pt"
    meta = _save(path, seed=3)
    state, loaded = load_checkpoint(path)
    for k, v in _state(3).items():
        assert torch.equal(state[k], v), k
    for key in ("method", "version", "arch", "config", "metrics", "data_fingerprint", "created"):
        assert key in loaded
    side = json.loads(sidecar_path(path).read_text())
    assert side["metrics"] == {"dice": 0.53} and side["sha256"] == meta["sha256"]
    assert side["data_fingerprint"] == data_fingerprint(np.arange(10)) != data_fingerprint(np.arange(11))
    model, _ = load_model(path)
    assert not model.training


def test_pickled_code_is_refused_by_the_safe_loader(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-medseg/1", "state_dict": {}, "meta": {}, "obj": Path("/etc")}, path)
    with pytest.raises(NotACheckpointError, match="not a napari-medseg checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", os.urandom(4096)])
def test_garbage_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError):
        load_checkpoint(path)
    assert path.read_bytes() == content  # left untouched


def test_foreign_torch_file_and_truncated_file(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(3)}, foreign)
    with pytest.raises(NotACheckpointError, match="not a napari-medseg checkpoint"):
        load_checkpoint(foreign)
    good = tmp_path / "good.pt"
    _save(good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(NotACheckpointError, match="truncated|not a napari-medseg"):
        load_checkpoint(cut)
    with pytest.raises(InputError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


KILL_SCRIPT = r"""
import sys, time, torch
from napari_medseg.core import checkpoints
real_save = torch.save
def slow_save(obj, fh, *a, **k):
    import io
    buf = io.BytesIO(); real_save(obj, buf)
    data = buf.getvalue()
    fh.write(data[: len(data) // 2]); fh.flush()
    open(sys.argv[2], "w").write("half")   # tell the parent we are half way
    time.sleep(60)
    fh.write(data[len(data) // 2 :])
torch.save = slow_save
torch.manual_seed(1)
from napari_medseg.core import nets
arch = {"name": "monai.UNet", "kwargs": {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
        "channels": [4, 8], "strides": [2], "num_res_units": 0, "norm": "batch"}}
checkpoints.save_checkpoint(sys.argv[1], nets.build(arch).state_dict(), method="unit", arch=arch, version=2)
"""


def test_checkpoint_write_killed_halfway_leaves_previous_loadable(tmp_path):
    path = tmp_path / "model.pt"
    _save(path, seed=0)
    before = path.read_bytes()
    flag = tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), str(flag)])
    t0 = time.time()
    while not flag.exists():
        assert proc.poll() is None, "writer exited early"
        assert time.time() - t0 < 60
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == before
    state, meta = load_checkpoint(path)
    assert meta["version"] == 1
    assert all(torch.equal(state[k], v) for k, v in _state(0).items())


# ------------------------------------------------------------------- registry
def test_registry_versions_are_never_overwritten_and_can_be_restored(tmp_path):
    shipped = tmp_path / "shipped"
    _save(shipped / "unit" / "v0001.pt", seed=0)
    reg = Registry(shipped_root=shipped, user_root=tmp_path / "user")
    assert [e.label for e in reg.list()] == ["unit v1 (shipped)"]
    e2 = reg.save_new_version("unit", _state(2), method="unit", arch=ARCH)
    v2_bytes = e2.path.read_bytes()
    e3 = reg.save_new_version("unit", _state(3), method="unit", arch=ARCH)
    assert (e2.version, e3.version) == (2, 3)
    assert e2.path.read_bytes() == v2_bytes  # untouched by the next version
    assert reg.get("unit").version == 3
    assert reg.restore("unit", 1).source == "shipped"
    assert reg.get("unit").version == 1
    model, meta = reg.get("unit").load()
    assert meta["version"] == 1
    reg.restore("unit", 2)
    state, _ = load_checkpoint(reg.get("unit").path)
    assert all(torch.equal(state[k], v) for k, v in _state(2).items())
    assert [e.version for e in reg.list("unit")] == [1, 2, 3]


def test_registry_bad_requests(tmp_path):
    reg = Registry(shipped_root=tmp_path / "s", user_root=tmp_path / "u")
    with pytest.raises(InputError, match="No model called"):
        reg.get("nope")
    with pytest.raises(InputError, match="letters"):
        reg.save_new_version("../escape", _state(0), arch=ARCH)
    reg.save_new_version("unit", _state(0), arch=ARCH)
    with pytest.raises(InputError, match="no version 7"):
        reg.restore("unit", 7)


def test_shipped_tissue_model_is_found_and_loads():
    reg = Registry()
    entry = reg.get("tissue")
    assert entry.source == "shipped" and (entry.path.parent / "MODEL_CARD.md").is_file()
    model, meta = entry.load()
    assert meta["io"]["classes"] == ["background", "tissue"] and meta["metrics"]["dice"] > 0.9
    y = model(torch.zeros(1, 3, 64, 64))
    assert y.shape == (1, 2, 64, 64)
