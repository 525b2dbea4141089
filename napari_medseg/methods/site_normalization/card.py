"""The model card written next to the shipped delisle_normalization model."""

from __future__ import annotations

from pathlib import Path

from ...core.cards import write_card

TITLE = "delisle_normalization — adversarial normalization across sites (Delisle et al. 2019)"
WHAT = ("normalises a brain MR image (2-D slices along the first axis, each image rescaled to its brain's "
        "1st-99th percentiles) with a U-Net generator trained so that a domain discriminator cannot tell the "
        "sites apart, and segments the normalised image into CSF, grey and white matter.")
DATA = ("phantom brain scans from an infant-like and an adult-like site (different contrast, resolution and "
        "slice thickness)")
LIMITS = ("trained on two phantom sites; real sites differ in more ways, so train on your own domains (--domain"
          " NAME=DIR, or the dock) before relying on it.")


def write_model_card(folder: Path, meta: dict, command: str) -> Path:
    return write_card(folder, meta, command, title=TITLE, what=WHAT, data=DATA, limits=LIMITS)
