"""The Adversarial segmentation dock (Chen et al. 2019): weak domain transfer across MR sequences.

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import AdversarialSegmentationWidget

__all__ = ["AdversarialSegmentationWidget"]
