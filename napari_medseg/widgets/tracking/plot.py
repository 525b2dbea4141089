"""What the Axon tracking widget draws, on the canvas and in the dock.

- :class:`TraceLayers`: the ``traces`` Shapes layer (one path per trace, editable) and
  the ``trace entropy`` Points overlay (one point per step, coloured by the policy
  entropy with fixed limits, red border above the threshold), with the bookkeeping
  that links each path to how it was tracked (:class:`TraceRecord`). No Qt widgets.
- :class:`ColorBar`: the entropy colormap with its limits and the threshold mark.
(The live training plot and the titled sections are in :mod:`._plot`.)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from napari.layers import Points, Shapes
from napari.utils.colormaps import ensure_colormap
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QLinearGradient, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from .._common import layer_unit

HIGHLIGHT = np.array([1.0, 0.1, 0.1, 1.0])  # border of overlay points above the threshold


def entropy_colors(values, colormap: str, lo: float, hi: float) -> np.ndarray:
    """RGBA (N, 4) of entropies mapped through ``colormap`` with fixed limits [lo, hi]."""
    v = np.asarray(values, np.float64)
    t = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    t[~np.isfinite(t)] = 0.0
    return np.asarray(ensure_colormap(colormap).map(t), np.float32).reshape(-1, 4)


def overlay_state(positions, entropy, trace_ids, colormap: str, limits, threshold: float):
    """Everything the overlay Points layer shows: data, features, face and border colours.

    Points whose entropy lies above ``threshold`` get a red border; the others a border
    of their own face colour (so it does not show)."""
    positions = np.asarray(positions, np.float64).reshape(-1, 2)
    entropy = np.asarray(entropy, np.float64).reshape(-1)
    face = entropy_colors(entropy, colormap, *limits)
    above = entropy > threshold
    border = face.copy()
    border[above] = HIGHLIGHT
    features = pd.DataFrame({"entropy": entropy, "trace": np.asarray(trace_ids, int).reshape(-1),
                             "above_threshold": above})
    return positions, features, face, border


TRACES, OVERLAY = "traces", "trace entropy"


@dataclass
class TraceRecord:
    id: int
    tracked: np.ndarray | None  # the path as the agent (or the SWC file) left it; None: drawn by hand
    entropy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stop_reason: str = "running"
    parent: tuple[int, int] | None = None  # (record id, point index) it branches from
    source: str = "tracked"  # tracked, imported, drawn
    meta: dict = field(default_factory=dict)  # from the tracker: heading, heading_chosen, reached_end


def as_path(points) -> np.ndarray:
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return p if len(p) > 1 else np.vstack([p, p + 1e-3])  # napari paths need two vertices


class TraceLayers:
    """The ``traces`` and ``trace entropy`` layers and the record behind each path.

    The Shapes layer is the truth for the geometry (the user deletes paths and drags
    vertices there); its feature ``trace_id`` links each path to a :class:`TraceRecord`
    that remembers the path as tracked, its entropies, stop reason and parent.
    ``style`` has ``image``, ``colormap``, ``limits`` and ``threshold`` attributes.
    """

    def __init__(self, viewer, style, on_change=None):
        self.viewer, self.style, self.on_change = viewer, style, on_change
        self.records: dict[int, TraceRecord] = {}
        self.live = False  # True while the widget itself rewrites the layer
        self.drawn_at, self.draw_seconds = 0.0, 0.0
        self._next_id, self._connected = 0, set()

    def _layer(self, name, kind):
        lay = self.viewer.layers[name] if name in self.viewer.layers else None
        return lay if isinstance(lay, kind) else None

    def _add(self, add, *args, **kwargs):
        """Add a layer on the image's grid, leaving the active layer as it was."""
        img, active = self.style.image, self.viewer.layers.selection.active
        if img is not None:
            kwargs.update(scale=tuple(img.scale)[-2:], translate=tuple(img.translate)[-2:])
        lay = add(*args, **kwargs)
        if active is not None:
            self.viewer.layers.selection.active = active
        return lay

    def traces_layer(self, create: bool = False) -> Shapes | None:
        lay = self._layer(TRACES, Shapes)
        if lay is None and create:
            lay = self._add(self.viewer.add_shapes, name=TRACES, ndim=2, edge_color="yellow", edge_width=1,
                            features={"trace_id": np.zeros(0, int)})
        if lay is not None and id(lay) not in self._connected:
            self._connected.add(id(lay))
            lay.events.data.connect(self._on_edit)
        return lay

    def overlay_layer(self) -> Points | None:
        return self._layer(OVERLAY, Points)

    def _on_edit(self, _event=None):
        if not self.live:
            self.refresh_overlay()
            if self.on_change is not None:
                self.on_change()

    def layer_ids(self, lay=None) -> np.ndarray:
        lay = lay if lay is not None else self.traces_layer()
        if lay is None:
            return np.zeros(0, int)
        f = lay.features
        ok = "trace_id" in f and len(f) == lay.nshapes
        return f["trace_id"].to_numpy(int) if ok else np.full(lay.nshapes, -1)

    def new(self, tracked, **kw) -> TraceRecord:
        rec = TraceRecord(self._next_id, tracked, **kw)
        self.records[rec.id], self._next_id = rec, self._next_id + 1
        return rec

    def current(self) -> list[tuple[int, np.ndarray]]:
        """(record id, (N, 2) y, x points) of every path in the traces layer as it is now;
        paths drawn by hand (or copied) get a record of their own."""
        lay = self.traces_layer()
        if lay is None:
            return []
        before = self.layer_ids(lay)
        ids, out, seen = before.copy(), [], set()
        for i, (pts, kind) in enumerate(zip(lay.data, lay.shape_type)):
            if kind not in ("path", "line"):
                continue
            if ids[i] in seen or ids[i] not in self.records:
                ids[i] = self.new(None, source="drawn", stop_reason="drawn").id
            seen.add(int(ids[i]))
            out.append((int(ids[i]), np.asarray(pts, np.float64)[:, -2:]))
        if not np.array_equal(ids, before):
            lay.features = pd.DataFrame({"trace_id": ids})
        return out

    def is_edited(self, tid: int, points) -> bool:
        rec = self.records.get(tid)
        if rec is None or rec.tracked is None:
            return True
        a, b = np.asarray(points, float), as_path(rec.tracked)
        return a.shape != b.shape or not np.allclose(a, b, atol=1e-6)

    def nearest(self, point, items, radius: float):
        """(record id, nearest point index, points) of the trace within ``radius`` px of
        ``point`` (distance to the polyline), or None."""
        from ...methods.tracking.metrics import distance_to_centreline

        best = (math.inf, None)
        for tid, pts in items:
            d = float(distance_to_centreline(np.asarray(point)[None], pts)[0]) if len(pts) > 1 else math.inf
            best = min(best, (d, tid), key=lambda b: b[0])
        if best[0] > radius:
            return None
        pts = dict(items)[best[1]]
        return best[1], int(np.linalg.norm(pts - point, axis=1).argmin()), pts

    def forest(self, items):
        """Traces and SWC parents ``(index, point)``; a branch hangs from the parent's
        point nearest to its first point (the parent may have been edited)."""
        index = {t: i for i, (t, _) in enumerate(items)}
        parents = []
        for t, pts in items:
            par = self.records[t].parent if t in self.records else None
            if par is None or par[0] not in index:
                parents.append(None)
                continue
            ppts = items[index[par[0]]][1]
            parents.append((index[par[0]], int(np.linalg.norm(ppts - pts[0], axis=1).argmin())))
        return [p for _, p in items], parents

    def write_swc(self, path, items):
        """Write ``items`` ((id, points) as from :meth:`current`) as one SWC forest."""
        from ...methods.tracking import swc

        traces, parents = self.forest(items)
        img = self.style.image
        scale, unit = pixel_size(img)
        swc.write_swc(path, traces, parents, scale=scale, unit=unit, header=[
            f"napari-medseg Axon tracking: {len(traces)} traces of image {img.name if img is not None else '?'}"])

    def add_forest(self, forest) -> list[int]:
        """Add the traces of an :class:`~napari_medseg.methods.tracking.swc.SwcForest`, placed on the
        image by its pixel size (a file in pixels is taken as it is); their ids."""
        forest = forest.in_pixels(pixel_size(self.style.image)[0])
        ids = [self.new(np.asarray(t, np.float64), source="imported", stop_reason="imported").id for t in forest.traces]
        for t, par in zip(ids, forest.parents):
            self.records[t].parent = None if par is None else (ids[par[0]], par[1])
        self.draw(ids)
        return ids

    def summary(self, ids) -> str:
        """One line per trace: how it ended, its steps and length, what it branches from,
        the heading it left its start with (and why) and whether it reached its end point."""
        from ...methods.tracking.curves import arc_length

        lines = []
        for t in ids:
            r = self.records[t]
            branch = f", branch of #{r.parent[0]} at point {r.parent[1]}" if r.parent else ""
            head = ""
            if "heading" in r.meta and not r.parent:
                hy, hx = r.meta["heading"]
                head = f", heading ({hy:+.2f}, {hx:+.2f}) {r.meta.get('heading_chosen', '')}"
            end = ""
            if r.meta.get("has_end"):
                end = ", reached its end" if r.meta.get("reached_end") else ", did not reach its end"
                if r.meta.get("joined"):
                    end += f" (met the trace from its end, {r.meta.get('from_end_steps', 0)} steps from it)"
            lines.append(f"#{t}: {r.stop_reason}, {len(r.entropy)} steps, {arc_length(r.tracked)[-1]:.0f} px"
                         f"{branch}{head}{end}")
        return "\n".join(lines)

    def draw(self, ids):
        """Put the records ``ids`` into the traces layer (replacing their paths)."""
        t0 = time.monotonic()
        lay, drop = self.traces_layer(create=True), set(ids)
        rows = [r for r in zip(self.layer_ids(lay), lay.data, lay.shape_type) if r[0] not in drop]
        rows += [(t, as_path(self.records[t].tracked), "path") for t in ids]
        self.live = True
        try:
            lay.data = ([r[1] for r in rows], [r[2] for r in rows])
            lay.features = pd.DataFrame({"trace_id": np.array([r[0] for r in rows], int)})
        finally:
            self.live = False
        self.refresh_overlay()
        self.drawn_at = time.monotonic()
        self.draw_seconds = self.drawn_at - t0

    def due(self) -> bool:
        """Time for a live redraw: the agent steps faster than napari draws, so redraw
        at most every 0.1 s, and never spend more than a third of the time drawing."""
        return time.monotonic() - self.drawn_at >= max(0.1, 2 * self.draw_seconds)

    def refresh_overlay(self):
        """Rebuild the entropy overlay: one point per step of each trace in the layer."""
        s = self.style
        recs = [self.records[t] for t in self.layer_ids() if t in self.records]
        recs = [r for r in recs if r.tracked is not None and len(r.entropy)]
        pos = [r.tracked[: len(r.entropy)] for r in recs]
        ent = [r.entropy[: len(p)] for r, p in zip(recs, pos)]
        tid = [np.full(len(p), r.id) for r, p in zip(recs, pos)]
        over = self.overlay_layer()
        if over is None and not pos:
            return
        data, feats, face, border = overlay_state(np.concatenate(pos or [np.zeros((0, 2))]),
                                                  np.concatenate(ent or [np.zeros(0)]),
                                                  np.concatenate(tid or [np.zeros(0)]), s.colormap, s.limits,
                                                  s.threshold)
        if over is None or not over.visible:
            # a hidden Points layer keeps its old slice: napari fails on recolouring it
            # after its data shrank, so a hidden overlay is replaced, in place
            at = self.viewer.layers.index(over) if over is not None else None
            if over is not None:
                self.viewer.layers.remove(over)
            colours = {"face_color": face, "border_color": border} if len(data) else {}
            new = self._add(self.viewer.add_points, data, name=OVERLAY, features=feats, border_width=0.3, size=1.2,
                            visible=over is None, **colours)
            if at is not None:
                self.viewer.layers.move(self.viewer.layers.index(new), at)
            return
        over.data = data
        over.features = feats
        if len(data):
            over.face_color, over.border_color = face, border

    def highlighted(self) -> np.ndarray:
        """Which overlay points lie above the threshold (drawn with a red border)."""
        over = self.overlay_layer()
        return np.zeros(0, bool) if over is None else over.features["above_threshold"].to_numpy(bool)


class ColorBar(QWidget):
    """A horizontal gradient of a napari colormap, its limits written at the ends and
    the threshold drawn as a red tick."""

    def __init__(self, colormap: str = "viridis", limits=(-6.0, 0.0), parent=None):
        super().__init__(parent)
        self.colormap, self.limits, self.threshold = colormap, tuple(limits), None
        self.setMinimumHeight(34)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Policy entropy per step: low = confident (dark), high = uncertain (bright). "
                        "Red tick: the threshold.")

    def set_limits(self, lo: float, hi: float):
        self.limits = (float(lo), float(hi))
        self.update()

    def set_threshold(self, value: float | None):
        self.threshold = value
        self.update()

    def set_colormap(self, name: str):
        self.colormap = name
        self.update()

    def paintEvent(self, _event):
        p = QPainter(self)
        w, h = self.width(), self.height()
        bar = QRectF(4, 2, w - 8, h * 0.45)
        grad = QLinearGradient(bar.left(), 0, bar.right(), 0)
        cmap = ensure_colormap(self.colormap)
        for t in np.linspace(0.0, 1.0, 16):
            r, g, b, a = np.asarray(cmap.map(np.array([t]))).reshape(-1)[:4]
            grad.setColorAt(float(t), QColor.fromRgbF(float(r), float(g), float(b), float(a)))
        p.fillRect(bar, grad)
        lo, hi = self.limits
        if self.threshold is not None and hi > lo:
            x = bar.left() + bar.width() * min(max((self.threshold - lo) / (hi - lo), 0.0), 1.0)
            p.setPen(QPen(QColor(255, 30, 30), 2))
            p.drawLine(QPointF(x, bar.top()), QPointF(x, bar.bottom() + 3))
        p.setPen(self.palette().windowText().color())
        text = QRectF(4, bar.bottom() + 2, w - 8, h - bar.bottom() - 2)
        p.drawText(text, int(Qt.AlignmentFlag.AlignLeft), f"{lo:g}")
        p.drawText(text, int(Qt.AlignmentFlag.AlignRight), f"{hi:g}")
        if self.threshold is not None:
            p.drawText(text, int(Qt.AlignmentFlag.AlignHCenter), f"threshold {self.threshold:.3g}")
        p.end()


def pixel_size(image) -> tuple[tuple[float, float] | None, str | None]:
    """((sy, sx), unit) of an image layer's last two axes, or (None, None) for plain pixels."""
    if image is None:
        return None, None
    scale = tuple(float(v) for v in image.scale[-2:])
    unit = layer_unit(image)
    if unit is None and scale == (1.0, 1.0):
        return None, None
    return scale, unit or "unspecified"
