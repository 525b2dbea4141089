"""napari-medseg: published medical-image-analysis methods for napari.

The engine (``napari_medseg.core``, ``napari_medseg.methods``) is Qt-free; the dock
widgets live in ``napari_medseg.widgets``.
"""

__version__ = "0.1.0"
