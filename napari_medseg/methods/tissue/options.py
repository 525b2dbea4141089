"""What ``napari-medseg train tissue`` takes (defaults live here)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.options import option


@dataclass
class TrainOptions:
    adversarial: float = option(0.0, "adversarial mode: a mask discriminator's term with this weight",
                                metavar="WEIGHT")


#: What ``napari-medseg train tissue`` runs when --steps is not given.
TRAIN_DEFAULTS = {"steps": 400}

#: Hyperparameter defaults of the Segment dock's retraining rounds, declared once here.
DEFAULTS = {
    "steps": 60,  # training steps per "Retrain from corrections" round (8 patches a step)
}
