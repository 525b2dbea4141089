"""What ``napari-medseg train adversarial_segmentation`` and ``predict adversarial_segmentation`` take."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.adversarial.options import slice_predict_options
from ...core.options import option


@dataclass
class TrainOptions:
    variant: str = option("adversarial_transfer", "adversarial_transfer (U+A+D+T, the paper's method), adversarial "
                                                  "(U+A) or unet (U)")
    phantoms: int = option(12, "phantom patients to train on (at least 2)")
    lr: float | None = option(None, "Adam learning rate (default 2e-4)")
    batch_size: int | None = option(None, "slices per step (default 8)")


PredictOptions = slice_predict_options("chen_cardiac")


HELP = "adversarial segmentation with weak domain transfer (Chen et al. 2019)"
#: ``napari-medseg train NAME``: (the trainer's method name, aliases, help, the module whose
#: ``train(args, registry)`` and ``model_name(args)`` run it)
TRAIN_COMMANDS = {"adversarial_segmentation": ("adversarial_segmentation", (), HELP, "napari_medseg.methods.adversarial_segmentation.cli")}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {"adversarial_segmentation": (("PredictOptions",), "napari_medseg.methods.adversarial_segmentation.cli:predict", (),
                               HELP + ": one labels file per input")}


#: Hyperparameter defaults of the dock's short runs, declared once here (the widget's
#: settings read them); ``napari-medseg train adversarial_segmentation`` uses the same values
#: where its option is left at None.
DEFAULTS = {
    "steps": 300,  # k: all iterations, pre-training included (the paper: 3000, ChenConfig)
    "pretrain_steps": 100,  # j: supervised iterations of G first (the dock; train: a third of the steps)
    "batch_size": 8,  # slices per step (the paper: 16)
    "lr": 2e-4,  # Adam, the paper's
    "adv_weight": 0.01,  # the adversarial term's weight (Eq. 6: 1), chosen on validation Dice (issue 20)
    "d_warmup": True,  # D also learns during G's pre-training, on G's masks (issue 20: chosen on validation Dice)
    "seed": 0,
    "phantoms": 0,  # the dock: extra phantom patients beside the user's (train: phantoms only, --phantoms)
    "phantom_seed": 7,  # ... and their seed
    "size": 0,  # common in-plane size; 0: the slices as they are
}
