"""How the Normalize across sites controller shows results: one layer per image beside its raw
layer, the histograms, and a side-by-side grid view (main thread; a mixin of the controller)."""

from __future__ import annotations

from napari.layers import Image, Labels

from ...methods.site_normalization.labels import CLASS_COLOURS, class_features
from ...core.errors import InputError
from ...methods.site_normalization.sites import TISSUE_NAMES
from .._common import layer_placement as _place
from .._controller import said as _said


class NormalizationDisplay:
    """Needs ``viewer``, ``settings.side_by_side``, ``_emit``; sets ``normalized_layers``,
    ``segmented_layers``, ``histograms`` and ``jsd``."""

    def _show(self, res: dict, entry, what: str) -> list:
        """Main thread: add (or update) one layer per image next to its raw layer; folder images
        get their raw layer too (the first of each folder). Then the histograms."""
        from ...core.io import napari_placement

        out, pairs = [], []
        for name, items in res["groups"]:
            for k, it in enumerate(items):
                raw_layer = it.get("layer")
                if raw_layer is None:  # a folder image: show the first one of the domain
                    if k > 0:
                        continue
                    title = it["title"]
                    raw_layer = (self.viewer.layers[title] if title in self.viewer.layers else
                                 self.viewer.add_image(it["raw"], name=title, colormap="gray",
                                                       metadata={"medseg_io": it["meta"]},
                                                       **{k2: v for k2, v in napari_placement(it["meta"]).items()
                                                          if k2 in ("scale", "translate", "affine")}))
                layer = self._put(raw_layer, it["result"], entry, what, res["mode"], name)
                out.append(layer)
                pairs.append((raw_layer, layer))
        if what == "normalize":
            self.normalized_layers = out
            self.histograms = res["histograms"]
            self.jsd = {p["stage"]: p["jsd"] for p in self.histograms}
            self._emit("histograms", self.histograms)
            if self.settings.side_by_side:
                self.show_side_by_side(pairs)
        else:
            self.segmented_layers = out
        return out

    def _put(self, raw_layer, data, entry, what: str, mode: str, domain: str):
        suffix = "[normalized]" if what == "normalize" else "[segmented]"
        name = f"{raw_layer.name} {suffix}"
        meta = {"medseg": {"from": raw_layer.name, "domain": domain, "model": entry.name, "version": entry.version,
                           "mode": mode}, "medseg_io": (raw_layer.metadata or {}).get("medseg_io") or {}}
        kind = Image if what == "normalize" else Labels
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], kind):
            layer = self.viewer.layers[name]
            layer.data, layer.metadata = data, meta
            if kind is Image:
                layer.reset_contrast_limits()
            return layer
        if kind is Image:
            layer = self.viewer.add_image(data, name=name, colormap="gray", metadata=meta, **_place(raw_layer))
        else:
            n = int(data.max()) + 1 if data.size else 1
            extra = {"colormap": dict(CLASS_COLOURS), "features": class_features()} if n <= len(TISSUE_NAMES) else {}
            layer = self.viewer.add_labels(data, name=name, opacity=0.5, metadata=meta, **extra, **_place(raw_layer))
        layers = self.viewer.layers
        layers.move(layers.index(layer), layers.index(raw_layer) + 1)
        return layer

    @_said
    def show_side_by_side(self, pairs=None):
        """Button **Side by side**: grid view, each raw image beside its normalised one (raw
        left); the other layers are hidden (not removed)."""
        pairs = pairs if pairs is not None else [
            (self.viewer.layers[lay.metadata["medseg"]["from"]], lay) for lay in self.normalized_layers
            if lay in self.viewer.layers and lay.metadata["medseg"]["from"] in self.viewer.layers]
        if not pairs:
            raise InputError("Nothing to show side by side yet: Train, or press Normalize.")
        keep = {lay.name for pair in pairs for lay in pair}  # names: plugin docks see proxies of the layers
        for lay in self.viewer.layers:
            lay.visible = lay.name in keep
        grid = self.viewer.canvas.grid
        grid.stride = 1
        grid.shape = (-1, 2 if len(pairs) <= 2 else 4)
        grid.enabled = True
        self.viewer.reset_view()

