"""The model card written next to the shipped chen_cardiac model."""

from __future__ import annotations

from pathlib import Path

from ...core.cards import write_card

TITLE = "chen_cardiac — adversarial cardiac segmentation with weak domain transfer (Chen et al. 2019)"
WHAT = ("segments LGE short-axis MR slices into LV blood pool, LV myocardium and RV; trained with labels on "
        "bSSFP and T2 only, the LGE images entering through a conditional mask discriminator and pseudo-masks"
        " from the other sequences (weak domain transfer).")
DATA = ("phantom cardiac patients seen by bSSFP, T2 and LGE (MS-CMR proportions: a few with LGE labels for "
        "validation only)")
LIMITS = ("trained on phantoms with a small CPU budget; on real LGE, fine-tune in the dock on your own patients"
          " (bSSFP/T2 labels) first.")


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    return write_card(folder, meta, command, title=TITLE, what=WHAT, data=DATA, limits=LIMITS)
