"""Camera helpers the demo steps share."""

from __future__ import annotations


def _zoom_to(viewer, shape) -> None:
    """Fill the canvas with a (H, W) image at the origin (reset_view would also fit the
    hidden slide layers, leaving the 128-px axon image a speck)."""
    ch, cw = viewer.screenshot(canvas_only=True, flash=False).shape[:2]
    viewer.camera.center = (0.0, (shape[0] - 1) / 2, (shape[1] - 1) / 2)
    viewer.camera.zoom = 0.95 * min(ch / shape[0], cw / shape[1])


def _show_slice(viewer, layer, index: int | None = None) -> None:
    """Slice ``index`` (default the middle) of a (slices, H, W) layer, in napari's default axis
    order (an earlier demo step may have changed it), the slice filling the canvas
    (reset_view would also fit the hidden slide layers)."""
    viewer.dims.order = tuple(range(viewer.dims.ndim))
    if layer.ndim == 3:
        k = len(layer.data) // 2 if index is None else int(index)
        viewer.dims.set_point(0, float(k * layer.scale[0] + layer.translate[0]))
    if viewer.canvas.grid.enabled:
        viewer.reset_view()
        return
    (y0, x0), (y1, x1) = (layer.extent.world[0][-2:], layer.extent.world[1][-2:])
    ch, cw = viewer.screenshot(canvas_only=True, flash=False).shape[:2]
    viewer.camera.center = (0.0, (y0 + y1) / 2, (x0 + x1) / 2)
    viewer.camera.zoom = 0.95 * min(ch / max(y1 - y0, 1e-6), cw / max(x1 - x0, 1e-6))
