"""Model manager: every shipped and user model version, its metrics and card; roll back."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, FileEdit, Label, PushButton, Table, TextEdit
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from ..core.errors import MedsegError
from ..core.registry import Registry, model_card_path, subscribe, unsubscribe


class ModelsWidget(Container):
    def __init__(self, napari_viewer=None, registry: Registry | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.registry = registry or Registry()
        self.table = Table(value=[])
        self.refresh_button = PushButton(text="Refresh")
        self.restore_button = PushButton(text="Make selected version current")
        self.package = FileEdit(label="bioimage.io package", mode="w", filter="*.zip", value="model.zip")
        self.export_button = PushButton(text="Export selected to bioimage.io")
        self.import_button = PushButton(text="Import package as a new version")
        self.card = TextEdit(value="")
        self.card.native.setReadOnly(True)
        # training runs killed (kill -9, a crash) before they saved: their best weights, kept on disk
        self.killed_runs = Label(value="")
        self.killed_runs.native.setWordWrap(True)
        self.recover_button = PushButton(text="Save best weights of killed runs")
        self.extend([self.table, self.refresh_button, self.restore_button, self.killed_runs, self.recover_button,
                     self.package, self.export_button, self.import_button, self.card])
        self.recover_button.changed.connect(lambda _=None: self.recover_killed())
        self.export_button.changed.connect(lambda _=None: self.export_selected())
        self.import_button.changed.connect(lambda _=None: self.import_package())
        self.refresh_button.changed.connect(lambda _=None: self.refresh())
        self.restore_button.changed.connect(lambda _=None: self.restore_selected())
        self.table.native.itemSelectionChanged.connect(self._show_card)
        self.entries = []
        self.refresh()
        token = subscribe(self._on_registry_changed)
        self.native.destroyed.connect(lambda *_: unsubscribe(token))

    @ensure_main_thread
    def _on_registry_changed(self, _name=None):
        self.refresh()

    def refresh(self):
        self.entries = self.registry.list()
        rows = []
        for e in self.entries:
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in e.meta.get("metrics", {}).items() if isinstance(v, float))
            current = "✓" if self.registry.get(e.name).path == e.path else ""
            rows.append([e.name, e.version, e.source, current, metrics, e.meta.get("created", "")])
        self.table.value = {
            "data": rows,
            "index": [str(i + 1) for i in range(len(rows))],
            "columns": ["model", "version", "source", "current", "metrics", "created"],
        }
        self._show_killed_runs()

    def _show_killed_runs(self):
        from ..core.recover import killed_runs_note

        note = killed_runs_note(root=self.registry.user_root)
        self.killed_runs.value = note
        self.killed_runs.visible = self.recover_button.visible = bool(note)

    def recover_killed(self):
        """Every killed run's best weights as new versions (not current); returns their entries."""
        from ..core.recover import recover_killed

        entries, problems = recover_killed(self.registry)
        if problems:
            show_error("not saved: " + "; ".join(problems))
        self.refresh()
        if entries:
            self.select(entries[-1].name, entries[-1].version)
            show_info("saved " + ", ".join(e.label for e in entries) + " from killed runs; not current: select one "
                      "and press 'Make selected version current' to use it")
        elif not problems:
            show_info("No killed training run holds best weights to save.")
        return entries

    def selected(self):
        rows = sorted({i.row() for i in self.table.native.selectedIndexes()})
        return self.entries[rows[0]] if rows else None

    def select(self, name: str, version: int):
        for i, e in enumerate(self.entries):
            if e.name == name and e.version == version:
                self.table.native.selectRow(i)

    def restore_selected(self):
        e = self.selected()
        if e is None:
            show_info("Select a model version first.")
            return None
        self.registry.restore(e.name, e.version)
        self.refresh()
        show_info(f"{e.name}: version {e.version} is current again")
        return e

    def _show_card(self):
        e = self.selected()
        if e is None:
            return
        card = model_card_path(e)
        text = card.read_text() if card else ""
        meta = "\n".join(f"- **{k}**: `{v}`" for k, v in e.meta.items()
                         if k in ("method", "created", "metrics", "config", "sha256"))
        # the card is markdown: shown as rich text (headings, tables, lists), not as its source
        self.card.native.setMarkdown((text + "\n\n## This version\n\n" + meta).strip())

    def export_selected(self, path=None):
        """Write the selected version as a bioimage.io package (``path`` or the package box);
        returns the path, or None with a message."""
        from ..core.bioimageio import export_model

        e = self.selected()
        if e is None:
            show_info("Select a model version first.")
            return None
        path = Path(path or self.package.value)
        try:
            export_model(e, path)
        except MedsegError as exc:
            show_error(str(exc))
            return None
        show_info(f"{e.label} written to {path} (check it with: bioimageio test {path.name})")
        return path

    def import_package(self, path=None):
        """A package exported by napari-medseg as a new (not current) version; returns its entry."""
        from ..core.bioimageio import import_model

        try:
            entry = import_model(self.registry, Path(path or self.package.value))
        except MedsegError as exc:
            show_error(str(exc))
            return None
        self.refresh()
        self.select(entry.name, entry.version)
        show_info(f"imported as {entry.label}; make it current with the button above")
        return entry
