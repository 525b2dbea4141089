"""`bench staining --real` (issue 22): held-out sources, per-std tables, per-crop margins,
the colour check per stain and the checkerboard ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.bench import staining_real as sr
from napari_medseg.methods.staining import hne


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


def test_despeckle_split_keeps_sources_apart():
    split = hne.despeckle_split()
    sizes = [im.shape for im in split.train] + [im.shape for im in split.val] + [
        im.shape for im in split.held_out.values()]
    assert set(split.held_out) == {"tiatoolbox", "stardist"} and len(split.val) == 1
    assert split.train[0].shape[0] == hne.CMU_TRAIN_ROWS  # CMU-1 rows above the held-out gap only
    assert all(len(s) == 3 and s[2] == 3 for s in sizes)
    # no image is used twice: no two parts share pixels
    flat = [im.tobytes()[:4096] for im in split.train + split.val + list(split.held_out.values())]
    assert len(set(flat)) == len(flat)


def test_real_tables_identity_equals_noisy_and_margins_are_per_crop():
    r = sr.despeckle_real({"current": Identity()}, n_tia=1)
    assert r["real_sources"] == {"tiatoolbox": 1, "stardist": 2}
    stds = list(r["real_psnr_despeckled_by_std"])
    assert stds == ["0.1", "0.2", "0.35", "0.5"]
    for k in stds:  # a network that does nothing scores exactly the noisy input
        assert abs(r["real_psnr_despeckled_by_std"][k] - r["real_psnr_noisy_by_std"][k]) < 1e-9
        assert r["real_psnr_best_classical_by_std"][k] > r["real_psnr_noisy_by_std"][k]
        assert len(r["real_crop_margins_db_by_std"][k]) == 3
    # noisier is worse, and the worst crop margin is the smallest of all margins (negative here)
    noisy = [r["real_psnr_noisy_by_std"][k] for k in stds]
    assert noisy == sorted(noisy, reverse=True)
    assert r["real_worst_crop_margin_db"] == min(min(v) for v in r["real_crop_margins_db_by_std"].values()) < 0
    goals = sr.goals_met({**r, "cyclegan_color_distance": {"eosin": 1.0}, "gareau_color_distance": {"eosin": 2.0},
                          "cyclegan_ssim": 0.5, "gareau_ssim": 0.5, "cyclegan_checkerboard_ratio": 1.0,
                          "cyclegan_checkerboard_added": 1.0,
                          "slide_mp_per_s": 3.0, "slide_mp_per_s_before": 1.0, "real_psnr_bf16_minus_fp32_db": 0.0})
    assert not goals["goal_real_psnr_met"] and not goals["goal_real_worst_crop_met"]
    assert goals["goal_cyclegan_color_met"] and goals["goal_slide_speed_met"]


class Halve(torch.nn.Module):  # a despeckler much worse than doing nothing
    def forward(self, x):
        return x * 0.5


def test_speed_goal_needs_the_psnr_of_the_despeckler_it_replaced():
    """3x faster only counts at v1's PSNR (within 0.1 dB): a worse 'current' fails it."""
    r = sr.despeckle_real({"current": Halve(), "v1": Identity()}, n_tia=1)
    diff = r["real_psnr_despeckled_minus_v1_db_by_std"]
    assert list(diff) == ["0.1", "0.2", "0.35", "0.5"] and all(v < -0.1 for v in diff.values())
    assert r["real_psnr_v1_by_std"] == r["real_psnr_noisy_by_std"]
    rest = {"cyclegan_color_distance": {"eosin": 1.0}, "gareau_color_distance": {"eosin": 2.0},
            "cyclegan_ssim": 0.5, "gareau_ssim": 0.5, "cyclegan_checkerboard_added": 1.0,
            "slide_mp_per_s": 3.0, "slide_mp_per_s_before": 1.0, "real_psnr_bf16_minus_fp32_db": 0.0}
    assert not sr.goals_met({**r, **rest})["goal_slide_speed_met"]
    same = {**r, "real_psnr_despeckled_minus_v1_db_by_std": {k: 0.0 for k in diff}}
    assert sr.goals_met({**same, **rest})["goal_slide_speed_met"]


def test_checkerboard_ratio_sees_a_period_two_pattern():
    he = hne.despeckle_split().held_out["tiatoolbox"][:128, :128]
    ref = he.astype(np.float32) / 255.0
    assert abs(sr.checkerboard_ratio(ref, he) - 1.0) < 1e-6
    yy, xx = np.mgrid[0:128, 0:128]
    board = ref + 0.04 * (((yy + xx) % 2) * 2 - 1)[..., None]
    assert sr.checkerboard_ratio(np.clip(board, 0, 1), he) > 1.2


def test_stain_masks_split_tissue_and_lab_distance_is_zero_on_itself():
    he = hne.despeckle_split().held_out["stardist"][:96, :96]
    masks = sr.stain_masks(he)
    h, e = masks["hematoxylin"], masks["eosin"]
    assert h.any() and e.any() and not (h & e).any()
    assert sr.lab_distance(he.astype(np.float32) / 255.0, he, h) < 1e-3
    assert sr.lab_distance(np.full(he.shape, 0.5, np.float32), he, e) > 5.0


class _Despeckler(Identity):
    receptive_radius = 0


class _Generator(torch.nn.Module):
    """A stand-in stain generator: the identity, or the identity plus a 2-px checkerboard."""

    receptive_radius = 0

    def __init__(self, board: float = 0.0):
        super().__init__()
        self.board = board

    def forward(self, x):
        yy, xx = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
        return x + self.board * (((yy + xx) % 2) * 2 - 1).to(x.dtype)


def test_the_generators_own_checkerboard_is_measured_against_its_input():
    """A generator that changes nothing adds nothing (1.0 on every crop), whatever texture its
    input has; one that adds a 2-px pattern is caught."""
    clean = sr.cyclegan_real(_Despeckler(), _Generator(0.0), 64)
    assert len(clean["cyclegan_checkerboard_added_by_crop"]) == clean["n_staining_crops_real"] == 4
    assert np.allclose(clean["cyclegan_checkerboard_added_by_crop"], 1.0, atol=1e-3)
    assert clean["cyclegan_checkerboard_added"] == pytest.approx(max(clean["cyclegan_checkerboard_added_by_crop"]),
                                                                 abs=1e-4)
    patterned = sr.cyclegan_real(_Despeckler(), _Generator(0.1), 64)
    assert patterned["cyclegan_checkerboard_added"] > 1.2
