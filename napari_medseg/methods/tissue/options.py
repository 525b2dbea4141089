"""What ``napari-medseg train tissue`` takes (defaults live here)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.options import option


@dataclass
class TrainOptions:
    adversarial: float = option(0.0, "adversarial mode: a mask discriminator's term with this weight",
                                metavar="WEIGHT")
