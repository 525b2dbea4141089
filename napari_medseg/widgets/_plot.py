"""Dock parts shared by the method widgets: a live metrics plot and titled sections."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container
from qtpy.QtWidgets import QGroupBox, QSizePolicy, QVBoxLayout, QWidget

SERIES_COLOURS = ["#ffb000", "#3ad6ff", "#b479ff", "#7cff6b"]


def _axis_label(names) -> str:
    """What a group of series measures, for its axis."""
    names = list(names)
    if all("dice" in n.lower() or n in ("full", "frozen_critic", "scratch") for n in names):
        return "Dice"
    if all(n.startswith("object_") for n in names):
        return "object score"
    if all(n.startswith("loss") or n == "l1" for n in names):
        return "loss"
    if all(n.endswith("_pct") for n in names):
        return "%"
    return ", ".join(names)


class LivePlot(QWidget):
    """Named series against a step count, drawn by pyqtgraph: axes with labels, a legend
    with each series' latest value, and one scale per axis, shared by every series on it
    (``y_range`` fixes it, e.g. (0, 1) for Dice). Series named in ``right`` get their own
    axis on the right (another quantity, e.g. coverage % beside the reward)."""

    def __init__(self, names=("mean_reward", "coverage_pct"), parent=None, y_range=None, markers: bool = False,
                 x_label: str = "step", y_label: str | None = None, right=None):
        import pyqtgraph as pg

        super().__init__(parent)
        self.names = list(names)
        if right is None and self.names == ["mean_reward", "coverage_pct"]:  # the tracking agent's two quantities
            right = ("coverage_pct",)
        self.right = [n for n in (right or ()) if n in self.names]
        self.y_range, self.markers = y_range, markers
        self.series: dict[str, list[tuple[float, float]]] = {n: [] for n in self.names}
        self.widget = pg.PlotWidget(background=None)
        self.widget.setMinimumHeight(150)
        item = self.widget.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setLabel("bottom", x_label)
        left = [n for n in self.names if n not in self.right]
        item.setLabel("left", y_label or _axis_label(left))
        if y_range is not None:
            item.setYRange(*y_range, padding=0.02)
            item.getViewBox().setLimits(yMin=y_range[0] - 0.05, yMax=y_range[1] + 0.05)
        self.legend = item.addLegend(offset=(5, 5), labelTextSize="8pt")
        self._views = {n: item.getViewBox() for n in left}
        if self.right:
            box = pg.ViewBox()
            item.showAxis("right")
            item.scene().addItem(box)
            item.getAxis("right").linkToView(box)
            item.getAxis("right").setLabel(_axis_label(self.right))
            box.setXLink(item)
            item.getViewBox().sigResized.connect(lambda *_: box.setGeometry(item.getViewBox().sceneBoundingRect()))
            self._views.update({n: box for n in self.right})
        self._curves, self._labels = {}, {}
        for i, n in enumerate(self.names):
            pen = pg.mkPen(SERIES_COLOURS[i % len(SERIES_COLOURS)], width=1.5)
            kw = {"symbol": "o", "symbolSize": 5, "symbolBrush": SERIES_COLOURS[i % len(SERIES_COLOURS)]} \
                if markers else {}
            curve = pg.PlotDataItem([], [], pen=pen, name=n, **kw)
            if n in self.right:
                self._views[n].addItem(curve)
                self.legend.addItem(curve, n)
            else:
                item.addItem(curve)  # the legend takes it up
            self._curves[n], self._labels[n] = curve, self.legend.items[-1][1]
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.widget)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(160)

    def clear(self):
        self.series = {n: [] for n in self.names}
        self._redraw()

    def add(self, x: float, metrics: dict):
        for n in self.names:
            v = metrics.get(n)
            if isinstance(v, (int, float)) and np.isfinite(v):
                self.series[n].append((float(x), float(v)))
        self._redraw()

    def _redraw(self):
        for n, curve in self._curves.items():
            pts = self.series[n]
            curve.setData([x for x, _ in pts], [y for _, y in pts])
            self._labels[n].setText(f"{n}: {pts[-1][1]:.3g}" if pts else n, size="8pt")
        main = self.widget.getPlotItem().getViewBox()
        for box in {id(v): v for v in self._views.values()}.values():
            if self.y_range is not None and box is main:
                box.setYRange(*self.y_range, padding=0.02)
            else:
                box.enableAutoRange(axis="y")

    def axis_labels(self) -> dict:
        """``{"bottom": ..., "left": ..., "right": ...}`` as shown (for tests and the docs)."""
        item = self.widget.getPlotItem()
        sides = ("bottom", "left") + (("right",) if self.right else ())
        return {side: item.getAxis(side).labelText for side in sides}


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
