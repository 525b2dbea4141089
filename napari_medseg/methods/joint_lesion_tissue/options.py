"""What ``napari-medseg train joint_lesion_tissue`` and ``predict joint_lesion_tissue`` take."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.options import option


@dataclass
class TrainOptions:
    mode: str = option("joint", "joint (W+N), or a baseline trained by the same code",
                       choices=["joint", "tissue_only", "lesion_only", "supervised"])
    warmup: int | None = option(None, "iterations before the inter-modality term")
    data: str = option("randomised", "randomised: the phantom's label maps drawn with random contrast, bias, blur, "
                                     "noise and skull present or stripped (SynthSeg-style domain randomisation); "
                                     "varied: the same, and the anatomy's proportions drawn too (extra-cerebral "
                                     "CSF, sulcal width and depth, cortical thickness, ventricle size); "
                                     "folded: randomised, a share of the subjects (--folded-share, default half) "
                                     "with a gyrified cortex of real thickness (2-3.5 mm) and deep, narrow sulci; "
                                     "surface: a share of the subjects (--surface-share) with the cerebrum of a real "
                                     "brain (FreeSurfer's fsaverage5 white and pial surfaces, bundled with nilearn, "
                                     "randomly warped and mirrored), the rest as with folded; "
                                     "phantom: the fixed phantom",
                       choices=["randomised", "varied", "folded", "surface", "phantom"])
    folded_share: float = option(0.5, "--data folded or surface: the share of (other) subjects with the gyrified "
                                      "cortex (0 to 1)")
    surface_share: float = option(0.5, "--data surface: the share of subjects with fsaverage5's cerebrum (0 to 1)")
    average_share: float = option(0.0, "randomised data: the share of subjects drawn as population-average "
                                       "templates (class maps smoothed into probabilities, images their "
                                       "probability-weighted intensities, labels their arg-max), 0 to 1")
    tight_share: float = option(0.0, "randomised data: the share of skull-stripped subjects whose mask was cut "
                                     "closer to the brain (the extra-cerebral CSF within 0-4 mm of its edge "
                                     "removed, as some stripping tools do), 0 to 1")
    subjects: int | None = option(None, "controls and patients (each); default 48 randomised or 4 phantom subjects")
    val_subjects: int = option(2, "randomised data: fully labelled validation subjects (drawn like the training "
                                  "ones) that pick the checkpoint")
    shape: str = option("64,72,64", "phantom volume shape")
    spacing: float = option(2.5, "phantom voxel size in mm")
    label_set: str = option("reduced", "tissue classes", choices=["reduced", "full"])
    lr: float | None = option(None, "Adam learning rate (default 0.005)")
    patch: int | None = option(None, "patch side (default: 48, or the volume's smallest side)")
    init: str = option("scratch", "start from random weights, or fine-tune the current version of the mode's model",
                       choices=["scratch", "current"])


@dataclass
class PredictOptions:
    t1: str = option(None, "a T1 NIfTI file, or a folder of them (one per subject)", required=True)
    flair: str | None = option(None, "FLAIR file or folder, matched to the T1s by subject name")
    mask: str | None = option(None, "brain mask file or folder (skull-stripped scans)")
    out: str = option(None, "output folder (files in it are never replaced)", required=True)
    model: str = option("joint_lesion_tissue", "NAME or NAME:VERSION")
    min_lesion_ml: float = option(0.01, "smaller lesions are removed (mL)")
    no_refine: bool = option(False, "skip the native-resolution refinement")
    device: str | None = option(None, "auto, cpu, cuda, cuda:1, mps")
    scheduler: str | None = option(None, "one subject per task on a dask.distributed cluster: a scheduler address, "
                                         "or local:N for N one-thread worker processes here (CPU)")


#: ``napari-medseg train NAME``: (the trainer's method name, aliases, help, the module whose
#: ``train(args, registry)`` and ``model_name(args)`` run it)
TRAIN_COMMANDS = {"joint_lesion_tissue": ("joint", ("joint",), "joint lesion + tissue segmentation from hetero-modal "
                                          "datasets (Dorent et al. 2019)", "napari_medseg.methods.joint_lesion_tissue.cli")}
#: ``napari-medseg predict NAME``: (option classes here, "module:function", aliases, help)
PREDICT_COMMANDS = {"joint_lesion_tissue": (("PredictOptions",), "napari_medseg.methods.joint_lesion_tissue.cli:predict", ("joint",),
                                            "lesion + tissue labels per subject (NIfTI on the input grid) and a "
                                            "volumes CSV")}


#: What ``napari-medseg train joint_lesion_tissue`` runs when an option is not given: longer
#: than the dock's short runs below (the warm-up is half the steps unless --warmup says).
TRAIN_DEFAULTS = {
    "steps": 2000,
    "lr": 0.005,
    "patch": 48,  # capped by the volume's shape
}

#: Hyperparameter defaults of the dock's short runs, declared once here (the widget's
#: settings read them).
DEFAULTS = {
    "steps": 500,
    "warmup": 250,  # iterations before the inter-modality term (the paper: 5000 of 20000)
    "patch": 32,  # sub-volume side (the paper: 120x120x40)
    "retrain_steps": 60,  # the dock's Retrain on corrected scans
}
