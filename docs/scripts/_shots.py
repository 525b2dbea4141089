"""What the screenshot scripts share: wait while Qt draws, dock a plugin widget wide."""

from __future__ import annotations

import time

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QDockWidget


def wait(ms: int) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < ms / 1000:
        QApplication.processEvents()
        time.sleep(0.01)


def dock_wide(viewer, display_name: str, width: int):
    """Dock a napari-medseg widget and give its dock ``width`` pixels; return the widget."""
    w = viewer.window.add_plugin_dock_widget("napari-medseg", display_name)[1]
    qdock = w.parent()
    while not isinstance(qdock, QDockWidget):
        qdock = qdock.parent()
    viewer.window._qt_window.resizeDocks([qdock], [width], Qt.Orientation.Horizontal)
    return w


def shot(viewer, path, canvas_only: bool = False) -> None:
    """Save the viewer's screenshot (or its canvas only) to ``path``."""
    from skimage.io import imsave

    wait(400)
    imsave(path, viewer.screenshot(canvas_only=canvas_only, flash=False), check_contrast=False)
    print("wrote", path)
