"""Normalize across sites widget (Delisle et al. 2019): learn one intensity normalisation for
images from two or more sites (domains) together with a segmenter, and see what it does.

Add domains (a name + image layers with their labels, or a folder of NIfTI/TIFF files; or
**Find domains** by layer name), pick adversarial / standardized / none, train with live
losses and per-site validation Dice, then see each image next to its normalised version, the
domains' intensity histograms before and after, and the Jensen-Shannon divergence between
them. **Segment** labels any image layer with the trained segmenter. The logic lives in
:class:`NormalizationController`: ``w.controller.train(block=True)`` does from the console what
the button does. See docs/widgets/site_normalization.md.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, Label, LineEdit, PushButton, Select, SpinBox
from napari.layers import Image, Labels
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QLayout, QSizePolicy, QWidget
from superqt.utils import ensure_main_thread

from ...core.registry import Registry
from ...methods.site_normalization.delisle import MODES
from .._common import device_picker
from .._dock import MethodDock
from .controller import DIMS, LOSSES, MODEL_NAME, NormalizationController
from .._plot import SERIES_COLOURS, LivePlot

BOUND = ("name", "images", "labels", "mode", "dims", "slice_axis", "rescale", "steps", "warmup_steps", "patch",
         "batch_size", "adv_weight", "identity_weight", "lr", "features", "device", "apply_to", "side_by_side")


def caption(text: str):
    lab = Label(value=text).native
    lab.setWordWrap(True)
    return lab


def layer_select(viewer, layer_type, label: str) -> Select:
    """A multi-select of the viewer's layers of one type (not the widget's outputs) that
    follows the layer list."""

    def choices(_w=None):
        return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, layer_type) and "[" not in lay.name]

    box = Select(label=label, choices=choices, allow_multiple=True)
    box.native.setMaximumHeight(96)
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        ev.connect(lambda _e=None: box.reset_choices())
    return box


class HistogramPlot(QWidget):
    """Per stage (raw, rescaled, normalized) one panel: each domain's brain intensity histogram
    (density over shared bins, scaled to the panel's highest bar), the range and the JSD."""

    PANEL_H = 84

    def __init__(self, parent=None):
        super().__init__(parent)
        self.panels: list[dict] = []
        self.setMinimumHeight(60)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_panels(self, panels):
        self.panels = list(panels or [])
        domains = list(self.panels[0]["hist"]) if self.panels else []
        self.setFixedHeight(max(60, self.PANEL_H * len(self.panels) + 16 + 14 * ((len(domains) + 2) // 3)))
        self.update()

    def paintEvent(self, _event):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, y = self.width(), 0.0
        text = self.palette().text().color()
        if not self.panels:
            p.setPen(text)
            p.drawText(QRectF(4, 4, w - 8, 40), int(Qt.AlignmentFlag.AlignLeft),
                       "Train, or press Normalize, to see the domains' histograms.")
            p.end()
            return
        domains = list(self.panels[0]["hist"])
        for panel in self.panels:
            jsd = panel["jsd"]
            p.setPen(text)
            p.drawText(QRectF(4, y, w - 8, 14), int(Qt.AlignmentFlag.AlignLeft),
                       f"{panel['title']}   JSD {jsd:.3f}" if jsd is not None else panel["title"])
            box = QRectF(4, y + 16, w - 8, self.PANEL_H - 34)
            p.setPen(QPen(self.palette().mid().color(), 1))
            p.drawRect(box)
            top = max((max(h) for h in panel["hist"].values() if h), default=1.0) or 1.0
            for i, name in enumerate(domains):
                h = panel["hist"][name]
                n = max(1, len(h) - 1)
                poly = QPolygonF([QPointF(box.left() + box.width() * k / n, box.bottom() - box.height() * v / top)
                                  for k, v in enumerate(h)])
                p.setPen(QPen(QColor(SERIES_COLOURS[i % len(SERIES_COLOURS)]), 1.5))
                p.drawPolyline(poly)
            lo, hi = panel["range"]
            p.setPen(text)
            p.drawText(QRectF(4, box.bottom() + 1, w - 8, 14), int(Qt.AlignmentFlag.AlignLeft), f"{lo:.3g}")
            p.drawText(QRectF(4, box.bottom() + 1, w - 8, 14), int(Qt.AlignmentFlag.AlignRight), f"{hi:.3g}")
            y += self.PANEL_H
        for i, name in enumerate(domains):
            p.setPen(QColor(SERIES_COLOURS[i % len(SERIES_COLOURS)]))
            p.drawText(QRectF(4 + (w - 8) / 3 * (i % 3), y + 14 * (i // 3), (w - 8) / 3, 14),
                       int(Qt.AlignmentFlag.AlignLeft), f"— {name}")
        p.end()


class SiteNormalizationWidget(MethodDock):
    """The dock: controls mirror ``controller.settings``; buttons call the controller."""
    KILLED_RUNS_OF = "delisle2019"  # its trainers' method: the dock offers their killed runs

    BOUND, MODEL_NAME = BOUND, MODEL_NAME  # the module's names, for MethodDock's _to_settings and _versions
    LISTS = ("images", "labels", "apply_to")
    PATHS = ("folder",)

    def __init__(self, napari_viewer, registry: Registry | None = None):
        super().__init__(napari_viewer, NormalizationController, registry)
        c, v = self.controller, napari_viewer
        self.name = LineEdit(label="domain name")
        self.images = layer_select(v, Image, "images")
        self.labels = layer_select(v, Labels, "labels (or '<image> labels')")
        self.folder = FileEdit(label="or a folder", mode="d", value="")
        self.mode = ComboBox(label="mode", choices=list(MODES))
        self.dims = ComboBox(label="train on", choices=list(DIMS))
        self.slice_axis = SpinBox(label="slice axis (2-D)", min=0, max=2)
        self.rescale = CheckBox(text="rescale each image (brain 1-99th pct. to 0-1)")
        self.steps = SpinBox(label="steps", min=1, max=1_000_000)
        self.warmup_steps = SpinBox(label="warm-up steps (identity)", min=0, max=1_000_000)
        self.patch = SpinBox(label="patch", min=8, max=512, step=8)
        self.batch_size = SpinBox(label="patches per domain", min=1, max=256)
        self.adv_weight = FloatSpinBox(label="adversarial weight", min=0.0, max=100.0, step=0.05)
        self.identity_weight = FloatSpinBox(label="identity weight (after warm-up)", min=0.0, max=1000.0, step=0.1)
        self.lr = FloatSpinBox(label="learning rate (Adam)", min=1e-6, max=0.1, step=1e-4)
        self.features = SpinBox(label="network width", min=2, max=128)
        self.device = device_picker()
        self.apply_to = layer_select(v, Image, "apply to (empty: the domains)")
        self.version = ComboBox(label="version", choices=self._versions)
        self.side_by_side = CheckBox(text="raw and normalized side by side (grid)")
        buttons = {"add_button": ("Add domain", c.add_domain), "find_button": ("Find domains", c.find_domains),
                   "clear_button": ("Clear domains", c.clear_domains), "train_button": ("Train", c.train),
                   "normalize_button": ("Normalize", c.normalize), "segment_button": ("Segment", c.segment),
                   "grid_button": ("Side by side", c.show_side_by_side)}
        for attr, (text, action) in buttons.items():
            setattr(self, attr, PushButton(text=text))
            getattr(self, attr).changed.connect(lambda _=None, a=action: self._press(a))
        self.domain_list = Label(value="")
        self.loss_plot = LivePlot(LOSSES)
        self.dice_plot = LivePlot(("val_dice",), y_range=(0.0, 1.0), markers=True)
        self.hist_plot = HistogramPlot()
        self.jsd = Label(value="")
        self.models = Label(value="")
        for lab in (self.domain_list, self.jsd, self.models):
            lab.native.setWordWrap(True)  # long lines must not widen the dock
        self._lay_out([
            ("Domains (two or more sites)", [self.name, self.images, self.labels, self.folder, self.add_button,
                                             self.find_button, self.clear_button, self.domain_list]),
            ("Train", [self.mode, self.dims, self.slice_axis, self.rescale, self.steps, self.warmup_steps, self.patch,
                       self.batch_size, self.adv_weight, self.identity_weight, self.lr, self.features, self.device,
                       self.train_button, *self._killed_runs_row(),
                       self.runner, caption("losses: segmentation (Dice), identity (warm-up), adversarial, D"),
                       self.loss_plot, caption("validation Dice on the held-out images, per domain"),
                       self.dice_plot]),
            ("Normalized images, histograms, JSD", [self.hist_plot, self.jsd, self.apply_to, self.version,
                                                     self.side_by_side, self.normalize_button, self.grid_button,
                                                     self.segment_button, self.models])])
        # the histogram panel grows after training: never squeeze the sections to fit
        self.scroll.widget().layout().setSizeConstraint(QLayout.SizeConstraint.SetMinAndMaxSize)
        self._show_settings(BOUND)
        for name in BOUND + ("version", "folder"):
            getattr(self, name).changed.connect(lambda _=None: self._to_settings())
        c.listeners.append(self._on_event)
        self._on_registry(MODEL_NAME)
        self._show_domains(c.domain_lines())
        self._to_settings()

    def _show_domains(self, lines):
        self.domain_list.value = "\n".join(lines) if lines else "no domains yet: add two or more"

    @ensure_main_thread
    def _on_event(self, kind, payload=None):
        if kind == "settings":
            self._show_settings(BOUND, kind)
        elif kind == "domains":
            self._show_domains(payload or [])
        elif kind == "training":
            self.dice_plot.names = ["val_dice"] + [f"val_dice_{n}" for n in payload or []]
            self.dice_plot.clear()
            self.loss_plot.clear()
        elif kind == "progress":
            self.loss_plot.add(payload["step"], payload)
            self.dice_plot.add(payload["step"], payload)
        elif kind == "histograms":
            self.hist_plot.set_panels(payload)
            parts = [f"{p['stage']} {p['jsd']:.3f}" for p in payload or [] if p["jsd"] is not None]
            self.jsd.value = ("JSD: " + " → ".join(parts)) if parts else "JSD: one domain only"

    @ensure_main_thread
    def _on_registry(self, name):
        if name != MODEL_NAME:
            return
        self._show_versions(lambda cur: f"({cur.meta.get('mode', '?')})")
