"""The traces screens: the runs of a traces database, and one stored run (spans and timeline)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, Tree

from counterpoint.runtime.tracing import query
from counterpoint.runtime.tracing.models import RunRecord, SpanKind, SpanRecord
from counterpoint.runtime.tracing.query import SpanNode
from counterpoint.runtime.tracing.store import TraceStore
from counterpoint.tui.timeline import Timeline, TimelineModel

__all__ = ["RunDetailScreen", "TracesScreen", "filter_runs", "span_label"]


def filter_runs(runs: list[RunRecord], text: str) -> list[RunRecord]:
    """Runs matching every word of ``text``: ``name:X``, ``status:X``, ``mode:X``, or a word
    found in the id, name, status, mode or prompt."""
    words = text.lower().split()
    kept = []
    for run in runs:
        ok = True
        for word in words:
            key, _, value = word.partition(":")
            if value and key in ("name", "status", "mode"):
                ok = value in str(getattr(run, key)).lower()
            else:
                hay = f"{run.id} {run.name} {run.status} {run.mode} {run.prompt}".lower()
                ok = word in hay
            if not ok:
                break
        if ok:
            kept.append(run)
    return kept


def span_label(span: SpanRecord) -> Text:
    style = {"ok": "green", "error": "red"}.get(span.status, "bright_black")
    label = Text()
    label.append(f"{span.kind} ", "bold")
    label.append(span.name)
    duration = span.duration_s if span.duration_s is not None else 0.0
    label.append(f"  {span.start_s:.2f}s +{duration:.2f}s ", "bright_black")
    label.append(span.status, style)
    return label


class RunDetailScreen(Screen[None]):
    """One stored run: its details, its span tree and its timeline."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("x", "export", "Export JSON"),
    ]
    DEFAULT_CSS = """
    RunDetailScreen #details { height: auto; padding: 0 1; }
    RunDetailScreen #spans { height: 1fr; }
    RunDetailScreen #output { height: auto; max-height: 8; padding: 0 1; color: $text-muted; }
    """

    def __init__(
        self, store: TraceStore, run: RunRecord, spans: list[SpanRecord], export_dir: Path
    ) -> None:
        super().__init__(id="run-detail")
        self.store = store
        self.run = run
        self.spans = spans
        self.export_dir = export_dir

    def compose(self) -> ComposeResult:
        run = self.run
        duration = f"{run.duration_s:.2f}s" if run.duration_s is not None else "–"
        details = Text()
        details.append(f"{run.name} ", "bold")
        details.append(f"{run.id}  ", "bright_black")
        details.append(f"{run.status}", {"ok": "green"}.get(run.status, "red"))
        details.append(
            f"  model {run.model or '–'}  mode {run.mode or '–'}  {duration}"
            f"  tokens in {run.input_tokens} out {run.output_tokens}"
            f"  calls {run.calls}  interrupts {run.interrupts}\n"
        )
        details.append("› ", "bold")
        details.append(run.prompt)
        yield Static(details, id="details")
        tree: Tree[SpanRecord] = Tree(Text(f"run {run.id}"), id="spans")
        tree.root.expand()

        def add(parent: Any, nodes: list[SpanNode]) -> None:
            for node in nodes:
                child = parent.add(span_label(node.span), data=node.span, expand=True)
                if not node.children:
                    child.allow_expand = False
                add(child, node.children)

        add(tree.root, query.span_tree(self.spans))
        yield tree
        if run.output:
            yield VerticalScroll(Static(Text(run.output)), id="output")
        yield Timeline(TimelineModel.from_spans(self.spans, end_t=run.duration_s), id="timeline")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Timeline).refresh_model()

    def action_export(self) -> None:
        export = query.RunExport(run=self.run, spans=self.spans)
        path = self.export_dir / f"counterpoint-run-{self.run.id}.json"
        try:
            path.write_text(export.to_json(), encoding="utf-8")
        except OSError as exc:
            self.notify(f"could not write {path}: {exc}", severity="error")
            return
        self.notify(f"Exported to {path}")


class TracesScreen(Screen[None]):
    """The runs of the traces database, most recent first; Enter opens one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "reload", "Reload"),
        Binding("ctrl+f", "focus_filter", "Filter"),
    ]
    DEFAULT_CSS = """
    TracesScreen #runs { height: 1fr; }
    TracesScreen #empty { padding: 1 2; color: $text-muted; }
    """

    def __init__(
        self,
        db: str | None,
        *,
        export_dir: Path,
        limit: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(id="traces")
        self.db = db
        self.export_dir = export_dir
        self.clock = clock
        self.limit = limit
        self.store: TraceStore | None = None
        self.runs: list[RunRecord] = []
        self.shown: list[RunRecord] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Input(placeholder="filter: words, name:X status:X mode:X", id="filter")
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
            yield Static("", id="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("id", "name", "status", "mode", "model", "duration", "calls", "prompt")
        self.load()

    def open_store(self) -> TraceStore | None:
        if self.store is None:
            try:
                self.store = TraceStore(self.db, open_timeout_s=2.0)
            except Exception as exc:  # a damaged, foreign or locked file: say so in the UI
                self.query_one("#empty", Static).update(f"Cannot open the traces database: {exc}")
                return None
        return self.store

    def action_reload(self) -> None:
        if self.is_mounted:  # before that, on_mount loads the runs
            self.load()

    def load(self) -> None:
        store = self.open_store()
        if store is None:
            return
        try:
            self.runs = query.list_runs(store, limit=self.limit)
        except Exception as exc:
            self.query_one("#empty", Static).update(f"Cannot read the traces database: {exc}")
            return
        self.refilter()

    def refilter(self) -> None:
        self.shown = filter_runs(self.runs, self.query_one("#filter", Input).value)
        table = self.query_one(DataTable)
        table.clear()
        for run in self.shown:
            duration = f"{run.duration_s:.2f}s" if run.duration_s is not None else "–"
            style = {"ok": "green", "running": "yellow"}.get(run.status, "red")
            table.add_row(
                run.id[:12],
                run.name,
                Text(run.status, style),
                run.mode,
                run.model[:20],
                duration,
                str(run.calls),
                run.prompt[:40].replace("\n", " "),
                key=run.id,
            )
        empty = "" if self.shown else ("No runs match." if self.runs else "No runs recorded yet.")
        self.query_one("#empty", Static).update(empty)

    def on_input_changed(self, message: Input.Changed) -> None:
        if message.input.id == "filter":
            self.refilter()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        if message.row_key.value is not None:
            self.open_run(str(message.row_key.value))

    def open_run(self, run_id: str) -> None:
        store = self.open_store()
        if store is None:
            return
        try:
            run = query.get_run(store, run_id)
            spans = query.spans_of(store, run.id)
            if run.mode == "workflow":
                children = {
                    child.id: query.spans_of(store, child.id, kind=SpanKind.KV_REUSE)
                    for child in query.list_runs(store, limit=10_000, parent_run_id=run.id)
                }
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        if run.mode == "workflow":
            self.open_workflow(run, spans, children)
            return
        self.app.push_screen(RunDetailScreen(store, run, spans, self.export_dir))

    def open_workflow(
        self, run: RunRecord, spans: list[SpanRecord], children: dict[str, list[SpanRecord]]
    ) -> None:
        """A stored workflow run on the workflow screen's widgets; a task opens its agent's run."""
        from counterpoint.tui.workflow_model import workflow_events_from_spans
        from counterpoint.tui.workflow_screen import WorkflowScreen

        events = workflow_events_from_spans(run, spans, children)
        self.app.push_screen(
            WorkflowScreen(
                None,
                clock=self.clock,
                events=events,
                on_open_run=self.open_run,
                screen_id="workflow-stored",
            )
        )

    def on_unmount(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
