"""A real photograph with round objects that a dependency bundles: scikit-image's ``coins``.

Its reference outlines come from the classical segmentation scikit-image documents for
this image (Sobel elevation map, watershed from dark/bright markers, holes filled);
boxes are the outlines' bounding rectangles. Used to check box-supervised training on
real pixels (24 coins on an uneven background), not on our own generator.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .synthetic import KidneySlide


def coins_slide() -> KidneySlide:
    """The coins photograph as an RGB slide with its 24 reference objects and boxes."""
    from skimage import data, filters, measure, morphology, segmentation

    grey = data.coins()
    markers = np.zeros(grey.shape, np.uint8)
    markers[grey < 30], markers[grey > 150] = 1, 2
    coins = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(grey), markers) == 2)
    coins = morphology.remove_small_objects(coins, max_size=99)
    instances = measure.label(coins, connectivity=2).astype(np.uint16)
    from .boxes import boxes_from_instances

    rgb = np.repeat(grey[..., None], 3, axis=-1)
    return KidneySlide(rgb=rgb, instances=instances, boxes=boxes_from_instances(instances))
