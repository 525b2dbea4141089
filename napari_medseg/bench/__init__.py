"""Benchmarks behind ``napari-medseg bench NAME [--quick] --json FILE``.

Each benchmark measures ours and its baseline side by side in one run and reports
ratios; absolute times only mean something on a GPU. Method issues add entries to
:data:`BENCHMARKS`.
"""

from __future__ import annotations

BENCHMARKS = {
    "tiling": "napari_medseg.bench.tiling:run",
    "tracking": "napari_medseg.bench.tracking:run",
    "tracking_real": "napari_medseg.bench.tracking_real:run",  # bench tracking --real
    "box_iterative": "napari_medseg.bench.box_iterative:run",
    "box_iterative_real": "napari_medseg.bench.box_iterative_real:run",  # bench box_iterative --real
    "staining": "napari_medseg.bench.staining:run",
    "staining_real": "napari_medseg.bench.staining_real:run",  # bench staining --real
    "joint_lesion_tissue": "napari_medseg.bench.joint:run",
    "joint": "napari_medseg.bench.joint:run",  # the name it was first shipped under
    "adversarial": "napari_medseg.bench.adversarial:run",
    "reliability": "napari_medseg.bench.reliability:run",
    "scaling": "napari_medseg.bench.scaling:run",
}
