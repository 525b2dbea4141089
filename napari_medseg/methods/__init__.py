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
    bench_module: str = ""  # module of `bench NAME` (default napari_medseg.bench.<bench>); <module>_real: --real
    settings: str = ""  # the dock's settings dataclass, "module:Class" (its defaults come from options.DEFAULTS)


METHODS = (
    MethodSpec(
        slug="tracking",
        paper="Dai et al. 2019",
        widget="napari-medseg.tracking_widget",
        samples=("synthetic_axon", "retina"),
        train=("tracking",),
        predict=("predict tracking", "track", "finetune"),
        bench="tracking",
        demo="tracking",
        models=("tracking",),
        docs=("widgets/tracking.md", "methods/tracking.md"),
        nets=("policy",),
        settings="napari_medseg.widgets.tracking.controller:TrackSettings",
    ),
    MethodSpec(
        slug="box_iterative",
        paper="Gupta et al. 2019",
        widget="napari-medseg.box_widget",
        samples=("synthetic_kidney",),
        train=("box_iterative",),
        predict=("predict box_iterative", "segment --model glomeruli"),
        bench="box_iterative",
        demo="box_iterative",
        models=("glomeruli",),
        docs=("widgets/box_iterative.md", "methods/box_iterative.md"),
        nets=(),
        settings="napari_medseg.widgets.box_iterative.controller:BoxSettings",
    ),
    MethodSpec(
        slug="staining",
        paper="Combalia et al. 2019",
        widget="napari-medseg.staining_widget",
        samples=("confocal_pair",),
        train=("staining", "despeckle", "cyclegan"),
        predict=("predict staining", "predict despeckle"),
        bench="staining",
        demo="staining",
        models=("despeckle", "stain_cyclegan"),
        docs=("widgets/staining.md", "methods/staining.md"),
        nets=("despeckle", "despeckle_unet", "cyclegan"),
        settings="napari_medseg.widgets.staining.controller:StainingSettings",
    ),
    MethodSpec(
        slug="joint_lesion_tissue",
        paper="Dorent et al. 2019",
        widget="napari-medseg.joint_widget",
        samples=("brain_phantom", "mni_lesions"),
        train=("joint_lesion_tissue", "joint"),
        predict=("predict joint_lesion_tissue", "predict joint"),
        bench="joint_lesion_tissue",
        bench_module="napari_medseg.bench.joint",
        demo="joint_lesion_tissue",
        models=("joint_lesion_tissue", "joint_tissue_only", "joint_lesion_only"),
        docs=("widgets/joint_lesion_tissue.md", "methods/joint_lesion_tissue.md"),
        nets=("network",),
        settings="napari_medseg.widgets.joint_lesion_tissue.controller:JointSettings",
    ),
    MethodSpec(
        slug="adversarial_segmentation",
        paper="Chen et al. 2019",
        widget="napari-medseg.adversarial_widget",
        samples=("cardiac_sequences",),
        train=("adversarial_segmentation",),
        predict=("predict adversarial_segmentation",),
        bench="adversarial",
        demo="adversarial_segmentation",
        models=("chen_cardiac",),
        docs=("widgets/adversarial_segmentation.md", "methods/adversarial_segmentation.md", "methods/adversarial.md"),
        nets=("networks",),
        settings="napari_medseg.widgets.adversarial_segmentation.controller:AdversarialSettings",
    ),
    MethodSpec(
        slug="modality_transfer",
        paper="Giacomello et al. 2020",
        widget="napari-medseg.transfer_widget",
        samples=("brain_tumour",),
        train=("modality_transfer",),
        predict=("predict modality_transfer",),
        bench="adversarial",
        demo="modality_transfer",
        models=("segan_tumour", "segan_tumour_critic"),
        docs=("widgets/modality_transfer.md", "methods/modality_transfer.md", "methods/adversarial.md"),
        nets=("networks",),
        settings="napari_medseg.widgets.modality_transfer.controller:TransferSettings",
    ),
    MethodSpec(
        slug="site_normalization",
        paper="Delisle et al. 2019",
        widget="napari-medseg.normalization_widget",
        samples=("brain_sites",),
        train=("site_normalization",),
        predict=("predict site_normalization",),
        bench="adversarial",
        demo="site_normalization",
        models=("delisle_normalization",),
        docs=("widgets/site_normalization.md", "methods/site_normalization.md", "methods/adversarial.md"),
        nets=("networks",),
        settings="napari_medseg.widgets.site_normalization.controller:NormalizationSettings",
    ),
)


def network_modules() -> tuple[str, ...]:
    """Every method module that registers a network, as importable names."""
    return tuple(f"{__name__}.{m.slug}.{mod}" for m in METHODS for mod in m.nets)
