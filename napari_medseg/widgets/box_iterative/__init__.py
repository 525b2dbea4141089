"""The Box-supervised training dock (Gupta et al. 2019): iterative training from bounding boxes.

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import BoxIterativeWidget

__all__ = ["BoxIterativeWidget"]
