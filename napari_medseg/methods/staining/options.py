"""What ``napari-medseg train staining`` and ``predict staining|despeckle`` take (defaults live here)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.options import option


@dataclass
class TrainOptions:
    images: str | None = option(None, "folder or file of RGB H&E images to train on (default: the bundled training "
                                      "split)")
    val_images: str | None = option(None, "folder or file of validation H&E images")
    std: str | None = option(None, "despeckle: speckle std, one value (the paper: 0.2) or LOW,HIGH (default 0.1,0.5)")
    recipe: str = option("real", "despeckle: 'real' (default) trains for other labs' slides: stain, zoom and gamma "
                                 "augmentation, luma and stain-density images, correlated speckle, 1/std loss weights, "
                                 "validation on another source (bundled: slideflow's tile) at std 0.1-0.5, a gated "
                                 "final median (the fixed one erases thin structures at low noise); 'paper' is "
                                 "Combalia et al.'s recipe on the CMU-1 rows", choices=["real", "paper"])
    steps_large: int | None = option(None, "cyclegan: steps of the 512-px stage with learning-rate decay (the 256-px "
                                           "stage takes --steps)")
    upsample: str | None = option(None, "cyclegan: the generators' up-sampling (default: resize-convolution for a new "
                                        "model, the current version's with --resume; 'resize' resizes by nearest, "
                                        "'bilinear' bilinearly, before a 3x3 convolution; '--resume --upsample "
                                        "bilinear' converts the current version and fine-tunes it)",
                                  choices=["resize", "bilinear", "transposed"])
    body: str = option("conv", "despeckle: the network's body, 'conv' (the paper's seven full-resolution "
                               "convolutions) or 'unet' (three levels, 16/32/64 filters: a view of ~30 px for half "
                               "the 32-filter network's work per pixel; trained from scratch)", choices=["conv", "unet"])
    distill: bool = option(False, "despeckle: train a narrower network (--filters) from the current version (its "
                                  "estimates are a second target; it starts from the current version's strongest "
                                  "channels): a faster despeckler")
    filters: int | None = option(None, "despeckle: filters per layer of the distilled network (the paper's: 64)")
    dilations: str | None = option(None, "despeckle, with --distill: the distilled network's dilation per body "
                                         "convolution, e.g. 1,2,4,8,4,2,1 (a wider receptive field at the same cost; "
                                         "default: the current version's)")
    teacher: int | None = option(None, "despeckle, with --distill: the version to distil from (default: the current "
                                       "one)")
    preview_every: int = option(250, "cyclegan: steps between validation checkpoints (the kept model is the best of "
                                     "these)")
    lr: float | None = option(None, "Adam learning rate (despeckle: 3e-4 real recipe, 5e-4 paper)")
    patch: int | None = option(None, "despeckle: training crop side (64 real recipe, 256 paper)")
    batch_size: int | None = option(None, "despeckle: 8; cyclegan: 1")


@dataclass
class DespeckleOptions:
    images: str = option(None, "a single-channel image file (TIFF, PNG, OME-Zarr...) or a folder of them",
                         positional=True, required=True)
    out: str = option(None, "output folder (files in it are never replaced)", required=True)
    model: str = option("despeckle", "NAME or NAME:VERSION")
    tile: int = option(1024, "tile size in pixels (at least 4 receptive radii, 128 px for the shipped v5; a smaller "
                              "tile grows to that)")
    format: str = option("tif", "NAME_despeckled.tif (float32, tiled) or NAME_despeckled.zarr (pyramid)",
                         choices=["tif", "zarr"])
    bf16: bool = option(False, "bfloat16 on a CPU that has it (about 2x faster; not bit-exact)")
    device: str | None = option(None, "auto, cpu, cuda, cuda:1, mps")
    scheduler: str | None = option(None, "run one image per task on a dask.distributed cluster: a scheduler address, "
                                         "or local:N for N one-thread worker processes on this machine (workers read "
                                         "their own files)")


@dataclass
class StainOptions:
    fcm: str = option(None, "the fluorescence (FCM) channel: TIFF, PNG, OME-Zarr...; or a folder of them (one "
                            "slide per file)", required=True)
    rcm: str = option(None, "the reflectance (RCM) channel, same shape; or a folder paired with --fcm's by name "
                            "(the same name, or NAME_fcm / NAME_rcm; both may be one folder)", required=True)
    out: str = option(None, "output .zarr (RGB pyramid; a new path); with folders, a folder that gets "
                            "NAME_stained.zarr per slide (never replaced)", required=True)
    model: str = option("despeckle", "the despeckler, NAME or NAME:VERSION")
    stain: str = option("cyclegan", "gareau: the physical stain model only; cyclegan: refined by the shipped "
                                    "stain_cyclegan", choices=["gareau", "cyclegan"])
    normalisation: str = option("slide", "intensity range per slide (tiles match a whole-image pass) or per tile "
                                         "(for drifting illumination)", choices=["slide", "tile"])
    tile: int = option(1024, "tile size in pixels")
    bf16: bool = option(False, "bfloat16 on a CPU that has it (about 2x faster; not bit-exact)")
    device: str | None = option(None, "auto, cpu, cuda, cuda:1, mps")
    scheduler: str | None = option(None, "folders only: one slide per task on a dask.distributed cluster: a scheduler "
                                         "address, or local:N for N one-thread worker processes on this machine "
                                         "(workers read their own files)")


#: ``napari-medseg train NAME``: (the trainer's method name, aliases, help, the module whose
#: ``train(args, registry)`` and ``model_name(args)`` run it); None: --network chooses
TRAIN_COMMANDS = {
    "staining": (None, (), "the confocal-to-H&E networks (Combalia et al. 2019): --network despeckle or cyclegan",
                 "napari_medseg.methods.staining.cli"),
    "despeckle": ("despeckle", (), "the despeckling CNN of the staining method (= staining --network despeckle)",
                  "napari_medseg.methods.staining.cli"),
    "cyclegan": ("cyclegan", (), "the staining CycleGAN (= staining --network cyclegan)", "napari_medseg.methods.staining.cli"),
}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {
    "staining": (("StainOptions",), "napari_medseg.methods.staining.cli:predict_stain", (),
                 "digital H&E of an FCM + RCM pair (RGB zarr pyramid out)"),
    "despeckle": (("DespeckleOptions",), "napari_medseg.methods.staining.cli:predict_despeckle", (),
                  "despeckle single-channel images on their own (one file per input)"),
}


#: What ``napari-medseg train staining|despeckle|cyclegan`` runs when an option is not given:
#: longer than the dock's short runs below.
TRAIN_DEFAULTS = {
    "steps": 2000,  # the despeckler's steps, or the CycleGAN's 256-px stage
    "steps_large": 1000,  # CycleGAN's 512-px stage
}

#: Hyperparameter defaults of the dock's short runs, declared once here (the widget's
#: settings read them).
DEFAULTS = {
    "steps": 200,  # the dock's fine-tuning run
    "steps_large": 100,  # CycleGAN's 512-px stage
    "preview_size": 768,  # longest side of the previewed field of view, in full-resolution pixels
}
