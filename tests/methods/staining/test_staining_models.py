"""Staining training jobs: registry versions, validation, fine-tuning, the CLI and model cards."""

import json

import numpy as np
import pytest
import torch
from skimage import io

from napari_medseg import cli
from napari_medseg.core.errors import InputError
from napari_medseg.core.jobs import collect
from napari_medseg.core.registry import Registry
from napari_medseg.methods.staining import hne
from napari_medseg.methods.staining.models import train_cyclegan_model, train_despeckle_model, unpaired_halves


@pytest.fixture(scope="module")
def he():
    return hne.sample_he()


@pytest.fixture
def registry(tmp_path):
    return Registry(shipped_root=tmp_path / "shipped", user_root=tmp_path / "user")


def test_unpaired_halves_share_no_pixels(he):
    a, b = unpaired_halves([he[:100, :200]])
    assert a[0].shape == b[0].shape == (100, 100, 3)
    assert np.array_equal(np.concatenate([a[0], b[0]], axis=1), he[:100, :200])


def test_cyclegan_job_saves_the_best_checkpoint_and_fine_tunes(registry, he):
    torch.set_num_threads(2)
    train, val = [he[:160, :320]], [he[600:728, :128]]
    previews = []
    _, result = collect(train_cyclegan_model(registry, train, val, steps_small=4, steps_large=2, crop_small=32,
                                             crop_large=64, ngf=4, n_blocks=1, preview_every=2,
                                             on_preview=lambda step, rgb: previews.append((step, rgb.shape))))
    entry = result["entry"]
    assert entry.name == "stain_cyclegan" and entry.version == 1 and "generator_state" not in result
    m, c = entry.meta["metrics"], entry.meta["config"]
    assert m["best_step"] in (2, 4, 6) and [s for s, _ in previews] == [2, 4, 6]
    assert m["color_distance"] > 0 and m["color_distance_gareau"] > 0 and 0 < m["ssim"] <= 1
    assert c["steps_small"] == 4 and c["n_blocks"] == 1 and c["despeckled_domain_a"] is False
    model, _ = registry.get("stain_cyclegan").load()
    # rebuilt from the checkpoint's own architecture: new models up-sample by resize-convolution
    assert model.receptive_radius == 20 + 3 and model.config["upsample"] == "resize"
    assert c["upsample"] == "resize" and "SSIM" in c["selection"]
    _, again = collect(train_cyclegan_model(registry, train, val, steps_small=2, steps_large=0, crop_small=32,
                                            preview_every=2, resume=True))
    assert again["entry"].version == 2 and again["entry"].meta["config"]["resumed_from"] == 1
    assert again["entry"].meta["arch"]["kwargs"]["upsample"] == "resize"  # a fine-tune keeps its up-sampling
    with pytest.raises(InputError, match="cannot switch"):
        collect(train_cyclegan_model(registry, train, val, steps_small=1, steps_large=0, crop_small=32,
                                     resume=True, upsample="transposed"))
    with pytest.raises(InputError, match="RGB"):
        collect(train_cyclegan_model(registry, [he[..., 0]], val, steps_small=1, steps_large=0))


def test_cyclegan_fine_tune_converts_a_transposed_version_to_resize_convolution(registry, he):
    torch.set_num_threads(2)
    train, val = [he[:160, :320]], [he[600:728, :128]]
    _, first = collect(train_cyclegan_model(registry, train, val, steps_small=2, steps_large=0, crop_small=32,
                                            ngf=4, n_blocks=1, preview_every=2, upsample="transposed"))
    assert "upsample" not in first["entry"].meta["arch"]["kwargs"]  # CycleGAN's own layout
    _, kept = collect(train_cyclegan_model(registry, train, val, steps_small=2, steps_large=0, crop_small=32,
                                           preview_every=2, resume=True))
    assert "upsample" not in kept["entry"].meta["arch"]["kwargs"]  # a plain fine-tune keeps it
    _, converted = collect(train_cyclegan_model(registry, train, val, steps_small=2, steps_large=0, crop_small=32,
                                                preview_every=2, resume=True, upsample="resize"))
    entry = converted["entry"]
    assert entry.meta["arch"]["kwargs"]["upsample"] == "resize" and entry.meta["config"]["resumed_from"] == 2
    model, _ = registry.get("stain_cyclegan").load()
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    # nearest -> bilinear: a fine-tune of the same weights with the other resizing
    _, smooth = collect(train_cyclegan_model(registry, train, val, steps_small=1, steps_large=0, crop_small=32,
                                             preview_every=1, resume=True, upsample="bilinear"))
    assert smooth["entry"].meta["arch"]["kwargs"]["upsample"] == "bilinear"
    assert smooth["entry"].meta["config"]["upsample"] == "bilinear"
    bilinear, _ = registry.get("stain_cyclegan").load()
    assert [m.mode for m in bilinear.modules() if isinstance(m, torch.nn.Upsample)] == ["bilinear", "bilinear"]
    with pytest.raises(InputError, match="cannot switch it back"):
        collect(train_cyclegan_model(registry, train, val, steps_small=1, steps_large=0, crop_small=32,
                                     resume=True, upsample="resize"))


def test_train_despeckle_cli_from_a_folder_ships_nothing_by_default(tmp_path, he, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    torch.set_num_threads(2)
    for name, im in (("a.png", he[:200, :300]), ("b.png", he[300:500, :300])):
        (tmp_path / "imgs").mkdir(exist_ok=True)
        io.imsave(tmp_path / "imgs" / name, im, check_contrast=False)
    code = cli.main(["train", "despeckle", "--images", str(tmp_path / "imgs"), "--steps", "2", "--patch", "64",
                     "--batch-size", "2", "--std", "0.2"])
    assert code == 0 and "saved despeckle v" in capsys.readouterr().out
    meta = json.loads(next((tmp_path / "home" / "models" / "despeckle").glob("v*.json")).read_text())
    assert meta["config"]["speckle_std"] == 0.2 and meta["config"]["image_shapes"] == [[200, 300, 3], [200, 300, 3]]
    assert 12 < meta["metrics"]["psnr_noisy"] < 32 and np.isfinite(meta["metrics"]["psnr"])  # std 0.2 on tissue
    assert cli.main(["train", "despeckle", "--images", str(tmp_path / "none"), "--steps", "1"]) == 2
    assert cli.main(["train", "despeckle", "--images", str(tmp_path / "imgs"), "--std", "low"]) == 2


def test_despeckle_job_resumes_and_keeps_the_best(registry, he):
    torch.set_num_threads(2)
    seen = []
    _, r1 = collect(train_despeckle_model(registry, [he[:256]], [he[600:700]], steps=2, batch_size=2, crop=64,
                                          on_best=lambda model, metrics, step: seen.append(step)))
    assert r1["entry"].version == 1 and seen and r1["entry"].meta["metrics"]["best_step"] == seen[-1]
    model, meta = registry.get("despeckle").load()
    _, r2 = collect(train_despeckle_model(registry, [he[:256]], [he[600:700]], steps=1, batch_size=2, crop=64,
                                          resume=(model.state_dict(), meta)))
    assert r2["entry"].version == 2 and r2["entry"].meta["config"]["resumed_from"] == 1


def test_train_despeckle_distill_makes_a_narrower_version_from_the_current_one(tmp_path, he, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    torch.set_num_threads(2)
    (tmp_path / "imgs").mkdir()
    io.imsave(tmp_path / "imgs" / "a.png", he[:300, :300], check_contrast=False)
    # the current shipped version, or the newest of the paper's network when the current one has another body
    teacher = [e for e in Registry().list("despeckle") if e.meta["arch"]["name"] == "combalia2019.DespeckleNet"][-1]
    assert teacher.meta["arch"]["kwargs"].get("filters", 64) > 8
    code = cli.main(["train", "despeckle", "--distill", "--filters", "8", "--images", str(tmp_path / "imgs"),
                     "--steps", "2", "--patch", "32", "--batch-size", "2"])
    assert code == 0
    entry = Registry().get("despeckle")
    assert entry.version > teacher.version and entry.meta["config"]["distilled_from"] == teacher.version
    assert entry.meta["arch"]["kwargs"] == {**teacher.meta["arch"]["kwargs"], "filters": 8}
    model, _ = entry.load()
    assert model.last.in_channels == 8 and model.gate is not None
    assert cli.main(["train", "despeckle", "--filters", "8", "--steps", "1"]) == 2  # --filters needs --distill
    assert cli.main(["train", "despeckle", "--distill", "--resume", "--steps", "1"]) == 2
    assert "--distill" in capsys.readouterr().err


def test_distill_takes_a_teacher_version_and_the_students_dilations(tmp_path, he, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    torch.set_num_threads(2)
    (tmp_path / "imgs").mkdir()
    io.imsave(tmp_path / "imgs" / "a.png", he[:300, :300], check_contrast=False)
    wide = max((e for e in Registry().list("despeckle") if e.meta["arch"]["name"] == "combalia2019.DespeckleNet"
                and e.meta["arch"]["kwargs"].get("filters", 64) > 8), key=lambda e: e.version)
    common = ["--images", str(tmp_path / "imgs"), "--steps", "2", "--patch", "32", "--batch-size", "2"]
    code = cli.main(["train", "despeckle", "--distill", "--teacher", str(wide.version), "--filters", "8",
                     "--dilations", "1,2,4,8,4,2,1", *common])
    assert code == 0
    entry = Registry().get("despeckle")
    assert entry.meta["config"]["distilled_from"] == wide.version
    assert entry.meta["arch"]["kwargs"]["dilations"] == [1, 2, 4, 8, 4, 2, 1]
    model, _ = entry.load()
    assert model.dilations == (1, 2, 4, 8, 4, 2, 1) and model.receptive_radius == 22 + 2
    dilated = [m.dilation[0] for m in model.body if isinstance(m, torch.nn.Conv2d)]
    assert dilated == [1, 2, 4, 8, 4, 2, 1]
    # one clear error each: the wrong count of dilations, dilations without --distill, a version that is not there
    assert cli.main(["train", "despeckle", "--distill", "--teacher", str(wide.version), "--filters", "8",
                     "--dilations", "1,2", *common]) == 2
    assert "dilations" in capsys.readouterr().err
    assert cli.main(["train", "despeckle", "--dilations", "1,2,4,8,4,2,1", "--steps", "1"]) == 2
    assert cli.main(["train", "despeckle", "--distill", "--teacher", "99", "--filters", "8", *common]) == 2
    assert "no version 99" in capsys.readouterr().err
    # the shipped U-shaped version (v4) cannot be narrowed: one clear message
    unet = [e for e in Registry().list("despeckle") if e.meta["arch"]["name"] == "combalia2019.UDespeckleNet"]
    assert unet
    assert cli.main(["train", "despeckle", "--distill", "--teacher", str(unet[-1].version), "--filters", "8",
                     *common]) == 2
    assert "paper's network" in capsys.readouterr().err


def test_distill_loss_pulls_towards_clean_and_teacher():
    from napari_medseg.methods.staining.training import distill_mse

    clean, teacher = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    weight = torch.full((1, 1, 4, 4), 2.0)
    target = torch.cat([clean, weight, teacher], 1)
    assert float(distill_mse(clean, target)) == pytest.approx(2.0)  # all of the teacher's part
    assert float(distill_mse(torch.full((1, 1, 4, 4), 0.5), target)) == pytest.approx(1.0)  # the minimum
