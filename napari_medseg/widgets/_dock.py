"""The frame the method docks share: a runner, a controller, titled sections in a
scroll area, buttons whose engine errors become one message, registry updates."""

from __future__ import annotations

from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget
from superqt.utils import ensure_main_thread

from ..core import registry as registry_mod
from ..core.errors import MedsegError
from ._common import CURRENT
from ._plot import section




class MethodDock(QWidget):
    """Subclasses build their controls, then call :meth:`_lay_out` with their sections.

    Controls that mirror the controller's settings are named like the settings and listed
    in ``BOUND`` (multi-selects also in ``LISTS``, file and folder pickers in ``PATHS``,
    version pickers in ``VERSION_FIELDS``); a ``version`` picker lists the versions of
    ``MODEL_NAME``, or of the model the setting ``VERSIONS_OF`` names.
    """

    BOUND: tuple = ()
    LISTS: tuple = ()
    PATHS: tuple = ()
    VERSION_FIELDS: tuple = ("version",)
    MODEL_NAME: str | None = None
    VERSIONS_OF: str | None = None  # a settings field naming the model, where the dock lets one pick it
    CURRENT_CHOICE = True  # the picker starts with "current" (else it is nullable: None = current)
    #: the start of the method name the dock's trainers record (e.g. "dorent2019"): the dock then
    #: offers to save the best weights of that method's killed training runs (:meth:`_killed_runs_row`)
    KILLED_RUNS_OF: str | None = None

    def __init__(self, napari_viewer, controller_cls, registry=None):
        super().__init__()
        from ._runner import JobRunner

        self.viewer, self._syncing = napari_viewer, False
        self.runner = JobRunner()
        self.controller = controller_cls(napari_viewer, self.runner, registry)
        token = self._registry_token = registry_mod.subscribe(self._registry_event)
        # a dock deleted with its window (no closeEvent) must not hear of models any more
        self.destroyed.connect(lambda *_: registry_mod.unsubscribe(token))

    def _lay_out(self, sections) -> None:
        inner = QWidget()
        lay = QVBoxLayout(inner)
        for title, items in sections:
            lay.addWidget(section(title, items))
        lay.addStretch()
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(inner)
        QVBoxLayout(self).addWidget(self.scroll)

    def _show_settings(self, names, kind=None, _payload=None):
        """Show the controller's settings in the controls named ``names`` (on the
        controller's "settings" event too, so that ``controller.set`` from the console
        is not undone by the next click). Choices not on offer are left alone."""
        if self._syncing or kind not in (None, "settings"):
            return
        self._syncing = True
        try:
            s = self.controller.settings
            for name in names:
                value, control = getattr(s, name), getattr(self, name)
                choices = getattr(control, "choices", None)
                if isinstance(value, list) and choices is not None:
                    control.value = [v for v in value if v in choices]
                elif choices is not None:
                    if value in choices or (value is None and getattr(control, "_nullable", False)):
                        control.value = value
                elif value is not None:
                    control.value = value
        finally:
            self._syncing = False

    def _versions(self, _w=None, name: str | None = None):
        """Choices of a version picker: "current" (unless ``CURRENT_CHOICE`` is off), then every
        version of ``name`` (default: the model the dock shows), labelled by ``_version_label``."""
        if name is None:
            name = getattr(self.controller.settings, self.VERSIONS_OF) if self.VERSIONS_OF else self.MODEL_NAME
        entries = self.controller.registry.list(name) if name else []
        labels = [self._version_label(e) for e in entries]
        return ([CURRENT] if self.CURRENT_CHOICE else []) + [e.version if label is None else (label, e.version)
                                                             for e, label in zip(entries, labels)]

    def _version_label(self, entry) -> str | None:
        """How a version is listed; None: as its number."""
        return None

    def _to_settings(self):
        """Every bound control's value into the controller's settings (a picked version as a
        number, "current" as None; empty paths as "")."""
        if self._syncing:
            return
        values = {name: getattr(self, name).value for name in self.BOUND}
        for name in self.LISTS:
            values[name] = list(getattr(self, name).value or [])
        for name in self.PATHS:
            text = str(getattr(self, name).value or "")
            values[name] = "" if text in ("", ".") else text
        for name in self.VERSION_FIELDS:
            if hasattr(self, name):
                value = getattr(self, name).value
                values[name] = None if value in (CURRENT, None) else int(value)
        self.controller.set(**values)

    def _press(self, action):
        try:
            action()
        except MedsegError as exc:
            self.controller._say(str(exc), error=True)

    def _killed_runs_row(self) -> list:
        """A line naming this method's killed training runs whose best weights are not saved,
        and a button that saves them as versions (both hidden while there are none)."""
        from magicgui.widgets import Label, PushButton

        self.killed_runs = Label(value="")
        self.killed_runs.native.setWordWrap(True)
        self.recover_button = PushButton(text="Save best weights of killed runs")
        self.recover_button.changed.connect(lambda _=None: self._press(self.recover_killed))
        self._show_killed_runs()
        return [self.killed_runs, self.recover_button]

    def _show_killed_runs(self) -> None:
        if not hasattr(self, "killed_runs"):
            return
        from ..core.recover import killed_runs_note

        note = killed_runs_note(self.KILLED_RUNS_OF, self.controller.registry.user_root)
        self.killed_runs.value = note
        self.killed_runs.visible = self.recover_button.visible = bool(note)

    def recover_killed(self) -> list:
        """This method's killed runs' best weights as new versions, not made current (the
        button; ``napari-medseg models recover NAME``); returns their registry entries."""
        from ..core.recover import recover_killed

        entries, problems = recover_killed(self.controller.registry, self.KILLED_RUNS_OF)
        self._show_killed_runs()
        if entries:
            self.controller._say("saved " + ", ".join(e.label for e in entries) + " from killed runs (not current; "
                                 "pick the version to use it, or make it current in the Models dock)")
        if problems:
            self.controller._say("not saved: " + "; ".join(problems), error=True)
        return entries

    @ensure_main_thread
    def _registry_event(self, name):
        try:
            self._show_killed_runs()
            self._on_registry(name)
        except RuntimeError:  # its Qt objects are already deleted: stop listening
            registry_mod.unsubscribe(self._registry_token)

    def _on_registry(self, name):  # overridden by docks that list model versions
        pass

    def _show_versions(self, describe) -> None:
        """Refresh the ``version`` picker and the ``models`` line of ``MODEL_NAME``:
        "current: <label> <describe(entry)>; N version(s)", or that none is trained yet."""
        self.version.reset_choices()
        entries = self.controller.registry.list(self.MODEL_NAME)
        if entries:
            cur = self.controller.registry.get(self.MODEL_NAME)
            self.models.value = f"current: {cur.label} {describe(cur)}; {len(entries)} version(s)"
        else:
            self.models.value = f"{self.MODEL_NAME}: none yet (train one)"

    def closeEvent(self, event):
        registry_mod.unsubscribe(self._registry_token)
        super().closeEvent(event)
