"""What ``napari-medseg train site_normalization`` and ``predict site_normalization`` take."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.adversarial.options import slice_predict_options
from ...core.options import option


@dataclass
class TrainOptions:
    variant: str = option("adversarial", "adversarial (the paper's normalizer with a site discriminator), "
                                         "standardized (every image z-scored, the paper's Exp. 5) or none (the "
                                         "segmenter alone on raw images)")
    phantoms: int = option(4, "phantom volumes per site when no --domain is given (at least 2)")
    domain: list = option([], "a domain folder of NIfTI/TIFF images with <image>_labels.<ext>; two or more "
                              "(default: phantom scans of an infant-like and an adult-like site)", metavar="NAME=DIR")
    lr: float | None = option(None, "Adam learning rate (default 2e-3)")
    batch_size: int | None = option(None, "slices per step (default 4)")


PredictOptions = slice_predict_options("delisle_normalization")


HELP = "adversarial normalization across sites (Delisle et al. 2019)"
#: ``napari-medseg train NAME``: (the trainer's method name, aliases, help, the module whose
#: ``train(args, registry)`` and ``model_name(args)`` run it)
TRAIN_COMMANDS = {"site_normalization": ("site_normalization", (), HELP, "napari_medseg.methods.site_normalization.cli")}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {"site_normalization": (("PredictOptions",), "napari_medseg.methods.site_normalization.cli:predict", (),
                               HELP + ": one labels file per input")}


#: Hyperparameter defaults of the dock's short runs, declared once here (the widget's
#: settings read them); ``napari-medseg train site_normalization`` uses the same values where
#: its option is left at None.
DEFAULTS = {
    "steps": 300,  # warm-up included (the paper: 3000, NormalizationConfig)
    "warmup_steps": 60,  # G learns the identity first (the dock; train: a fifth of the steps)
    "patch": 32,  # side of the square / cubic patches, a multiple of 8
    "batch_size": 4,  # patches per domain and step
    "adv_weight": 0.01,  # the adversarial term's weight, chosen on validation Dice (issue 20; 1 hurt in short runs)
    "identity_weight": 0.0,  # MSE(G(x), x) after the warm-up (the paper: 0)
    "lr": 2e-3,  # Adam, all three networks (the paper's SGD rates learn little in short runs)
    "features": 8,  # features of the first level of G, S and D
    "seed": 0,
}
