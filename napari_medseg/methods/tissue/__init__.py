"""Tissue detection on histology slides: the engine's reference segmentation model.

Not one of the seven papers: it is the small model the foundation ships to exercise
the whole pipeline (lazy slide, tiled inference, zarr, registry, retraining) and the
tissue mask whole-slide methods use to skip empty glass.
"""

from .synthetic import synthetic_slide
from .model import ARCH, MODEL_NAME, retrain_tissue, train_tissue

__all__ = ["ARCH", "MODEL_NAME", "retrain_tissue", "synthetic_slide", "train_tissue"]
