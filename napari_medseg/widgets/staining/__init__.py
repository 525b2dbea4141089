"""The Confocal digital staining dock (Combalia et al. 2019): despeckling and digital H&E.

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import StainingWidget

__all__ = ["StainingWidget"]
