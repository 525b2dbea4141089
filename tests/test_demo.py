"""`napari-medseg demo` headless: every widget docked, methods run, screenshots and report written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from skimage.io import imread


@pytest.mark.slow
@pytest.mark.gui
def test_headless_demo_writes_screenshots_and_report(tmp_path):
    out = tmp_path / "demo-output"
    env = {**os.environ, "NAPARI_MEDSEG_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "demo", "--gui", "headless", "--steps", "4",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["widgets_docked"] == ["Adversarial segmentation", "Axon tracking", "Box-supervised training",
                                        "Confocal digital staining", "Joint lesion + tissue", "Modality transfer",
                                        "Model manager", "Normalize across sites", "Segment"]
    tissue = report["methods"]["tissue"]
    assert "error" not in tissue
    assert tissue["retrained_version"] == 2 and 0 <= tissue["dice_before"] <= 1 and 0 <= tissue["dice_after"] <= 1
    tracking = report["methods"]["tracking"]
    assert "error" not in tracking, tracking
    assert 0 <= tracking["si_coverage_pct"] <= 100 and tracking["traces_corrected"] == 3
    assert tracking["finetuned_version"] is not None and "round 1" in tracking["finetune_round"]
    box = report["methods"]["box_iterative"]
    assert "error" not in box, box
    assert [(r["stage"], r["round"]) for r in box["rounds"]] == [(1, 1), (1, 2), (1, 3)]
    assert all(0 <= r["object_f1"] <= 1 for r in box["rounds"]) and box["corrected_pixels"] > 0
    staining = report["methods"]["staining"]
    assert "error" not in staining, staining
    assert staining["levels"] >= 2 and staining["color_distance_full_pipeline"] < staining["color_distance_gareau_only"]
    joint = report["methods"]["joint_lesion_tissue"]
    assert "error" not in joint, joint
    from napari_medseg.core import paths

    shipped = max(int(p.stem[1:]) for p in (paths.models_dir() / "joint_lesion_tissue").glob("v*.pt"))
    assert joint["retrained_version"] == shipped + 1 and joint["exported"] == "joint-labels.nii.gz"
    assert 0 < joint["dice"]["white matter"] <= 1 and joint["volumes_ml"]["white matter"] > 0
    chen = report["methods"]["adversarial_segmentation"]
    assert "error" not in chen, chen
    assert chen["model"].startswith("chen_cardiac v") and set(chen["dice"]) <= {"LV", "myo", "RV"}
    assert chen["dice"] and all(0 <= v <= 1 for v in chen["dice"].values())
    transfer = report["methods"]["modality_transfer"]
    assert "error" not in transfer, transfer
    assert 0 <= transfer["dice"] <= 1 and "segan_tumour v" in transfer["labels_layer"]
    norm = report["methods"]["site_normalization"]
    assert "error" not in norm, norm
    assert norm["domains"] == ["infant", "adult"] and norm["normalized_layers"] == norm["segmented_layers"] == 6
    assert norm["jsd"]["raw"] is not None and norm["jsd"]["normalized"] is not None
    md = (out / "report.md").read_text()
    assert "dice_before" in md
    for name in (report["screenshots"] + tissue["screenshots"] + tracking["screenshots"] + box["screenshots"]
                 + staining["screenshots"] + chen["screenshots"] + transfer["screenshots"] + norm["screenshots"]):
        img = imread(out / name)
        assert img.shape[0] > 500 and img.shape[1] > 800
        canvas = img[100:-100, 400:-400, :3].astype(float)
        assert canvas.std() > 5  # the canvas drew the slide, it is not blank
        assert f"({name})" in md
    # the demo's model versions went to its own folder, not the user's
    assert (out / "home" / "models" / "tissue" / "v0002.pt").is_file()
    assert not (tmp_path / "home" / "models" / "tissue").exists()
