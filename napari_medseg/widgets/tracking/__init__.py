"""The Axon tracking dock (Dai et al. 2019): deep-RL tracking from start points, with its entropy overlay.

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import TrackingWidget

__all__ = ["TrackingWidget"]
