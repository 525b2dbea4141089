"""The cardiac classes as napari shows them: names (the layer's features) and colours,
used by the dock, the sample data and the CLI alike."""

from __future__ import annotations

from .cardiac import LABEL_NAMES

#: colours of the classes 1-3 (LV blood pool, LV myocardium, RV)
CLASS_COLOURS = {0: "transparent", 1: "#ff4b4b", 2: "#46d646", 3: "#4b8bff", None: "transparent"}


def class_features() -> dict:
    """A Labels layer's ``features``: each value's class name."""
    return {"index": list(range(len(LABEL_NAMES))), "class": list(LABEL_NAMES)}
