"""What every widget controller shares: messages, listeners, settings, and running a job
in the background or (``block=True``, for the console and tests) until it finishes."""

from __future__ import annotations

import functools
import time

from napari.utils.notifications import show_error, show_info

from ..core.errors import InputError, MedsegError


class Controller:
    """Base of the method controllers; subclasses set ``settings``, ``runner`` and ``_result``."""

    settings: object
    runner: object

    def __init__(self):
        self.message = ""
        self.listeners: list = []  # callback(kind, payload)
        self._result = None

    def set(self, **changes):
        """Change settings, as the dock's controls do; an unknown name is an error."""
        for k, v in changes.items():
            if not hasattr(self.settings, k):
                raise AttributeError(f"no setting {k!r}")
            setattr(self.settings, k, v)
        self._emit("settings")

    def _emit(self, kind: str, payload=None):
        for cb in list(self.listeners):
            cb(kind, payload)

    def _say(self, msg: str, error: bool = False):
        self.message = msg
        (show_error if error else show_info)(msg)
        self._emit("message", msg)

    def _run(self, start, block: bool):
        try:
            worker = start()
        except MedsegError as exc:
            self._say(str(exc), error=True)
            return None
        if worker is None or not block:
            return worker
        self.wait()
        return self._result

    def wait(self, timeout: float | None = None):
        """Block (keeping the viewer alive) until the running job has finished."""
        from qtpy.QtWidgets import QApplication

        t0 = time.monotonic()
        while self.runner.running:
            QApplication.processEvents()
            time.sleep(0.005)
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TimeoutError("the job is still running")

    def _check_idle(self):
        if self.runner.running:
            raise InputError("A job is already running; press Stop or wait for it to finish.")
        self._result = None


def said(action):
    """Decorator for a controller action that is not a job: an engine error becomes one
    message (and None), from the dock and from the console alike."""
    @functools.wraps(action)
    def run(self, *args, **kwargs):
        try:
            return action(self, *args, **kwargs)
        except MedsegError as exc:
            self._say(str(exc), error=True)
            return None
    return run
