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
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment", "Model manager", "Axon tracking",
                                                                      "Box-supervised training",
                                                                      "Confocal digital staining",
                                                                      "Joint lesion + tissue", "Adversarial segmentation",
                                                                      "Modality transfer", "Normalize across sites"}
    proc = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-medseg"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("napari-medseg")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "bench" in proc.stdout and "demo" in proc.stdout and "predict" in proc.stdout


def test_one_version_a_version_flag_a_module_entry_and_a_license():
    from importlib.metadata import version

    import napari_medseg

    assert version("napari-medseg") == napari_medseg.__version__  # pyproject reads it from __init__.py
    proc = subprocess.run([sys.executable, "-m", "napari_medseg", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"napari-medseg {napari_medseg.__version__}"
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()


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


def _torch_spec() -> str:
    """The torch requirement the install step uses (TORCH_SPEC, or the Makefile's default)."""
    if os.environ.get("TORCH_SPEC"):
        return os.environ["TORCH_SPEC"]
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.strip().startswith("TORCH_SPEC ?="))
    return line.split("?=", 1)[1].strip()


@pytest.mark.slow
def test_a_fresh_venv_installs_the_wheel_with_plain_pip_and_pip_check_is_clean(tmp_path):
    """As a user would: build the wheel, `pip install` it into a new venv (no make, no
    editable checkout, whatever index pip is configured with), then `pip check`, `--version`
    and `info` from the venv's own console script."""
    import napari_medseg

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    [wheel] = list(tmp_path.glob("napari_medseg-*.whl"))
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    proc = subprocess.run([*pip, "install", "-q", "--no-compile", str(wheel), _torch_spec()], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = subprocess.run([*pip, "check"], capture_output=True, text=True)
    assert check.returncode == 0 and "No broken requirements" in check.stdout, check.stdout
    exe = venv / "bin" / "napari-medseg"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == f"napari-medseg {napari_medseg.__version__}"
    env = {k: v for k, v in os.environ.items() if k != "NAPARI_MEDSEG_HOME"} | {"NAPARI_MEDSEG_HOME": str(tmp_path / "home")}
    info = subprocess.run([str(exe), "info"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert info.returncode == 0, info.stderr
    assert "tissue v1 (shipped)" in info.stdout and str(venv) in info.stdout  # the models came with the wheel


def test_demo_and_makefile_ask_for_the_same_system_packages():
    from napari_medseg.demo import APT_PACKAGES

    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.startswith("APT_PACKAGES"))
    assert line.split("=", 1)[1].split() == APT_PACKAGES.split()
    assert {"xvfb", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-xinerama0"} <= set(APT_PACKAGES.split())


def test_ci_runs_the_readme_test_command_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [ln.split("#")[0].strip() for ln in quick.split("```")[1].splitlines()[1:] if ln.strip()]
    assert commands == ["make demo", "make test"]
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ci[-1] == "make test" and all(c.startswith(("set ", "cd ")) for c in ci[:-1])


def test_readme_shows_every_widget_and_its_links_and_images_exist():
    """The README (the package index's and the napari hub's front page) has a row for every
    widget in the manifest, and every file it links to or shows is in the repository."""
    import re

    import yaml

    readme = (ROOT / "README.md").read_text()
    manifest = yaml.safe_load((ROOT / "napari_medseg" / "napari.yaml").read_text())
    widgets = [w["display_name"] for w in manifest["contributions"]["widgets"]]
    rows = [ln.split("|")[1].strip() for ln in readme.splitlines() if ln.startswith("| ") and "](docs/widgets/" in ln]
    assert sorted(rows) == sorted(widgets)
    targets = re.findall(r"\]\(([^)#\s]+)", readme)
    assert any(t.endswith(".png") for t in targets)  # a screenshot
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert not missing, missing


def test_metadata_tells_the_index_and_the_hub_what_the_package_is():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["authors"] and project["description"]
    assert {"Framework :: napari", "License :: OSI Approved :: BSD License",
            "Intended Audience :: Science/Research"} <= set(project["classifiers"])
    assert "BSD" in (ROOT / "LICENSE").read_text().split("\n", 3)[0] + project["license"]["text"]
