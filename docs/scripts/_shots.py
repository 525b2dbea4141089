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
