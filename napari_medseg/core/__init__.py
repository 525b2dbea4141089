"""Qt-free engine shared by all methods. Never imports Qt, napari or magicgui."""

from .errors import InputError, MemoryPreflightError, NotACheckpointError

__all__ = ["InputError", "MemoryPreflightError", "NotACheckpointError"]
