"""What ``napari-medseg train box_iterative`` and ``predict box_iterative`` take (defaults live here)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.options import SegmentOptions, option


@dataclass
class TrainOptions:
    adversarial: float = option(0.0, "adversarial mode: a mask discriminator's term with this weight",
                                metavar="WEIGHT")
    head: str = option("binary", "a new model's output; boundary adds the instance head's wall class",
                       choices=["binary", "boundary"])
    rounds1: int = option(6, "Stage 1 rounds (the paper peaks at round 6 of 10)")
    rounds2: int = option(3, "Stage 2 rounds")
    stage2: str = option("replay", "Stage 2's training slides: replay = the unlabelled slides and the Stage-1 slides "
                                   "(labels from the best Stage-1 model), chosen on validation; paper = the unlabelled "
                                   "slides only", choices=["replay", "paper"])
    box_prior: str = option("ellipse", "what a box stands for in round 1 and where Cues 1 resets one: ellipse = the "
                                       "ellipse inscribed in it, its corners left unknown (chosen on validation); box "
                                       "= all of it (the paper's)", choices=["ellipse", "box"])
    size: int = option(2048, "side of the synthetic training slides")
    patch: int | None = option(None, "patch side (default: 496 on a GPU, 256 on a CPU)")
    batch_size: int | None = option(None, "default: 5 on a GPU, 4 on a CPU")
    image: list = option([], "your Stage 1 image (repeat for several, each with its --boxes)", metavar="FILE")
    boxes: list = option([], "its boxes: a .csv box table (y0,x0,y1,x1 or x,y,width,height), a napari Shapes .csv, "
                             "or QuPath .geojson", metavar="FILE")
    unlabelled: str | None = option(None, "a folder of images without boxes (Stage 2)", metavar="DIR")
    val_image: str | None = option(None, "a validation image with --val-labels (picks the best round)")
    val_labels: str | None = option(None, "its object mask or instance labels")
    polarity: str = option("auto", "grey images: auto inverts a dark background (fluorescence) so objects are dark "
                                   "on bright", choices=["auto", "keep", "invert"])
    clip_boxes: bool = option(False, "clip boxes that cross the image border")


@dataclass
class PredictOptions(SegmentOptions):
    """``napari-medseg predict box_iterative``: ``segment`` with the glomeruli model."""

    model: str = option("glomeruli", "NAME or NAME:VERSION")


#: ``napari-medseg train NAME``: (the trainer's method name, aliases, help, the module whose
#: ``train(args, registry)`` and ``model_name(args)`` run it)
TRAIN_COMMANDS = {"box_iterative": ("box_iterative", (), "iterative training from bounding boxes (Gupta et al. 2019): "
                                    "Stage 1 then Stage 2", "napari_medseg.methods.box_iterative.cli")}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {"box_iterative": (("PredictOptions",), "napari_medseg.cli:_segment", (),
                                      "tiled glomeruli segmentation of a slide (zarr out; = segment --model "
                                      "glomeruli)")}


#: Hyperparameter defaults of the dock's short runs, declared once here (the widget's
#: settings read them); ``napari-medseg train box_iterative`` uses the same steps when --steps
#: is not given.
DEFAULTS = {
    "steps": 150,  # training steps per round
    "patch": 0,  # 0: by device (the paper's 492 -> 496 on a GPU, 256 on a CPU)
    "batch_size": 0,  # 0: by device (5 on a GPU, 4 on a CPU)
    "object_radius": 0.0,  # typical object radius in pixels; 0: from the Stage 1 boxes
}
