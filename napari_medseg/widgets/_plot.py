"""Dock parts shared by the method widgets: a live metrics plot and titled sections."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QGroupBox, QSizePolicy, QVBoxLayout, QWidget

SERIES_COLOURS = ["#ffb000", "#3ad6ff", "#b479ff", "#7cff6b"]


class LivePlot(QWidget):
    """Lines of a few named series against a step count; each series is scaled to its
    own range (the legend gives the latest value and the range)."""

    def __init__(self, names=("mean_reward", "coverage_pct"), parent=None, y_range=None, markers: bool = False):
        super().__init__(parent)
        self.names = list(names)
        self.y_range, self.markers = y_range, markers  # y_range: one shared (lo, hi) for all series
        self.series: dict[str, list[tuple[float, float]]] = {n: [] for n in self.names}
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def clear(self):
        self.series = {n: [] for n in self.names}
        self.update()

    def add(self, x: float, metrics: dict):
        for n in self.names:
            v = metrics.get(n)
            if isinstance(v, (int, float)) and np.isfinite(v):
                self.series[n].append((float(x), float(v)))
        self.update()

    def paintEvent(self, _event):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        legend_h = 14 * len(self.names)
        plot = QRectF(4, 4, w - 8, max(10, h - legend_h - 8))
        p.setPen(QPen(self.palette().mid().color(), 1))
        p.drawRect(plot)
        xs = [x for s in self.series.values() for x, _ in s]
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        for i, n in enumerate(self.names):
            pts, colour = self.series[n], QColor(SERIES_COLOURS[i % len(SERIES_COLOURS)])
            if pts:
                ys = [y for _, y in pts]
                y0, y1 = self.y_range or (min(ys), max(ys))
                poly = QPolygonF([QPointF(plot.left() + plot.width() * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5),
                                          plot.bottom() - plot.height() * ((y - y0) / (y1 - y0) if y1 > y0 else 0.5))
                                  for x, y in pts])
                p.setPen(QPen(colour, 1.5))
                p.drawPolyline(poly)
                if self.markers:
                    for pt in poly:
                        p.drawEllipse(pt, 2.5, 2.5)
                label = f"{n}: {ys[-1]:.3g}   (" + ("axis" if self.y_range else "range") + f" {y0:.3g} … {y1:.3g})"
            else:
                label = f"{n}: –"
            p.setPen(colour)
            p.drawText(QRectF(4, plot.bottom() + 2 + 14 * i, w - 8, 14), int(Qt.AlignmentFlag.AlignLeft), label)
        p.end()


def section(title, items) -> QGroupBox:
    """A titled box: runs of magicgui widgets in a labelled form, Qt widgets as they are."""
    box, run = QGroupBox(title), []
    lay = QVBoxLayout(box)
    for item in [*items, None]:
        if item is not None and not isinstance(item, QWidget):
            run.append(item)
            continue
        if run:
            lay.addWidget(Container(widgets=run).native)
            run = []
        if item is not None:
            lay.addWidget(item)
    return box
