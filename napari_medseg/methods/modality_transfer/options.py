"""What ``napari-medseg train modality_transfer`` and ``predict modality_transfer`` take."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.adversarial.options import slice_predict_options
from ...core.options import option


@dataclass
class TrainOptions:
    variant: str = option("concat", "the critic's input: concat (the paper's) or multiply (the original "
                                    "SegAN's)")
    phantoms: int = option(8, "phantom subjects to train on (at least 3)")
    modality: str = option("FLAIR", "T1, T1c, T2 or FLAIR")
    lr: float | None = option(None, "Adam learning rate (default 1e-3)")
    batch_size: int | None = option(None, "slices per step (default 8)")


PredictOptions = slice_predict_options("segan_tumour")


HELP = "SegAN-style segmentation and modality transfer (Giacomello et al. 2020)"
#: ``napari-medseg train NAME``: (the trainer's method name, aliases, help, the module whose
#: ``train(args, registry)`` and ``model_name(args)`` run it)
TRAIN_COMMANDS = {"modality_transfer": ("modality_transfer", (), HELP, "napari_medseg.methods.modality_transfer.cli")}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {"modality_transfer": (("PredictOptions",), "napari_medseg.methods.modality_transfer.cli:predict", (),
                               HELP + ": one labels file per input")}


#: Hyperparameter defaults of the dock's short runs, declared once here (the widget's
#: settings read them); ``napari-medseg train modality_transfer`` uses the same values where
#: its option is left at None.
DEFAULTS = {
    "steps": 200,  # per transfer mode (the dock's Compare; the source model: source_steps)
    "source_steps": 300,
    "optimizer": "adam",  # as SegAN's code (the paper: RMSprop at 2e-5, SeganConfig)
    "lr": 1e-3,
    "batch_size": 8,
    "seed": 0,
    "phantom_seed": 0,
    "phantom_shape": (64, 72, 64),  # (x, y, axial) voxels of a phantom subject, 2.25 mm
    "fraction": 0.3,  # held-out fraction of the target slices (split by fraction)
    "seg_features": (16, 32, 64, 128),
    "critic_features": (16, 32, 64),
}
