"""Small shared pieces of the widgets: layer pickers, device picker, layer↔array adapters."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox

from ..core.device import available_devices

SMALL_ENOUGH_TO_PAINT = 64_000_000  # pixels: below this a result is loaded into memory for painting


#: the version picker's first choice: whatever version is current when the button is pressed
CURRENT = "current"


def version_label(entry) -> str:
    """How a version picker lists a registry entry: ``vN (source)``."""
    return f"v{entry.version} ({entry.source})"


def version_choices(registry, name: str | None) -> list:
    """A version picker's choices: "current", then every version of ``name`` as ``vN (source)``."""
    entries = registry.list(name) if name else []
    return [CURRENT] + [(version_label(e), e.version) for e in entries]


def layer_picker(viewer, layer_type, label: str, nullable: bool = False, exclude=()) -> ComboBox:
    """A ComboBox of the viewer's layers of one type (but not those named in
    ``exclude``, e.g. a widget's own output layers) that follows the layer list."""

    def choices(_widget=None):
        return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, layer_type) and lay.name not in exclude]

    box = ComboBox(label=label, choices=choices, nullable=nullable)
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        ev.connect(lambda _e=None: box.reset_choices())
    return box


def stored_labels(path, in_memory: bool = True):
    """``(data, multiscale)`` for a Labels layer of the label store a job wrote at ``path``:
    small results as one array (in memory, so they can be painted, when ``in_memory``),
    big ones as their lazy pyramid, never read whole."""
    import dask.array as da

    from ..core.tiling import open_pyramid_output

    levels = [da.from_zarr(a) for a in open_pyramid_output(path, allow_incomplete=not in_memory)]
    if int(np.prod(levels[0].shape)) <= SMALL_ENOUGH_TO_PAINT or len(levels) == 1:
        return (np.asarray(levels[0]) if in_memory else levels[0]), False
    return levels, True


def device_picker() -> ComboBox:
    return ComboBox(label="device", choices=["auto", *available_devices()], value="auto")


def layer_level(layer, level: int):
    """The array of one pyramid level (level 0 for single-scale layers), never materialised."""
    if getattr(layer, "multiscale", False):
        level = min(max(level, 0), len(layer.data) - 1)
        return layer.data[level], level
    return layer.data, 0


def layer_unit(layer) -> str | None:
    """The physical unit of a layer's last axis, or None for plain pixels (napari's default)."""
    units = [str(u) for u in getattr(layer, "units", ())]
    return units[-1] if units and units[-1] not in ("pixel", "dimensionless", "") else None


def level_scale(layer, level: int) -> tuple:
    """World scale of a pyramid level, so results line up with the layer."""
    base = np.asarray(layer.scale, dtype=float)
    if not getattr(layer, "multiscale", False) or level == 0:
        return tuple(base)
    full, lev = layer.data[0].shape, layer.data[level].shape
    nd = len(base)
    factors = [f / max(1, s) for f, s in zip(full[:nd], lev[:nd])]
    return tuple(b * f for b, f in zip(base, factors))


def layer_grid(layer) -> tuple:
    """(scale, translate, affine matrix) of a layer, as arrays: two layers on one grid match in all three."""
    return (np.asarray(layer.scale, float), np.asarray(layer.translate, float),
            np.asarray(layer.affine.affine_matrix, float))


def check_on_image_grid(labels, image, who: str) -> None:
    """One :class:`InputError` unless the ``labels`` layer lies on the ``image`` layer's grid
    (same shape, scale, translation and affine); ``who`` starts the message ("Patient P1: the
    LGE", "Domain 'adult': the")."""
    from ..core.errors import InputError

    if np.shape(labels.data) != np.shape(image.data):
        raise InputError(f"{who} labels {labels.name!r} are {np.shape(labels.data)} but the image {image.name!r} is "
                         f"{np.shape(image.data)}; labels must be on the image's grid (resample them onto it first).")
    (s1, t1, a1), (s2, t2, a2) = layer_grid(labels), layer_grid(image)
    if not (np.allclose(s1, s2) and np.allclose(t1, t2) and np.allclose(a1, a2)):
        r = lambda v: [round(float(x), 3) for x in v]  # noqa: E731
        raise InputError(f"{who} labels {labels.name!r} are placed differently from the image {image.name!r} "
                         f"(scale {r(s1)} vs {r(s2)}, translate {r(t1)} vs {r(t2)}); labels must be on the image's "
                         "grid.")


def layer_placement(layer) -> dict:
    """Keyword arguments that put a new layer where ``layer`` is (scale, translate, and the affine if any)."""
    out = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
    if not np.allclose(layer.affine.affine_matrix, np.eye(layer.ndim + 1)):
        out["affine"] = np.asarray(layer.affine.affine_matrix)
    return out
