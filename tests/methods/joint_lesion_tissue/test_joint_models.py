"""The joint model's registry job: a version with its label set, fine-tuning, baselines by name."""

import numpy as np
import pytest
import torch

from napari_medseg.core.jobs import collect
from napari_medseg.core.registry import Registry
from napari_medseg.methods.joint_lesion_tissue.labels import REDUCED
from napari_medseg.methods.joint_lesion_tissue.models import label_set_of, phantom_training_data, train_joint_model
from napari_medseg.methods.joint_lesion_tissue.training import JointConfig, predict_volume


@pytest.fixture(scope="module")
def data():
    return phantom_training_data(2, 2, 1, seed=5, shape=(32, 36, 32), spacing=(5.0, 5.0, 5.0))


def test_phantom_training_data_is_preprocessed_and_task_specific(data):
    controls, patients, val = data
    assert set(controls[0]) >= {"T1", "tissue"} and "FLAIR" not in controls[0] and "lesion" not in controls[0]
    assert set(patients[0]) >= {"T1", "FLAIR", "lesion"} and "tissue" not in patients[0]
    assert set(val[0]) >= {"T1", "FLAIR", "labels"}
    brain = val[0]["labels"] > 0
    assert abs(float(val[0]["T1"][brain].mean())) < 0.6  # z-normalised inside the head


def test_job_saves_a_version_that_segments_and_fine_tunes(tmp_path, data):
    torch.set_num_threads(1)
    controls, patients, val = data
    reg = Registry(shipped_root=tmp_path / "shipped", user_root=tmp_path / "user")
    cfg = JointConfig(patch_size=(16, 16, 16), steps=4, warmup=2, val_every=2, label_set=REDUCED,
                      roi_size=(32, 36, 32))
    _, result = collect(train_joint_model(reg, controls, patients, val, cfg, features=(4, 4, 4), data="phantom"))
    entry = result["entry"]
    assert entry.name == "joint_lesion_tissue" and entry.version == 1 and entry.meta["metrics"]["best_step"] in (2, 4)
    assert label_set_of(entry.meta) is REDUCED and entry.meta["modalities"] == ["T1", "FLAIR"]
    assert entry.meta["config"]["label_set"] == list(REDUCED.names) and entry.meta["config"]["warmup"] == 2
    model, meta = entry.load()
    labels, probs = predict_volume(model, {"T1": val[0]["T1"]}, ["T1"], label_set_of(meta))
    assert labels.shape == val[0]["T1"].shape and probs.shape[0] == REDUCED.n_classes
    _, again = collect(train_joint_model(reg, controls, patients, val, cfg, resume=(model.state_dict(), meta)))
    assert again["entry"].version == 2 and again["entry"].meta["config"]["resumed_from"] == 1
    cfg_n = JointConfig(patch_size=(16, 16, 16), steps=2, val_every=2, label_set=REDUCED, mode="tissue_only",
                        roi_size=(32, 36, 32))
    _, n = collect(train_joint_model(reg, controls, [], val, cfg_n, features=(4, 4, 4)))
    assert n["entry"].name == "joint_tissue_only" and n["entry"].meta["modalities"] == ["T1"]
    assert np.isfinite(n["entry"].meta["metrics"]["dice"])


def test_train_joint_cli_on_the_phantom(tmp_path, monkeypatch, capsys):
    from napari_medseg import cli

    monkeypatch.setenv("NAPARI_MEDSEG_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    code = cli.main(["train", "joint", "--steps", "2", "--shape", "32,36,32", "--spacing", "5", "--subjects", "1",
                     "--patch", "16", "--mode", "lesion_only"])
    out = capsys.readouterr().out  # the next version after the shipped ones, in the user's folder
    assert code == 0 and "saved joint_lesion_only v" in out and "(user)" in out
    assert cli.main(["train", "joint", "--shape", "8,8"]) == 2
    assert cli.main(["train", "joint", "--data", "folded", "--folded-share", "1.5", "--steps", "1"]) == 2
    assert "--folded-share" in capsys.readouterr().err
    assert cli.main(["train", "joint", "--data", "surface", "--surface-share", "-0.1", "--steps", "1"]) == 2
    assert "--surface-share" in capsys.readouterr().err
    assert cli.main(["train", "joint", "--val-subjects", "0", "--steps", "1"]) == 2
    assert "--val-subjects" in capsys.readouterr().err
    assert cli.main(["train", "joint", "--average-share", "2", "--steps", "1"]) == 2
    assert "--average-share" in capsys.readouterr().err
    assert cli.main(["train", "joint", "--data", "phantom", "--average-share", "0.5", "--steps", "1"]) == 2
    assert "randomised data" in capsys.readouterr().err
    assert cli.main(["train", "joint", "--tight-share", "-1", "--steps", "1"]) == 2
    assert "--tight-share" in capsys.readouterr().err
    # --ship writes the next shipped version and its model card (here into a scratch models/)
    from napari_medseg.core import paths

    shipped = tmp_path / "shipped"
    monkeypatch.setattr(paths, "models_dir", lambda: shipped)
    code = cli.main(["train", "joint", "--steps", "1", "--shape", "32,36,32", "--spacing", "5", "--subjects", "1",
                     "--patch", "16", "--mode", "supervised", "--ship"])
    assert code == 0, capsys.readouterr().err
    card = (shipped / "joint_supervised" / "MODEL_CARD.md").read_text()
    assert (shipped / "joint_supervised" / "v0001.pt").is_file() and "baseline M" in card
    assert "Inputs: T1, FLAIR" in card and "1 iterations" in card
    code = cli.main(["train", "joint", "--steps", "1", "--shape", "32,36,32", "--spacing", "5", "--subjects", "1",
                     "--patch", "16", "--mode", "tissue_only", "--data", "folded", "--folded-share", "1", "--ship"])
    assert code == 0, capsys.readouterr().err
    card = (shipped / "joint_tissue_only" / "MODEL_CARD.md").read_text()
    assert "100% of the subjects with a gyrified cortex" in card
    code = cli.main(["train", "joint", "--steps", "1", "--shape", "32,36,32", "--spacing", "5", "--subjects", "1",
                     "--patch", "16", "--mode", "tissue_only", "--average-share", "1", "--tight-share", "0.5",
                     "--ship"])
    assert code == 0, capsys.readouterr().err
    card = (shipped / "joint_tissue_only" / "MODEL_CARD.md").read_text()
    assert "100% of all subjects drawn as population-average templates" in card
    assert "50% of the skull-stripped subjects with the mask cut closer to the brain" in card
    code = cli.main(["train", "joint", "--steps", "1", "--shape", "32,36,32", "--spacing", "5", "--subjects", "1",
                     "--patch", "16", "--mode", "tissue_only", "--data", "surface", "--surface-share", "1",
                     "--val-subjects", "3", "--ship"])
    assert code == 0, capsys.readouterr().err
    card = (shipped / "joint_tissue_only" / "MODEL_CARD.md").read_text()
    assert "100% of the subjects with the cerebrum of a real brain (fsaverage5" in card
    assert "(3 validation)" in card and "three fully labelled domain-randomised" in card
