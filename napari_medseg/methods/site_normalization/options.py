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
TRAIN_COMMANDS = {"site_normalization": ("site_normalization", (), HELP, "napari_medseg.cli_adversarial")}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {"site_normalization": (("PredictOptions",), "napari_medseg.cli_adversarial:predict", (),
                               HELP + ": one labels file per input")}
