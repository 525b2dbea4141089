"""The Modality transfer dock (Giacomello et al. 2020): SegAN-style segmentation and transfer.

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import ModalityTransferWidget

__all__ = ["ModalityTransferWidget"]
