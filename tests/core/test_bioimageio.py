"""bioimage.io export and import: the packages pass bioimageio.core's own model test and
come back into the registry as the same model."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from napari_medseg.cli import main
from napari_medseg.core.bioimageio import export_model, import_model, check_package
from napari_medseg.core.errors import InputError
from napari_medseg.core.registry import Registry

pytest.importorskip("bioimageio.core")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    return Registry()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tissue", "stain_cyclegan", "despeckle", "joint_lesion_tissue"])
def test_exported_package_passes_bioimageio_test_and_imports_back(registry, tmp_path, name):
    entry = registry.get(name)
    path = export_model(entry, tmp_path / f"{name}.zip")
    result = check_package(path)
    assert result["passed"], result["details"]
    with zipfile.ZipFile(path) as z:
        rdf = z.read("rdf.yaml").decode()
        assert "format_version: 0.5" in rdf and "torchscript" in rdf
        x = np.load(z.open("test_input.npy"))
        expected = np.load(z.open("test_output.npy"))
    # the package's expected output is what the plugin's own model gives
    model, meta = entry.load()
    with torch.no_grad():
        t = torch.from_numpy(x)
        ours = {"tissue": lambda: torch.softmax(model(t / 255.0), 1),
                "joint_lesion_tissue": lambda: torch.softmax(model(t), 1)}.get(name, lambda: model(t))()
    assert x.ndim == (5 if name == "joint_lesion_tissue" else 4)
    # (the despeckler's package has its batch norms folded into the convolutions: float rounding)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4 if name == "despeckle" else 1e-5)
    back = import_model(registry, path, name=f"{name}_imported")
    again, again_meta = back.load()
    assert again_meta["arch"] == meta["arch"] and not back.made_current
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    with pytest.raises(InputError, match="never replaces"):
        export_model(entry, path)


def test_export_and_import_refuse_what_they_cannot_take(registry, tmp_path, capsys):
    with pytest.raises(InputError, match="cannot be exported"):
        export_model(registry.get("tracking"), tmp_path / "t.zip")
    with pytest.raises(InputError, match=".zip"):
        export_model(registry.get("tissue"), tmp_path / "t.yaml")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("rdf.yaml", "type: model\n")
    with pytest.raises(InputError, match="not exported by napari-medseg"):
        import_model(registry, other)
    (tmp_path / "plain.zip").write_text("not a zip")
    assert main(["import-model", str(tmp_path / "plain.zip")]) == 2
    assert "not a bioimage.io package" in capsys.readouterr().err
    assert not (tmp_path / "home" / "models").exists() or not any((tmp_path / "home" / "models").rglob("*.pt"))


@pytest.mark.slow
def test_cli_exports_tests_and_imports(registry, tmp_path, capsys):
    out = tmp_path / "glom.zip"
    assert main(["export-model", "glomeruli", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "passed bioimageio.core's model test" in text
    assert main(["import-model", str(out)]) == 0
    entry = Registry().list("glomeruli")[-1]
    assert entry.source == "user" and "glom.zip" in json.dumps(entry.meta.get("imported_from", ""))
