"""npe2 writer: a Labels layer to NIfTI (affine kept), OME-TIFF or OME-Zarr."""

from __future__ import annotations

from .core.io import write_labels


def write_labels_layer(path: str, data, attributes: dict) -> list[str]:
    meta = dict((attributes.get("metadata") or {}).get("medseg_io") or {})
    for key in ("scale", "translate"):  # the layer's placement, unless the file it came from says more
        if meta.get(key) is None:
            meta[key] = list(attributes.get(key, [])) or None
    if isinstance(data, list):  # multiscale labels: write the full-resolution level
        data = data[0]
    return [str(write_labels(path, data, meta))]
