"""One exception type per kind of user-facing failure, each with a plain message.

Widgets turn these into a napari notification, the CLI into a non-zero exit.
"""


class MedsegError(Exception):
    """Base class: the message is meant for the researcher, not a traceback."""


class InputError(MedsegError, ValueError):
    """Bad input: unreadable file, wrong dimensions, NaN/inf, empty array."""


class NotACheckpointError(MedsegError, ValueError):
    """A file that is not a checkpoint written by napari-medseg."""


class MemoryPreflightError(MedsegError, MemoryError):
    """A job that will not fit in the device's memory."""


class TrainingError(MedsegError):
    """Training that cannot go on (e.g. the loss diverged)."""
