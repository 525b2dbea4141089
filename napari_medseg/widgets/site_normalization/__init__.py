"""The Normalize across sites dock (Delisle et al. 2019): adversarial normalization.

The dock (`dock.py`) holds the controls; `controller.py` holds its scriptable state and
actions (layers to arrays and back, then the method's own functions).
"""

from .dock import SiteNormalizationWidget

__all__ = ["SiteNormalizationWidget"]
