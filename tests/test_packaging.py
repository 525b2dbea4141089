"""The plugin installs as napari expects, and a wheel carries models/ and sample_data/."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-medseg")
    manifest.validate_imports()  # every python_name resolves
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment", "Model manager"}
    proc = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-medseg"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("napari-medseg")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "bench" in proc.stdout and "demo" in proc.stdout


@pytest.mark.slow
def test_wheel_carries_models_and_sample_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = list(tmp_path.glob("napari_medseg-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "napari_medseg/_bundled/models/tissue/v0001.pt" in names
    assert "napari_medseg/_bundled/sample_data/synthetic_slide.json" in names
    assert "napari_medseg/napari.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("from napari_medseg.core import paths; from napari_medseg.core.registry import Registry;"
            "print(paths.models_dir()); print(paths.sample_data_dir()); print(Registry().get('tissue').label)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    models, samples, label = out.stdout.split("\n")[:3]
    assert models.startswith(str(site)) and samples.startswith(str(site))
    assert label == "tissue v1 (shipped)"
