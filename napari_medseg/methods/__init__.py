"""Qt-free method packages, one per paper (plus ``tissue``, the engine's reference model).

:data:`METHODS` lists every paper's method once, with the names its entry points go by: its
dock (the manifest command), sample data, training and prediction commands, benchmark,
demo step, shipped models and docs pages. ``tests/test_method_contract.py`` checks that each
of them exists and is reachable, so a method cannot ship without one of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    slug: str  # the package under methods/
    paper: str
    widget: str  # manifest command id (napari.yaml)
    samples: tuple[str, ...]  # manifest sample-data keys
    train: tuple[str, ...]  # `napari-medseg train NAME` (the slug first; then older names)
    predict: tuple[str, ...]  # inference commands: `predict SLUG` first, then other names or subcommands
    bench: str  # `napari-medseg bench NAME`
    demo: str  # key of demo.DEMOS
    models: tuple[str, ...]  # shipped model folders under models/
    docs: tuple[str, ...]  # pages under docs/
    nets: tuple[str, ...] = ()  # its modules that register networks (core.nets.register), imported on first use


METHODS = (
    MethodSpec("tracking", "Dai et al. 2019", "napari-medseg.tracking_widget", ("synthetic_axon", "retina"),
               ("tracking",), ("predict tracking", "track", "finetune"), "tracking", "tracking", ("tracking",),
               ("widgets/tracking.md", "methods/tracking.md"), ("policy",)),
    MethodSpec("box_iterative", "Gupta et al. 2019", "napari-medseg.box_widget", ("synthetic_kidney",),
               ("box_iterative",), ("predict box_iterative", "segment --model glomeruli"), "box_iterative", "box_iterative", ("glomeruli",),
               ("widgets/box_iterative.md", "methods/box_iterative.md")),
    MethodSpec("staining", "Combalia et al. 2019", "napari-medseg.staining_widget", ("confocal_pair",),
               ("staining", "despeckle", "cyclegan"), ("predict staining", "predict despeckle"), "staining", "staining",
               ("despeckle", "stain_cyclegan"), ("widgets/staining.md", "methods/staining.md"), ("despeckle", "cyclegan")),
    MethodSpec("joint_lesion_tissue", "Dorent et al. 2019", "napari-medseg.joint_widget",
               ("brain_phantom", "mni_lesions"), ("joint_lesion_tissue", "joint"), ("predict joint_lesion_tissue", "predict joint"), "joint", "joint",
               ("joint_lesion_tissue", "joint_tissue_only", "joint_lesion_only"),
               ("widgets/joint_lesion_tissue.md", "methods/joint_lesion_tissue.md"), ("network",)),
    MethodSpec("adversarial_segmentation", "Chen et al. 2019", "napari-medseg.adversarial_widget",
               ("cardiac_sequences",), ("adversarial_segmentation",), ("predict adversarial_segmentation",),
               "adversarial", "adversarial_segmentation", ("chen_cardiac",),
               ("widgets/adversarial_segmentation.md", "methods/adversarial_segmentation.md", "methods/adversarial.md"), ("networks",)),
    MethodSpec("modality_transfer", "Giacomello et al. 2020", "napari-medseg.transfer_widget", ("brain_tumour",),
               ("modality_transfer",), ("predict modality_transfer",), "adversarial", "modality_transfer",
               ("segan_tumour", "segan_tumour_critic"), ("widgets/modality_transfer.md", "methods/modality_transfer.md", "methods/adversarial.md"), ("networks",)),
    MethodSpec("site_normalization", "Delisle et al. 2019", "napari-medseg.normalization_widget", ("brain_sites",),
               ("site_normalization",), ("predict site_normalization",), "adversarial", "site_normalization",
               ("delisle_normalization",), ("widgets/site_normalization.md", "methods/site_normalization.md", "methods/adversarial.md"), ("networks",)),
)


def network_modules() -> tuple[str, ...]:
    """Every method module that registers a network, as importable names."""
    return tuple(f"{__name__}.{m.slug}.{mod}" for m in METHODS for mod in m.nets)
