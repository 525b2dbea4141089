"""npe2 writer: a Labels layer to NIfTI (affine kept), OME-TIFF or OME-Zarr; saved onto an
existing OME-Zarr image, it goes into the image's ``labels`` group under the layer's name."""

from __future__ import annotations

from .core.io import write_labels


def write_labels_layer(path: str, data, attributes: dict) -> list[str]:
    meta = dict((attributes.get("metadata") or {}).get("medseg_io") or {})
    for key in ("scale", "translate"):  # the layer's placement, unless the file it came from says more
        if meta.get(key) is None:
            meta[key] = list(attributes.get(key, [])) or None
    if isinstance(data, list):  # multiscale labels: write the full-resolution level
        data = data[0]
    if meta.get("units") is None and attributes.get("units") is not None:
        meta["units"] = [str(u) for u in attributes["units"]]
    meta.update(_label_table(data, attributes))
    meta["layer_name"] = attributes.get("name")  # the name under an OME-Zarr image's "labels" group
    return [str(write_labels(path, data, meta))]


def _label_table(data, attributes: dict) -> dict:
    """Class names (the layer's ``index``/``class`` features) and colours (its colormap) of
    the label values, for formats that keep them (OME-Zarr's ``image-label``)."""
    import numpy as np

    out: dict = {}
    features = attributes.get("features")
    names = {}
    if features is not None and {"index", "class"} <= set(getattr(features, "columns", [])):
        names = {int(i): str(c) for i, c in zip(features["index"], features["class"]) if int(i) > 0}
    if names:
        out["label_names"] = names
    values = sorted(names) or [int(v) for v in np.unique(np.asarray(data)) if v > 0][:256]
    colormap = attributes.get("colormap")
    if values and hasattr(colormap, "map"):
        try:
            rgba = np.asarray(colormap.map(np.asarray(values)), float).reshape(len(values), -1)
            out["label_colors"] = {v: list(c) for v, c in zip(values, rgba)}
        except Exception:  # noqa: BLE001 - colours are a courtesy; the labels are what matter
            pass
    return out
