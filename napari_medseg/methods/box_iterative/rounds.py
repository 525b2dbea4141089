"""The settings and the record of one box-supervised round, and where a round's label maps
live (memory for ordinary slides, zarr beside the session for whole slides)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...core.errors import InputError
from .model import IO

IN_MEMORY = 64 * 2**20  # label maps up to this many pixels stay in memory; larger ones live in zarr


@dataclass
class StageConfig:
    """Training settings of one round. ``patch``/``batch_size`` None: the paper's (492 -> 496
    px, the stride multiple, and 5) on a GPU, 256 px and 4 on a CPU."""

    steps: int = 150
    patch: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    object_ratio: tuple = (2, 1)
    coverage: float = 0.5  # Cues 1: under this fraction of its box an object resets to the box
    outliers: str = "unknown"  # Cues 2: objects outside the 95 % ranges become unknown (or "background")
    fixed_weight: float = 5.0  # loss weight of corrected pixels
    restart_each_round: bool = False  # True: every round trains from scratch
    tile: int = 1024
    seed: int = 0
    device: str = "cpu"
    adversarial: float = 0.0  # > 0: adversarial mode, a mask discriminator's term with this weight
    head: str = "binary"  # a new model's output: "binary" (2 classes) or "boundary" (the instance head, 3 classes)
    #: Stage 2 also trains on the Stage-1 slides (their labels from the best Stage-1 model); False: the paper's
    #: Stage 2 (unlabelled slides only). True since 2026-12-06: chosen on validation (docs/benchmarks.md)
    stage2_replay: bool = True
    #: what a box stands for where no prediction does (round 1, and a box Cues 1 resets): "ellipse", the ellipse
    #: inscribed in it, the corners outside it unknown (not in the paper; the default since 2026-12-07, chosen on
    #: validation, docs/benchmarks.md), or "box", the filled box (the paper's)
    box_prior: str = "ellipse"

    def __post_init__(self):
        from .boxes import box_prior_mask

        box_prior_mask(1, 1, self.box_prior)  # an unknown prior: one clear error when the settings are made

    def patch_and_batch(self) -> tuple[int, int]:
        gpu = torch.device(self.device).type == "cuda"
        patch = self.patch or (496 if gpu else 256)
        if patch % IO["stride"]:
            raise InputError(f"The patch size must be a multiple of {IO['stride']} px; {patch} is not.")
        return patch, self.batch_size or (5 if gpu else 4)


@dataclass
class RoundRecord:
    stage: int
    round: int
    version: int | None
    metrics: dict = field(default_factory=dict)  # validation scores, empty without validation
    cues: list = field(default_factory=list)  # per slide: what the cues changed for the next round
    predictions: list = field(default_factory=list)  # zarr path of each slide's segmentation

    def as_dict(self) -> dict:
        return asdict(self)


def new_labels(shape, path: Path):
    """An empty label map for a slide of ``shape``: numpy, or a zarr array at ``path`` when large."""
    if shape[0] * shape[1] <= IN_MEMORY:
        return np.zeros(shape, np.uint8)
    import zarr

    return zarr.create_array(str(path), shape=shape, dtype=np.uint8, chunks=(1024, 1024), fill_value=0,
                             overwrite=True)


def small_or_lazy(array) -> np.ndarray | object:
    """A zarr segmentation as numpy when it fits in memory (faster cues), else as it is."""
    return np.asarray(array[...]) if array.shape[0] * array.shape[1] <= IN_MEMORY else array


def level0(path):
    from ...core.tiling import open_pyramid_output

    return open_pyramid_output(path)[0]


def components(mask: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    return label(np.asarray(mask) > 0, connectivity=2)
