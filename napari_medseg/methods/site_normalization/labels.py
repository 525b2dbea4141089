"""The brain tissue classes of the site phantom as napari shows them: names (the layer's
features) and colours, used by the dock and the sample data alike."""

from __future__ import annotations

from .sites import TISSUE_NAMES

#: colours of the tissue classes
CLASS_COLOURS = {0: "transparent", 1: "#4b8bff", 2: "#a0a0a0", 3: "#ffe066", None: "transparent"}


def class_features() -> dict:
    """A Labels layer's ``features``: each value's class name."""
    return {"index": list(range(len(TISSUE_NAMES))), "class": list(TISSUE_NAMES)}
