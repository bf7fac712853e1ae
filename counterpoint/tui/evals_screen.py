"""The evals screen: run a small BFCL eval from the TUI, watch it case by case, read its report.

The form takes the categories, the modes, the case limit, the model and the latency scale;
Start (or Enter in the form, or ``ctrl+r``) checks them and runs
:func:`~counterpoint.evals.runner.run_bfcl` as a worker on the app's event loop, recording into
the traces database. Each finished case appends a row (✓ or ✗, latency); Escape cancels the
eval (the runner keeps the finished cases and marks the run ``interrupted``). When it ends, the
report of :func:`~counterpoint.evals.report.build_report` fills the results table: cases,
accuracy and latency p50 / p95 per category x mode, and the speedup of each mode over sync per
case. Enter on a case row shows why it failed and opens its transcript (the case's agent run).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, ProgressBar, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.evals._models import CaseModels, case_models
from counterpoint.evals.report import EvalReport, build_report
from counterpoint.evals.runner import (
    CaseResult,
    EvalConfig,
    EvalOutcome,
    EvalPlan,
    expand_categories,
    expand_modes,
    run_bfcl,
)
from counterpoint.runtime.tracing import SQLiteTracer, query
from counterpoint.runtime.tracing.store import TraceStore
from counterpoint.tui.traces_screen import RunDetailScreen

__all__ = ["EvalForm", "EvalsScreen", "parse_form"]

EvalState = Literal["idle", "running", "done", "interrupted", "error"]


@dataclass(frozen=True)
class EvalForm:
    """The form's fields as typed (every one a string)."""

    categories: str = "simple_python"
    modes: str = "sync,async"
    limit: str = "5"
    model: str = "scripted-oracle"
    latency_scale: str = "1.0"


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in (part.strip() for part in text.split(",")) if name)


def parse_form(form: EvalForm) -> EvalConfig:
    """The eval config the form asks for; raises :class:`ConfigError` with a one-line message for
    a bad field (an unknown or held-back category, an unknown mode, a limit that is not a positive
    integer, a latency scale below 0, no model)."""
    categories = _names(form.categories)
    if not categories:
        raise ConfigError("give at least one BFCL category, e.g. simple_python")
    expanded = expand_categories(categories)
    modes = _names(form.modes)
    if not modes:
        raise ConfigError("give at least one mode: sync, parallel, async (or all)")
    expand_modes(modes)  # checked here for the message; EvalConfig expands them again
    try:
        limit = int(form.limit.strip())
    except ValueError:
        raise ConfigError(f"the limit must be a positive integer, got {form.limit!r}") from None
    if limit < 1:
        raise ConfigError(f"the limit must be a positive integer, got {limit}")
    try:
        scale = float(form.latency_scale.strip())
    except ValueError:
        raise ConfigError(
            f"the latency scale must be a number (0 or more), got {form.latency_scale!r}"
        ) from None
    model = form.model.strip()
    if not model:
        raise ConfigError(
            "give a model: scripted-oracle, scripted-perturbed, embedded, openai:NAME"
        )
    config = EvalConfig(
        categories=expanded,
        modes=modes,  # type: ignore[arg-type]  # checked by expand_modes above
        model=model,
        limit=limit,
        latency_scale=scale,
    )
    if config.held_back:
        raise ConfigError(
            f"{', '.join(config.held_back)}: held back for acceptance only, not run from the TUI "
            "(use `counterpoint eval bfcl` for the acceptance run)"
        )
    return config


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _case_key(result: CaseResult) -> str:
    return f"{result.category}/{result.case_id}/{result.mode}"


class EvalsScreen(Screen[None]):
    """Run a BFCL eval and read its report.

    Args:
        db: the traces database the eval records into (None: ``$COUNTERPOINT_TRACES_DB`` or the
            default file).
        on_open_run: called with a case's agent run id to open its transcript (the app shows it in
            the traces screens); None: this screen pushes a :class:`RunDetailScreen` itself.
        export_dir: where that RunDetailScreen writes its exports (default: the working folder).
        models: replaces the model the form names (for tests: a slow or failing model source).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "start", "Start eval"),
        Binding("escape", "cancel_eval", "Cancel eval"),
        Binding("ctrl+o", "open_case", "Open case"),
    ]
    DEFAULT_CSS = """
    EvalsScreen #form { height: auto; }
    EvalsScreen #form Input { width: 1fr; }
    EvalsScreen #form #categories { width: 2fr; }
    EvalsScreen #form #model { width: 2fr; }
    EvalsScreen #form #latency-scale { width: 18; }
    EvalsScreen #form Button { margin: 1 1 0 1; }
    EvalsScreen #eval-status { height: auto; padding: 0 1; }
    EvalsScreen #progress { padding: 0 1; }
    EvalsScreen #cases { height: 1fr; }
    EvalsScreen #results { height: auto; max-height: 12; }
    EvalsScreen #reason { height: auto; max-height: 6; padding: 0 1; }
    """

    def __init__(
        self,
        db: str | None,
        *,
        on_open_run: Callable[[str], None] | None = None,
        export_dir: Path | None = None,
        models: CaseModels | None = None,
    ) -> None:
        super().__init__(id="evals")
        self.db = db
        self.on_open_run = on_open_run
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        self.models_override = models
        self.state: EvalState = "idle"
        self.plan: EvalPlan | None = None
        self.outcome: EvalOutcome | None = None
        self.report: EvalReport | None = None
        self.results: dict[str, CaseResult] = {}
        self.worker: Worker[None] | None = None
        self._db_path: str | None = None  # the file the last eval recorded into
        self._store: TraceStore | None = None

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        defaults = EvalForm()
        fields = [
            ("categories", defaults.categories, "categories (comma-separated)"),
            ("modes", defaults.modes, "modes"),
            ("limit", defaults.limit, "limit"),
            ("model", defaults.model, "model"),
            ("latency-scale", defaults.latency_scale, "latency scale"),
        ]
        with Vertical():
            with Horizontal(id="form"):
                for name, value, title in fields:
                    box = Input(value=value, placeholder=title, id=name)
                    box.border_title = title
                    yield box
                yield Button("Start", id="start", variant="primary")
            yield Static("Fill the form and press Start (ctrl+r).", id="eval-status")
            yield ProgressBar(total=None, show_eta=False, id="progress")
            cases: DataTable[str | Text] = DataTable(
                id="cases", cursor_type="row", zebra_stripes=True
            )
            yield cases
            results: DataTable[str] = DataTable(id="results", cursor_type="row")
            yield results
            yield Static("", id="reason")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#cases", DataTable).add_columns(
            "case", "category", "mode", "ok", "latency", "reason"
        )
        self.query_one("#results", DataTable).add_columns(
            "category", "mode", "n", "correct", "accuracy", "p50", "p95", "speedup vs sync"
        )

    # -- the form ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None and not self.worker.is_finished

    def form(self) -> EvalForm:
        """The form's fields as typed now."""
        return EvalForm(
            categories=self.query_one("#categories", Input).value,
            modes=self.query_one("#modes", Input).value,
            limit=self.query_one("#limit", Input).value,
            model=self.query_one("#model", Input).value,
            latency_scale=self.query_one("#latency-scale", Input).value,
        )

    def on_button_pressed(self, message: Button.Pressed) -> None:
        if message.button.id == "start":
            self.action_start()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        message.stop()
        self.action_start()

    def action_start(self) -> None:
        """Check the form and start the eval (one at a time)."""
        if self.running:
            self.notify("An eval is already running (Escape cancels it).", severity="warning")
            return
        try:
            config = parse_form(self.form())
        except CounterpointError as exc:
            self.notify(str(exc), title="Cannot start the eval", severity="error")
            return
        self._reset()
        self.state = "running"
        self._status(f"Loading {config.model} and the cases…")
        self.worker = self.run_worker(
            self._run_eval(config), name="eval", group="eval", exclusive=True, exit_on_error=False
        )

    def _reset(self) -> None:
        self.plan = self.outcome = self.report = None
        self.results = {}
        self.query_one("#cases", DataTable).clear()
        self.query_one("#results", DataTable).clear()
        self.query_one("#reason", Static).update("")
        self.query_one(ProgressBar).update(total=None, progress=0)

    def _status(self, text: str | Text) -> None:
        self.query_one("#eval-status", Static).update(text)

    # -- running -------------------------------------------------------------------------------

    async def _run_eval(self, config: EvalConfig) -> None:
        try:
            tracer = SQLiteTracer(self.db)
        except Exception as exc:  # a damaged, foreign or locked file: say so, no traceback
            self._fail(f"cannot open the traces database: {exc}")
            return
        self._db_path = tracer.path
        run_id: str | None = None

        def on_plan(plan: EvalPlan) -> None:
            nonlocal run_id
            run_id = plan.run_id
            self.plan = plan
            self.query_one(ProgressBar).update(total=plan.total, progress=plan.done)
            self._progress_status()

        try:
            try:
                models = self.models_override or await asyncio.to_thread(
                    case_models, config.model, latency_scale=config.latency_scale
                )
                self.outcome = await run_bfcl(
                    config, tracer, on_plan=on_plan, on_result=self.add_result, models=models
                )
            except asyncio.CancelledError:
                self.state = "interrupted"
                if self.is_mounted:  # not when the app is quitting: nothing left to draw
                    self._finish(tracer, run_id)
                raise
            except Exception as exc:  # a bad config, missing data, an unusable model, a dead server
                self._fail(str(exc) if isinstance(exc, CounterpointError) else repr(exc))
                self._finish(tracer, run_id)
                return
            self.state = "done"
            self._finish(tracer, run_id)
        finally:
            await asyncio.to_thread(tracer.close)

    def _fail(self, message: str) -> None:
        self.state = "error"
        self.notify(message, title="The eval failed", severity="error")
        self._status(Text(f"error: {message}", "red"))

    def add_result(self, result: CaseResult) -> None:
        """One finished case: a row in the cases table, one step of the progress bar."""
        key = _case_key(result)
        self.results[key] = result
        mark = Text("✓", "green") if result.correct else Text("✗", "bold red")
        reason = (result.failure_reason or "").replace("\n", " ")
        self.query_one("#cases", DataTable).add_row(
            result.case_id,
            result.category,
            result.mode,
            mark,
            _seconds(result.latency_s),
            reason[:60],
            key=key,
        )
        self.query_one(ProgressBar).advance(1)
        self._progress_status()

    def _progress_status(self) -> None:
        plan = self.plan
        if plan is None:
            return
        finished = len(self.results) + plan.done
        correct = sum(1 for r in self.results.values() if r.correct)
        accuracy = f"  accuracy {correct / len(self.results):.0%}" if self.results else ""
        self._status(
            f"Eval {plan.run_id[:12]} ({plan.model}): {finished}/{plan.total} cases{accuracy}"
            "  (Escape cancels)"
        )

    def _finish(self, tracer: SQLiteTracer, run_id: str | None) -> None:
        """Fill the results table from the report of the run (what it recorded, if cancelled)."""
        if run_id is None:  # nothing was recorded
            if self.state == "interrupted":
                self._status("Cancelled before any case ran.")
            return
        if self.results:
            try:
                tracer.flush()
                self.report = build_report(tracer.store, [run_id])
            except Exception as exc:
                self.notify(f"cannot build the report: {exc}", severity="error")
            else:
                self.show_report(self.report)
        done = len(self.results)
        total = self.plan.total if self.plan is not None else done
        correct = sum(1 for r in self.results.values() if r.correct)
        summary = f"{correct}/{done} correct" if done else "no case finished"
        if self.state == "done":
            self._status(Text(f"Eval {run_id[:12]} done: {summary}.", "green"))
        elif self.state == "interrupted":
            self._status(
                Text(
                    f"Eval {run_id[:12]} cancelled after {done}/{total} cases: {summary}.", "yellow"
                )
            )
            self.notify(f"Eval cancelled: {done}/{total} cases kept.", severity="warning")

    def show_report(self, report: EvalReport) -> None:
        """The report's rows: one per category x mode (plus ``all`` over several categories)."""
        speedups = {(s.category, s.mode): s for s in report.speedups}
        table = self.query_one("#results", DataTable)
        table.clear()
        for g in report.groups:
            speedup = speedups.get((g.category, g.mode))
            table.add_row(
                g.category,
                g.mode,
                str(g.cases),
                f"{g.correct}/{g.cases}",
                f"{g.accuracy:.1%}",
                _seconds(g.latency_p50_s),
                _seconds(g.latency_p95_s),
                f"{speedup.median:.2f}x ({speedup.pairs} pairs)" if speedup is not None else "–",
                key=f"{g.model}/{g.category}/{g.mode}",
            )

    def action_cancel_eval(self) -> None:
        """Cancel the eval: the finished cases stay recorded, the run is marked interrupted."""
        if self.worker is None or self.worker.is_finished:
            self.notify("No eval is running.", severity="information")
            return
        self.worker.cancel()

    async def wait_eval(self) -> None:
        """Wait until the current eval (if any) has ended and its report is drawn."""
        if self.worker is not None:
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await self.worker.wait()

    # -- a case's transcript -------------------------------------------------------------------

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        if message.data_table.id != "cases" or message.row_key.value is None:
            return
        result = self.results.get(str(message.row_key.value))
        if result is not None:
            self.open_case(result)

    def action_open_case(self) -> None:
        table = self.query_one("#cases", DataTable)
        if table.row_count == 0:
            self.notify("No case yet.", severity="information")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        result = self.results.get(str(key))
        if result is not None:
            self.open_case(result)

    def open_case(self, result: CaseResult) -> None:
        """Show why ``result`` failed (if it did) and open its transcript."""
        title = f"{result.category}/{result.case_id} ({result.mode})"
        panel = Text()
        if result.correct:
            panel.append(f"{title}: correct", "green")
        else:
            reason = result.failure_reason or "no reason recorded"
            panel.append(f"{title} failed: ", "bold red")
            panel.append(reason)
            self.notify(reason, title=f"{title} failed", severity="warning", timeout=10)
        self.query_one("#reason", Static).update(panel)
        if not result.run_id:
            self.notify("This case has no transcript: its run failed to start.", severity="warning")
            return
        if self.on_open_run is not None:
            self.on_open_run(result.run_id)
        else:
            self._push_run(result.run_id)

    def _push_run(self, run_id: str) -> None:
        try:
            if self._store is None:
                self._store = TraceStore(self._db_path or self.db, open_timeout_s=2.0)
            run = query.get_run(self._store, run_id)
            spans = query.spans_of(self._store, run.id)
        except Exception as exc:  # not committed yet, a locked or damaged file: a message
            self.notify(f"cannot open run {run_id[:12]}: {exc}", severity="error")
            return
        self.app.push_screen(RunDetailScreen(self._store, run, spans, self.export_dir))

    def on_unmount(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
