"""The Joint lesion + tissue dock (Dorent et al. 2019): tissues and lesions from T1 (+ FLAIR).

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import JointWidget

__all__ = ["JointWidget"]
