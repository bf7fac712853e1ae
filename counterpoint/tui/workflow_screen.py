"""The workflow screen: the graph in layers with each task's live state, a lane per task, KV-reuse
badges; a task opens its agent's transcript (the run screen's widgets, read-only).

Fed by events only (:class:`~counterpoint.tui.workflow_model.WorkflowModel`): live from a
:class:`~counterpoint.agents.workflow.WorkflowHandle` (whose bus carries the agents' events too),
or replayed from the traces database (:func:`workflow_events_from_spans`). Redraws are coalesced:
events change state, a timer redraws what changed at most ``REPAINT_HZ`` times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from counterpoint.agents.workflow.render import MARKS, STYLES, layers_view
from counterpoint.core.events import BaseEvent, RunStarted
from counterpoint.tui.run_screen import RunView, StatusBar
from counterpoint.tui.timeline import Timeline
from counterpoint.tui.workflow_model import TaskView, WorkflowModel

if TYPE_CHECKING:
    from counterpoint.agents.workflow import Workflow, WorkflowHandle

__all__ = ["TaskRunScreen", "WorkflowScreen", "WorkflowView"]

REPAINT_HZ = 10
COLUMNS = ("layer", "task", "agent", "status", "try", "time", "kv", "result")
_PILLS = {
    "idle": "black on white",
    "running": "black on yellow",
    "ok": "black on green",
    "failed": "white on red",
    "error": "white on red",
    "cancelled": "white on bright_black",
}


def _clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _cells(task: TaskView, layer: int, now: float | None) -> tuple[Any, ...]:
    elapsed = task.elapsed(now)
    status = Text()
    status.append(MARKS.get(task.status, "·") + " ", STYLES.get(task.status, ""))
    status.append(task.status, STYLES.get(task.status, ""))
    outcome = task.error if task.status in ("failed", "skipped", "cancelled") else task.result
    if task.status == "ready" and task.error:  # a retry waits
        outcome = f"retrying: {task.error}"
    badge = task.kv_badge()
    return (
        str(layer),
        task.id,
        task.agent or "–",
        status,
        str(task.attempt) if task.attempt else "–",
        f"{elapsed:.2f}s" if elapsed is not None else "–",
        Text(badge, "cyan" if task.kv_reused_tokens else "bright_black"),
        Text(_clip(outcome, 48), "red" if task.status == "failed" else ""),
    )


class WorkflowView(Vertical):
    """The graph, the tasks table, the task lanes and a status bar of one workflow run."""

    DEFAULT_CSS = """
    WorkflowView { height: 1fr; }
    WorkflowView #wf-header { height: auto; padding: 0 1; }
    WorkflowView #wf-graph { height: auto; max-height: 8; padding: 0 1; margin: 0 0 1 0; }
    WorkflowView #wf-tasks { height: 1fr; }
    """

    def __init__(self, *, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.model = WorkflowModel()
        self.header = Static("", id="wf-header")
        self.graph = Static("", id="wf-graph")
        self.table: DataTable[Any] = DataTable(id="wf-tasks", cursor_type="row", zebra_stripes=True)
        self.timeline = Timeline(id="wf-timeline", max_lanes=12)
        self.status_bar = StatusBar(id="wf-status")
        self._clock0: float | None = None
        self._dirty = False
        self._rows: list[str] = []
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._listeners: dict[str, list[Callable[[BaseEvent], None]]] = {}
        self._ticks = 0

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.graph
        yield self.table
        yield self.timeline
        yield self.status_bar

    def on_mount(self) -> None:
        self.set_interval(1 / REPAINT_HZ, self._repaint)
        self.flush()

    # -- events ----------------------------------------------------------------------------------

    def feed(self, event: BaseEvent) -> None:
        """Fold one event in (the workflow's or an agent's); drawing waits for the timer."""
        model = self.model
        if isinstance(event, RunStarted) and event.mode == "workflow":
            self.timeline.model.reset()
            self._clock0 = self.clock() - event.t
        mine = not model.run_id or event.run_id == model.run_id
        changed = model.apply(event)
        if mine and not isinstance(event, RunStarted):
            self.timeline.model.apply(event)
            changed = True
        if changed:
            self._dirty = True
        for listener in self._listeners.get(event.run_id, ()):
            listener(event)

    def listen(self, run_id: str, listener: Callable[[BaseEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with each new event of agent run ``run_id``; returns how to stop."""
        self._listeners.setdefault(run_id, []).append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError, KeyError):
                self._listeners[run_id].remove(listener)

        return stop

    def now(self) -> float | None:
        """Seconds since the workflow run started (its end once it is done)."""
        model = self.model
        if model.done_t is not None:
            return model.done_t
        if self._clock0 is None:
            return None
        return max(model.last_t, self.clock() - self._clock0)

    # -- drawing ---------------------------------------------------------------------------------

    def _repaint(self) -> None:
        self._ticks += 1
        running = self.model.status == "running"
        # while a run goes on its times move: a redraw a few times a second even without events
        if self._dirty or (running and self._ticks % 3 == 0):
            self.flush()

    def flush(self) -> None:
        """Redraw from the model now (the timer does this when something changed)."""
        self._dirty = False
        model = self.model
        now = self.now()
        self._draw_header()
        self.graph.update(self._graph_text())
        self._draw_table(now)
        self.timeline.refresh_model(now if model.done_t is None else None)
        self._draw_status(now)

    def _draw_header(self) -> None:
        model = self.model
        text = Text()
        if not model.run_id:
            text.append("No workflow run yet.", "bright_black")
            self.header.update(text)
            return
        text.append(f" {model.status} ", _PILLS.get(model.status, "black on cyan"))
        text.append(f" {model.name} ", "bold")
        text.append(f"{model.run_id[:12]}", "bright_black")
        if model.version:
            text.append(f"  graph v{model.version}", "bright_black")
        if model.resumed:
            text.append("  resumed", "yellow")
        if model.goal:
            text.append("\n› ", "bold")
            text.append(_clip(model.goal, 200))
        if model.error and model.status != "ok":
            text.append(f"\n{model.error}", "red")
        self.header.update(text)

    def _graph_text(self) -> Text:
        model = self.model
        if not model.task_dicts:
            return Text("")
        text = layers_view(model.task_dicts, model.statuses())
        badges = [(t.id, t.kv_badge()) for t in model.tasks.values() if t.kv_badge()]
        if badges:
            text.append("\n")
            text.append("kv reuse  ", "dim")
            text.append("  ".join(f"{tid} {badge}" for tid, badge in badges), "cyan")
        return text

    def _draw_table(self, now: float | None) -> None:
        model = self.model
        order = model.order()
        layer = model.layer_of()
        if not self.table.columns:
            for column in COLUMNS:
                self.table.add_column(column, key=column)
        if order != self._rows:
            self.table.clear()
            self._shown.clear()
            for tid in order:
                cells = _cells(model.tasks[tid], layer.get(tid, 0), now)
                self.table.add_row(*cells, key=tid)
                self._shown[tid] = cells
            self._rows = order
            return
        for tid in order:
            cells = _cells(model.tasks[tid], layer.get(tid, 0), now)
            old = self._shown.get(tid)
            if old == cells:
                continue
            for column, value, before in zip(COLUMNS, cells, old or (), strict=False):
                if value != before:
                    self.table.update_cell(tid, column, value)
            self._shown[tid] = cells

    def _draw_status(self, now: float | None) -> None:
        model = self.model
        total = len(model.tasks)
        bar = Text()
        bar.append(f" {model.status} ", _PILLS.get(model.status, "black on cyan"))
        elapsed = f"{now:.2f}s" if now is not None else "–"
        bar.append(
            f"  tasks {model.finished()}/{total} done, {model.running()} running"
            f"  kv reused {model.reused_tokens()} tokens"
            f"  elapsed {elapsed}"
        )
        self.status_bar.update(bar)

    def selected_task(self) -> str | None:
        if not self._rows:
            return None
        row = self.table.cursor_row
        return self._rows[row] if 0 <= row < len(self._rows) else None


class TaskRunScreen(Screen[None]):
    """One task's agent run, read-only: the run screen's transcript, timeline and status bar,
    replayed from the events so far and following the run live while it goes on."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+e", "toggle_calls", "Expand calls"),
    ]
    DEFAULT_CSS = """
    TaskRunScreen #task-header { height: auto; padding: 0 1; background: $panel; }
    """

    def __init__(
        self,
        task: TaskView,
        events: Sequence[BaseEvent],
        *,
        clock: Callable[[], float],
        follow: Callable[[Callable[[BaseEvent], None]], Callable[[], None]] | None = None,
    ) -> None:
        super().__init__()
        self.task_view = task
        self.events = list(events)
        self.follow = follow
        self.view = RunView(clock=clock, id="task-run")
        self._unfollow: Callable[[], None] | None = None

    def compose(self) -> ComposeResult:
        task = self.task_view
        head = Text()
        head.append(f"task {task.id}", "bold")
        head.append(f"  agent {task.agent or '–'}  attempt {task.attempt or '–'}", "bright_black")
        if task.objective:
            head.append(f"\n{task.objective}")
        yield Static(head, id="task-header")
        yield self.view
        yield Footer()

    async def on_mount(self) -> None:
        for event in self.events:
            self.view.feed(event)
        if self.follow is not None:
            self._unfollow = self.follow(self.view.feed)
        await self.view.flush()

    def on_unmount(self) -> None:
        if self._unfollow is not None:
            self._unfollow()

    def action_toggle_calls(self) -> None:
        blocks = list(self.view.calls.values())
        expand = any(block.collapsed for block in blocks)
        for block in blocks:
            block.collapsed = not expand


class WorkflowScreen(Screen[None]):
    """Run a workflow (``counterpoint tui --workflow FILE``) and watch it, or replay a stored one.

    Args:
        workflow: the workflow ``ctrl+r`` runs (None: a stored run, or nothing to run).
        clock: the monotonic clock of live times.
        db: the traces database (its workflow store keeps the run resumable).
        events: a stored run's events to show (:func:`workflow_events_from_spans`).
        on_open_run: how a stored task's agent run is opened (the traces screen's detail).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "start", "Run workflow"),
        Binding("escape", "cancel", "Cancel / back"),
        Binding("enter", "open_task", "Open task", show=True),
    ]

    def __init__(
        self,
        workflow: Workflow | None = None,
        *,
        clock: Callable[[], float],
        db: str | None = None,
        events: Sequence[BaseEvent] | None = None,
        on_open_run: Callable[[str], None] | None = None,
        screen_id: str = "workflow",
    ) -> None:
        super().__init__(id=screen_id)
        self.workflow = workflow
        self.clock = clock
        self.db = db
        self.stored = list(events) if events is not None else None
        self.on_open_run = on_open_run
        self.view = WorkflowView(clock=clock, id="workflow-view")
        self.handle: WorkflowHandle | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tracer: Any = None

    def compose(self) -> ComposeResult:
        yield self.view
        yield Footer()

    def on_mount(self) -> None:
        if self.stored is not None:
            for event in self.stored:
                self.view.feed(event)
            self.view.flush()
        elif self.workflow is None:
            self.view.header.update(
                Text(
                    "No workflow: start `counterpoint tui --workflow FILE` (a .yaml or .json "
                    "workflow), or open a stored workflow run from the traces screen (f3).",
                    "bright_black",
                )
            )
        else:
            self.view.model.set_graph(self.workflow.to_dicts())
            self.view.flush()
            self.view.header.update(
                Text(f"Workflow {self.workflow.name!r}: ctrl+r runs it.", "bright_black")
            )

    @property
    def running(self) -> bool:
        return self.handle is not None and not self.handle.done

    # -- live runs -------------------------------------------------------------------------------

    def action_start(self) -> None:
        if self.stored is not None:
            self.notify("A stored run: nothing to start.", severity="information")
            return
        if self.workflow is None:
            self.notify("No workflow: start `counterpoint tui --workflow FILE`.", severity="error")
            return
        if self.running:
            self.notify("The workflow is running.", severity="information")
            return
        self.run_worker(self.start_run(), group="workflow", exclusive=True)

    async def start_run(self) -> None:
        """Load the agents' models (off the event loop), start the run, feed its events."""
        workflow = self.workflow
        if workflow is None:
            return
        try:
            await asyncio.to_thread(_load_models, workflow)
        except Exception as exc:  # a model that fails to load: a message, not a traceback
            self.notify(f"could not load a model: {exc}", severity="error")
            return
        options: dict[str, Any] = {}
        if self.db is not None:
            from counterpoint.runtime.tracing import SQLiteTracer

            self._tracer = SQLiteTracer(self.db)
            options = {"db": self.db, "tracer": self._tracer}
        try:
            self.handle = workflow.start(**options)
        except Exception as exc:
            self.notify(f"could not start the workflow: {exc}", severity="error")
            return
        self._pump = asyncio.get_running_loop().create_task(self._read(self.handle))
        await self._pump

    async def _read(self, handle: WorkflowHandle) -> None:
        try:
            async for event in handle:
                self.view.feed(event)
                await asyncio.sleep(0)
        finally:
            with contextlib.suppress(Exception):
                await handle.result()
            if self._tracer is not None:
                with contextlib.suppress(Exception):
                    await self._tracer.aflush()
            self.view.flush()

    async def wait_run(self) -> None:
        """Wait for the current run to end and its last events to be drawn."""
        if self._pump is not None:
            with contextlib.suppress(BaseException):
                await self._pump

    def action_cancel(self) -> None:
        if self.running:
            self.run_worker(self.cancel_run(), group="cancel", exclusive=True)
        elif self.stored is not None:
            self.app.pop_screen()
        else:
            self.notify("No workflow is running.", severity="information")

    async def cancel_run(self) -> None:
        """Cancel the run and every task it runs; finished tasks stay committed."""
        if self.handle is not None and not self.handle.done:
            await self.handle.cancel()
            await self.wait_run()
            self.notify("Workflow cancelled: finished tasks are kept (resume it from the CLI).")

    # -- tasks -----------------------------------------------------------------------------------

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        if message.row_key.value is not None:
            self.open_task(str(message.row_key.value))

    def action_open_task(self) -> None:
        tid = self.view.selected_task()
        if tid is not None:
            self.open_task(tid)

    def open_task(self, tid: str) -> None:
        """Open task ``tid``'s agent run (live: its transcript; stored: the stored run)."""
        task = self.view.model.tasks.get(tid)
        if task is None:
            self.notify(f"No task {tid!r}.", severity="error")
            return
        run_id = task.agent_run_id
        if run_id is None:
            self.notify(f"Task {tid} has not started yet.", severity="information")
            return
        events = self.view.model.agent_events.get(run_id, [])
        if self.stored is not None and self.on_open_run is not None:
            self.on_open_run(run_id)
            return
        view = self.view

        def follow(listener: Callable[[BaseEvent], None]) -> Callable[[], None]:
            return view.listen(run_id, listener)

        self.app.push_screen(TaskRunScreen(task, events, clock=self.clock, follow=follow))

    def on_unmount(self) -> None:
        if self._tracer is not None:
            with contextlib.suppress(Exception):
                self._tracer.close()


def _load_models(workflow: Workflow) -> None:
    for task in workflow:
        workflow.agent_of(task).model  # noqa: B018 - loads it
