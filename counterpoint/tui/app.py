"""The counterpoint terminal UI: run, workflow, traces and evals screens, fed by events only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.console import Console
from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from counterpoint.errors import ConfigError
from counterpoint.runtime.tracing import query
from counterpoint.runtime.tracing.store import TraceStore
from counterpoint.tui.evals_screen import EvalsScreen
from counterpoint.tui.run_screen import RunScreen
from counterpoint.tui.traces_screen import RunDetailScreen, TracesScreen
from counterpoint.tui.workflow_screen import WorkflowScreen

if TYPE_CHECKING:
    from counterpoint.agents.agent import Agent
    from counterpoint.agents.workflow import Workflow

__all__ = ["MIN_SIZE", "CounterpointApp", "check_run", "check_theme", "default_theme"]

MIN_SIZE = (60, 16)
"""The smallest terminal (columns, rows) the screens are drawn in; below it a notice asks for
more room (nothing is lost: the screens keep running behind it)."""


def default_theme(console: Console | None = None) -> str:
    """``ansi-dark`` where the terminal has only the 16 ANSI colours (or ``NO_COLOR``), else
    ``textual-dark``; ``$COUNTERPOINT_TUI_THEME`` overrides."""
    import os

    chosen = os.environ.get("COUNTERPOINT_TUI_THEME")
    if chosen:
        return chosen
    if os.environ.get("NO_COLOR"):
        return "ansi-dark"
    console = console or Console()
    few = console.is_terminal and console.color_system in ("standard", "windows")
    return "ansi-dark" if few else "textual-dark"


def check_theme(name: str) -> str:
    """``name`` if Textual has that theme; a ConfigError listing them otherwise."""
    names = sorted(App().available_themes)
    if name not in names:
        raise ConfigError(f"unknown theme {name!r}: use one of {', '.join(names)}")
    return name


class TooSmallScreen(ModalScreen[None]):
    """Shown over everything while the terminal is smaller than :data:`MIN_SIZE`."""

    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; }
    TooSmallScreen Static { width: auto; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__(id="too-small")
        self.message = Static("", id="too-small-message")

    def compose(self) -> ComposeResult:
        with Middle(), Center():
            yield self.message

    def show(self, size: tuple[int, int]) -> None:
        self.message.update(
            f"The terminal is {size[0]}×{size[1]}; counterpoint needs at least "
            f"{MIN_SIZE[0]}×{MIN_SIZE[1]}. Enlarge it (runs go on meanwhile)."
        )


def check_run(db: str | None, run_id: str) -> str:
    """The full id of ``run_id`` (or a unique prefix) in ``db``; raises a CounterpointError
    (``UnknownRunError``, ``AmbiguousRunError``, ``TraceStoreError``) otherwise."""
    with TraceStore(db, open_timeout_s=2.0) as store:
        return query.get_run(store, run_id).id


class CounterpointApp(App[None]):
    """``counterpoint tui``.

    Args:
        agent: the agent of the run screen (None: the run screen says how to give one).
        db: the traces database (None: ``$COUNTERPOINT_TRACES_DB`` or the default file).
        run_id: open this stored run at start.
        workflow: the workflow of the workflow screen (opened at start; ctrl+r runs it).
        theme: a Textual theme (default: :func:`default_theme`, ``ansi-dark`` on 16 colours).
        clock: the monotonic clock the live elapsed times are read from (tests freeze it).
        export_dir: where run exports are written.
    """

    TITLE = "counterpoint"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "show_run", "Run"),
        Binding("f3", "show_traces", "Traces"),
        Binding("f4", "show_evals", "Evals"),
        Binding("f5", "show_workflow", "Workflow"),
        Binding("f1", "toggle_help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        agent: Agent | None = None,
        *,
        db: str | None = None,
        run_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        export_dir: Path | None = None,
        workflow: Workflow | None = None,
        theme: str | None = None,
    ) -> None:
        super().__init__()
        self._theme_name = theme or default_theme()
        self._too_small: TooSmallScreen | None = None
        self.agent = agent
        self.db = db
        self.start_run_id = run_id
        self.clock = clock
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        self.run_screen = RunScreen(agent, clock=clock)
        self.workflow = workflow
        self.workflow_screen = WorkflowScreen(workflow, clock=clock, db=db)
        self.traces_screen = TracesScreen(db, export_dir=self.export_dir, clock=clock)
        self.evals_screen = EvalsScreen(
            db, on_open_run=self._open_run_from_evals, export_dir=self.export_dir
        )

    def on_mount(self) -> None:
        if self._theme_name in self.available_themes:
            self.theme = self._theme_name
        self.install_screen(self.run_screen, "run")
        self.install_screen(self.traces_screen, "traces")
        self.install_screen(self.evals_screen, "evals")
        self.install_screen(self.workflow_screen, "workflow")
        if self.start_run_id is not None:
            self.push_screen("traces")
            self.traces_screen.open_run(self.start_run_id)
        elif self.workflow is not None:
            self.push_screen("workflow")
        else:
            self.push_screen("run")

    def on_resize(self, event: events.Resize) -> None:
        self.check_size((event.size.width, event.size.height))

    def check_size(self, size: tuple[int, int]) -> None:
        """Show the too-small notice below :data:`MIN_SIZE`, take it away above."""
        small = size[0] < MIN_SIZE[0] or size[1] < MIN_SIZE[1]
        if small and self._too_small is None:
            self._too_small = TooSmallScreen()
            self.push_screen(self._too_small)
            self._too_small.show(size)
        elif small and self._too_small is not None:
            self._too_small.show(size)
        elif not small and self._too_small is not None:
            if self.screen is self._too_small:
                self.pop_screen()
            self._too_small = None

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run screen", "Type a prompt and watch the run", self.action_show_run)
        yield SystemCommand("Traces", "Browse the recorded runs", self.action_show_traces)
        yield SystemCommand("Evals", "Run a BFCL eval and read its report", self.action_show_evals)
        yield SystemCommand("Workflow", "Watch a workflow's tasks run", self.action_show_workflow)
        yield SystemCommand(
            "Run workflow", "Run the workflow given with --workflow", self._start_workflow
        )
        yield SystemCommand("Cancel run", "Cancel the current run", self.action_cancel_run)
        yield SystemCommand("Expand calls", "Expand or collapse every call", self._toggle_calls)
        if isinstance(screen, RunDetailScreen):
            yield SystemCommand("Export run", "Write this run as JSON", screen.action_export)
        yield SystemCommand("Help", "Show the keys", self.action_toggle_help)

    def _start_workflow(self) -> None:
        self._show("workflow")
        self.workflow_screen.action_start()

    def _toggle_calls(self) -> None:
        self.run_screen.action_toggle_calls()

    def action_cancel_run(self) -> None:
        self.run_screen.action_cancel_run()

    def action_show_run(self) -> None:
        self._show("run")

    def action_show_traces(self) -> None:
        self._show("traces")
        self.traces_screen.action_reload()

    def action_show_evals(self) -> None:
        self._show("evals")

    def action_show_workflow(self) -> None:
        self._show("workflow")

    def _open_run_from_evals(self, run_id: str) -> None:
        self._show("traces")
        self.traces_screen.action_reload()
        self.traces_screen.open_run(run_id)

    def _show(self, name: str) -> None:
        target = self.get_screen(name)
        if self.screen is target:
            return
        while len(self.screen_stack) > 1 and self.screen is not target:
            if target in self.screen_stack:
                self.pop_screen()
            else:
                break
        if self.screen is not target:
            self.push_screen(target)

    def action_toggle_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    async def action_quit(self) -> None:
        """Quit; a run still going is cancelled first (its trace stays complete so far)."""
        await self.run_screen.cancel_run()
        await self.workflow_screen.cancel_run()
        if self.evals_screen.running:
            self.evals_screen.action_cancel_eval()
            await self.evals_screen.wait_eval()
        self.exit()
