"""How the Modality transfer controller shows results: one labels layer per mode on the
"show results on" image, the comparison table, and a side-by-side grid (main thread; a mixin
of the controller)."""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError
from ...methods.modality_transfer.compare import MODES, ROW_NAMES
from .layers import pair_labels

LAYER_TAGS = {"source_only": "source only", "full": "full", "frozen_critic": "critic frozen", "scratch": "scratch"}


class TransferDisplay:
    """Needs ``viewer``, ``settings``, ``rows``, ``result_layers``, ``views``, ``_ordered`` and ``_emit``."""

    def _show_results(self, done, show):
        for r in done:
            self.rows[r["mode"]] = {k: r[k] for k in ("dice", "hd95", "precision", "sensitivity", "model", "version",
                                                      "best_step", "stopped")}
            if r["labels"] is not None and show is not None:
                name = f"{show.name} [{LAYER_TAGS[r['mode']]} v{r['version']}]"
                old = self.result_layers.get(r["mode"])
                if old is not None and old in self.viewer.layers and old.name == name:
                    continue  # the same model on the same image: already shown
                self.result_layers[r["mode"]] = self.viewer.add_labels(
                    r["labels"], name=name, opacity=0.5, scale=tuple(show.scale), translate=tuple(show.translate),
                    metadata={"medseg": {"model": r["model"], "mode": r["mode"], "image": show.name}})
        if done and show is not None and show.ndim == 3:
            self._go_to_tumour(show)
        self._emit("table", self.table())

    def _go_to_tumour(self, show):
        """Move the slider to the slice with the most tumour: the true one when ``show``
        is a target layer with labels, else the predicted one."""
        truth = self._truth_of(show)
        masks = [np.asarray(truth.data)] if truth is not None else [
            np.asarray(lay.data) for lay in self.result_layers.values() if lay in self.viewer.layers]
        if not masks:
            return
        z = int(np.argmax(sum(m.sum(axis=(1, 2)) for m in masks)))
        self.viewer.dims.set_point(0, float(z * show.scale[0] + show.translate[0]))

    def _truth_of(self, show):
        images = self._ordered(self.settings.target_images)
        if show not in images:
            return None
        try:
            return pair_labels(images, self._ordered(self.settings.target_labels), "target")[images.index(show)]
        except InputError:
            return None

    def table(self) -> list[dict]:
        """The comparison rows, in the order source only, full, critic frozen, scratch."""
        order = ["source_only", *MODES]
        return [{"mode": m, "name": ROW_NAMES[m], **self.rows[m]} for m in order if m in self.rows]

    def side_by_side(self, on: bool = True):
        """One grid cell per result (true labels first when the image is a target layer),
        each over a view of the image (sharing its data); ``on=False`` ends the grid."""
        with self.viewer.layers.batched_update():  # one scene-graph update, not one per view
            for view in self.views:
                if view in self.viewer.layers:
                    self.viewer.layers.remove(view)
        self.views = []
        if not on:
            self.viewer.canvas.grid.enabled = False
            return []
        show = self.settings.show_on
        layers = [lay for lay in self.result_layers.values() if lay in self.viewer.layers]
        if show is None or not layers:
            raise InputError("Run a transfer with 'show results on' set first; there are no results to put "
                             "side by side.")
        truth = self._truth_of(show)
        if truth is not None:
            layers = [truth, *layers]
        for lay in self.viewer.layers:
            lay.visible = False
        for lay in reversed(layers):  # the first ends up on top: the grid's top-left cell
            tag = (lay.metadata.get("medseg") or {}).get("mode")
            view = self.viewer.add_image(show.data, name=f"{show.name} · {LAYER_TAGS.get(tag, 'truth')}",
                                         colormap=show.colormap, contrast_limits=show.contrast_limits,
                                         gamma=show.gamma, scale=show.scale, translate=show.translate,
                                         metadata={"medseg_view": True})
            self.views.append(view)
            lay.visible = True
            end = len(self.viewer.layers)
            self.viewer.layers.move(self.viewer.layers.index(view), end)
            self.viewer.layers.move(self.viewer.layers.index(lay), end)
        self.viewer.canvas.grid.stride = -2  # pairs from the top of the layer list: a labels layer over its image view
        self.viewer.canvas.grid.enabled = True
        self.viewer.reset_view()
        return list(self.views)

