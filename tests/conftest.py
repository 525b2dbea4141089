from __future__ import annotations

import os

import numpy as np
import pytest
import torch

_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:  # pytest -n N (make test): the CPU's threads are shared out between the workers
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the tests marked slow go first, so that the longest ones (the
    headless demo, the fresh-venv install) run beside the rest instead of after them."""
    if config.getoption("numprocesses", None):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: order kept otherwise


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that sets torch's thread count (some ask for two) leaves it as it found it, so
    that it does not carry over to the tests after it in the same worker."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def medseg_home(tmp_path, monkeypatch):
    """Every test gets its own user data dir: no test touches the real one."""
    home = tmp_path / "medseg-home"
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(home))
    monkeypatch.delenv("NAPARI_MEDSEG_DEVICE", raising=False)
    return home


def randomize_batchnorm(model, seed=0):
    """Non-trivial running statistics, so that border and seam errors cannot hide."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.fixture
def unet2d():
    from napari_medseg.core import nets

    torch.manual_seed(0)
    return randomize_batchnorm(nets.build(nets.bench_unet_arch()))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def one_thread():
    """Tiny convolutions are overhead-bound: one thread is ~1.6x faster than two here
    (``_torch_threads_restored`` puts the count back after the test)."""
    torch.set_num_threads(1)
