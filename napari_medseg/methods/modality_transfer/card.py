"""The model card written next to the shipped segan_tumour model."""

from __future__ import annotations

from pathlib import Path

from ...core.cards import write_card

TITLE = ("segan_tumour — SegAN whole-tumour segmentation, a source model for modality transfer (Giacomello et "
         "al. 2020)")
WHAT = ("segments the whole tumour on 2-D axial brain MR slices of one modality (the one in its config), each"
        " slice scaled to its 2nd-98th percentiles; its critic is saved with it (segan_tumour_critic) so that"
        " it can be fine-tuned to another modality in the dock.")
DATA = "phantom brain-tumour subjects (high and low grade), one modality"
LIMITS = ("trained on phantoms with a small CPU budget; it reads one modality only, and real scans need fine-"
          "tuning (the Modality transfer dock) before use.")


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    return write_card(folder, meta, command, title=TITLE, what=WHAT, data=DATA, limits=LIMITS)
