"""The Segment dock: any registered model over an image layer, tiled; correct; retrain.

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import SegmentWidget

__all__ = ["SegmentWidget"]
