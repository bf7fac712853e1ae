"""The counterpoint terminal UI: run, traces and evals screens, fed by events only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from counterpoint.runtime.tracing import query
from counterpoint.runtime.tracing.store import TraceStore
from counterpoint.tui.evals_screen import EvalsScreen
from counterpoint.tui.run_screen import RunScreen
from counterpoint.tui.traces_screen import RunDetailScreen, TracesScreen

if TYPE_CHECKING:
    from counterpoint.agents.agent import Agent

__all__ = ["CounterpointApp", "check_run"]


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
        clock: the monotonic clock the live elapsed times are read from (tests freeze it).
        export_dir: where run exports are written.
    """

    TITLE = "counterpoint"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "show_run", "Run"),
        Binding("f3", "show_traces", "Traces"),
        Binding("f4", "show_evals", "Evals"),
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
    ) -> None:
        super().__init__()
        self.agent = agent
        self.db = db
        self.start_run_id = run_id
        self.clock = clock
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        self.run_screen = RunScreen(agent, clock=clock)
        self.traces_screen = TracesScreen(db, export_dir=self.export_dir)
        self.evals_screen = EvalsScreen(
            db, on_open_run=self._open_run_from_evals, export_dir=self.export_dir
        )

    def on_mount(self) -> None:
        self.install_screen(self.run_screen, "run")
        self.install_screen(self.traces_screen, "traces")
        self.install_screen(self.evals_screen, "evals")
        if self.start_run_id is not None:
            self.push_screen("traces")
            self.traces_screen.open_run(self.start_run_id)
        else:
            self.push_screen("run")

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run screen", "Type a prompt and watch the run", self.action_show_run)
        yield SystemCommand("Traces", "Browse the recorded runs", self.action_show_traces)
        yield SystemCommand("Evals", "Run a BFCL eval and read its report", self.action_show_evals)
        yield SystemCommand("Cancel run", "Cancel the current run", self.action_cancel_run)
        yield SystemCommand("Expand calls", "Expand or collapse every call", self._toggle_calls)
        if isinstance(screen, RunDetailScreen):
            yield SystemCommand("Export run", "Write this run as JSON", screen.action_export)
        yield SystemCommand("Help", "Show the keys", self.action_toggle_help)

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
        if self.evals_screen.running:
            self.evals_screen.action_cancel_eval()
            await self.evals_screen.wait_eval()
        self.exit()
