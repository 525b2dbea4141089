"""Device choice, memory preflight, jobs, layering."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from napari_medseg.core import device as dev
from napari_medseg.core.errors import InputError, MemoryPreflightError
from napari_medseg.core.jobs import Job, Progress, collect, run_in_terminal

PKG = Path(__file__).resolve().parents[2] / "napari_medseg"
FORBIDDEN = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy"}


# ------------------------------------------------------------------- layering
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_engine_and_methods_never_import_qt_or_napari_in_source():
    offenders = {}
    for sub in ("core", "methods"):
        for f in (PKG / sub).rglob("*.py"):
            bad = _imports(f) & FORBIDDEN
            if bad:
                offenders[str(f.relative_to(PKG))] = sorted(bad)
    assert offenders == {}


def _package_imports(path: Path) -> set[str]:
    """Absolute ``napari_medseg.*`` module names that ``path`` imports (relative imports resolved)."""
    parts = ["napari_medseg", *path.relative_to(PKG).with_suffix("").parts]
    package = parts[:-1]  # __init__.py: its own package, as for any module beside it
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out |= {mod} | ({f"{mod}.{a.name}" for a in node.names} if not node.module or node.level else set())
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("napari_medseg.")}


def test_core_imports_no_method_and_no_method_imports_another():
    offenders = {}
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).parts
        if rel[0] not in ("core", "methods") or "__pycache__" in rel:
            continue
        own = None if rel[0] == "core" else rel[1] if len(rel) > 2 else None
        for mod in _package_imports(f):
            p = mod.split(".")
            if len(p) > 2 and p[1] in ("widgets", "bench", "cli", "demo"):
                offenders.setdefault(str(f.relative_to(PKG)), []).append(mod)
            if len(p) > 2 and p[1] == "methods" and (rel[0] == "core" or p[2] != own):
                offenders.setdefault(str(f.relative_to(PKG)), []).append(mod)
    assert offenders == {}


def test_engine_and_methods_never_import_qt_or_napari_at_run_time():
    mods = sorted(
        "napari_medseg." + ".".join(f.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__")
        for sub in ("core", "methods")
        for f in (PKG / sub).rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------- device
def test_auto_device_is_the_best_available():
    assert str(dev.select_device()) == dev.available_devices()[0]
    assert dev.available_devices()[-1] == "cpu"


def test_device_override_by_argument_and_environment(monkeypatch):
    assert dev.select_device("cpu").type == "cpu"
    monkeypatch.setenv(dev.ENV_VAR, "cpu")
    assert dev.select_device().type == "cpu"
    # the argument wins over the environment
    monkeypatch.setenv(dev.ENV_VAR, "cuda:99")
    assert dev.select_device("cpu").type == "cpu"
    with pytest.raises(InputError, match="not available"):
        dev.select_device()


def test_unknown_device_is_one_clear_error():
    with pytest.raises(InputError, match="Unknown device"):
        dev.select_device("tpu-of-dreams")


def test_autocast_only_on_cuda():
    with dev.autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_preflight_names_what_to_reduce(unet2d):
    with pytest.raises(MemoryPreflightError) as err:
        dev.preflight(unet2d, torch.device("cpu"), (4096, 4096), 8, free_bytes=200 * 2**20)
    msg = str(err.value)
    assert "tile size" in msg and "4096×4096" in msg and "batch size" in msg and "2048×2048" in msg
    est = dev.preflight(unet2d, torch.device("cpu"), (256, 256), 1, free_bytes=8 * 2**30)
    assert est.fits and 0 < est.bytes_needed < 8 * 2**30
    # training needs more than inference for the same tile
    assert dev.estimate_job_bytes(unet2d, (256, 256), 1, 1, training=True) > dev.estimate_job_bytes(unet2d, (256, 256), 1, 1)


# ----------------------------------------------------------------------- jobs
def _counting(n, cleanup):
    try:
        for i in range(1, n + 1):
            yield Progress(i, n, f"step {i}", {"value": float(i)})
        return "all done"
    finally:
        cleanup.append("closed")


def test_job_reports_progress_and_returns_result():
    cleanup = []
    reports, result = collect(_counting(5, cleanup))
    assert [p.step for p in reports] == [1, 2, 3, 4, 5]
    assert reports[-1].fraction == 1.0 and reports[2].metrics == {"value": 3.0}
    assert result == "all done" and cleanup == ["closed"]


def test_stop_between_steps_runs_cleanup_and_stops_early():
    cleanup = []
    job = Job(_counting(100, cleanup))
    seen = []
    for p in job:
        seen.append(p.step)
        if p.step == 3:
            job.stop()
    assert seen == [1, 2, 3]
    assert job.stopped and not job.finished and job.result is None
    assert cleanup == ["closed"]


def test_stop_from_another_thread():
    cleanup = []
    gate = threading.Event()

    def slow():
        try:
            i = 0
            while True:
                i += 1
                gate.set()
                yield Progress(i, 0, "forever")
        finally:
            cleanup.append("closed")

    job = Job(slow())
    t = threading.Thread(target=job.run)
    t.start()
    gate.wait(5)
    job.stop()
    t.join(5)
    assert not t.is_alive() and job.stopped and cleanup == ["closed"]


def test_terminal_runner_runs_the_same_generator(capsys):
    cleanup = []
    job = run_in_terminal(_counting(4, cleanup), "count")
    assert job.result == "all done" and job.last.step == 4 and cleanup == ["closed"]
    assert "count" in capsys.readouterr().err
