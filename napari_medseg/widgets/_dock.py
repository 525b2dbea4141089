"""The frame the method docks share: a runner, a controller, titled sections in a
scroll area, buttons whose engine errors become one message, registry updates."""

from __future__ import annotations

from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget

from ..core import registry as registry_mod
from ..core.errors import MedsegError
from ._plot import section


class MethodDock(QWidget):
    """Subclasses build their controls, then call :meth:`_lay_out` with their sections."""

    def __init__(self, napari_viewer, controller_cls, registry=None):
        super().__init__()
        from ._runner import JobRunner

        self.viewer, self._syncing = napari_viewer, False
        self.runner = JobRunner()
        self.controller = controller_cls(napari_viewer, self.runner, registry)
        self._registry_token = registry_mod.subscribe(self._on_registry)

    def _lay_out(self, sections) -> None:
        inner = QWidget()
        lay = QVBoxLayout(inner)
        for title, items in sections:
            lay.addWidget(section(title, items))
        lay.addStretch()
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(inner)
        QVBoxLayout(self).addWidget(self.scroll)

    def _press(self, action):
        try:
            action()
        except MedsegError as exc:
            self.controller._say(str(exc), error=True)

    def _on_registry(self, name):  # overridden by docks that list model versions
        pass

    def closeEvent(self, event):
        registry_mod.unsubscribe(self._registry_token)
        super().closeEvent(event)
