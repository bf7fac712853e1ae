"""``counterpoint eval``: run BFCL evals and report on them.

``eval_app`` is a :class:`typer.Typer` that the main CLI mounts as ``counterpoint eval``:

- ``counterpoint eval bfcl --category parallel --mode async --model embedded --limit 20`` runs
  cases through an agent and records each result in the traces database (``--db``), with a progress
  bar; Ctrl-C keeps every finished case and ``--resume RUN`` continues the run.
- ``counterpoint eval report [RUN ...]`` prints accuracy, latency, speedup and protocol overhead
  tables and writes ``summary.json`` and ``latency.png`` into ``--out`` (default ``./eval-report``).

Errors a user can cause (an unknown category or mode, a missing dataset, an unknown run) print one
line on stderr and exit with status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.evals.report import build_report, render_tables, write_report
from counterpoint.evals.runner import (
    CaseResult,
    EvalConfig,
    EvalOutcome,
    EvalPlan,
    expand_categories,
    expand_modes,
    find_eval_run,
    resume_bfcl,
    run_bfcl,
)
from counterpoint.runtime.tracing import SQLiteTracer, TraceStore
from counterpoint.runtime.tracing.store import ENV_VAR, resolve_db_path

__all__ = ["eval_app"]

eval_app = typer.Typer(
    name="eval",
    help="Run BFCL evals (accuracy and latency per mode) and report on them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DB_HELP = "The traces database (default: $COUNTERPOINT_TRACES_DB or ~/.local/share/counterpoint)."


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn project errors into one line on stderr and exit status 2."""
    try:
        yield
    except CounterpointError as exc:
        raise _fail(str(exc)) from None


_FLAGS = {
    "categories": "--category",
    "modes": "--mode",
    "model": "--model",
    "limit": "--limit",
    "max_tokens": "--max-tokens",
    "latency_scale": "--latency-scale",
    "turns": "--turns",
    "data_dir": "--data-dir",
    "constrained": "--constrained/--no-constrained",
    "adapter": "--adapter",
    "call_threshold": "--call-threshold",
}


def _check_resume_options(config: EvalConfig, given: dict[str, Any], run_id: str) -> None:
    """Options given with --resume must agree with the run's stored config."""
    stored = config.to_json()
    for key, value in given.items():
        if value is None:
            continue
        if key == "categories":
            value = list(expand_categories(value))
        elif key == "modes":
            value = list(expand_modes(value))
        if value != stored.get(key):
            raise ConfigError(
                f"eval run {run_id} was started with {_FLAGS[key]} {stored.get(key)!r}, not "
                f"{value!r}: leave {_FLAGS[key]} out to resume it, or start a new run"
            )


class _ProgressView:
    """A rich progress bar with ETA, and the running accuracy of this session's cases."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[accuracy]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None
        self.correct = 0
        self.finished = 0
        self.plan: EvalPlan | None = None

    def on_plan(self, plan: EvalPlan) -> None:
        self.plan = plan
        verb = "resuming" if plan.resumed else "eval run"
        self.console.print(
            f"{verb} {plan.run_id}: {plan.model}, {', '.join(plan.config.categories)} x "
            f"{', '.join(plan.config.modes)}: {len(plan.jobs)} to run"
            + (f", {plan.done} already done" if plan.done else ""),
            highlight=False,
        )
        if self.console.is_terminal:
            self.progress.start()
        self.task = self.progress.add_task(
            "bfcl", total=plan.total, completed=plan.done, accuracy=""
        )

    def on_result(self, result: CaseResult) -> None:
        self.finished += 1
        self.correct += result.correct
        if not self.console.is_terminal:  # a log file: a plain line every 5% of the cases
            total = self.plan.total - self.plan.done if self.plan is not None else 0
            every = max(1, total // 20)
            if self.finished % every == 0 or self.finished == total:
                self.console.print(
                    f"{self.finished}/{total} {result.category}/{result.mode} "
                    f"acc {self.correct / self.finished:.0%}",
                    highlight=False,
                )
            return
        self.progress.update(
            self.task,
            advance=1,
            description=f"{result.category}/{result.mode}",
            accuracy=f"acc {self.correct / self.finished:.0%}",
        )

    def stop(self) -> None:
        self.progress.stop()


def _warn_held_back(config: EvalConfig, console: Console) -> None:
    if config.held_back:
        console.print(
            f"warning: {', '.join(config.held_back)} held back for acceptance only: "
            "never tune prompts or code on them",
            style="yellow",
            highlight=False,
        )


@eval_app.command("bfcl")
def bfcl(
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category",
            "-c",
            help="A BFCL category (repeat for several), or 'all' (the development ones). "
            "Default: all.",
        ),
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            "--mode", "-m", help="sync, parallel or async (repeat for several), or 'all' (default)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="embedded (default), a local model, openai:NAME, scripted-oracle or "
            "scripted-perturbed."
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Base URL of the OpenAI-compatible server (openai:NAME).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Run the first N cases of each category.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(help="Cases run at once (keep 1 to measure latency).")
    ] = 1,
    max_tokens: Annotated[
        int | None, typer.Option(help="Most tokens the model may generate per case (256).")
    ] = None,
    latency_scale: Annotated[
        float | None,
        typer.Option(help="Multiply the simulated tool latencies (30-500 ms) by this (1.0)."),
    ] = None,
    turns: Annotated[
        str | None,
        typer.Option(help="Multi-turn questions: 'all' turns in order (default) or 'first'."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The BFCL data folder (default: the installed bfcl-eval package)."),
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", envvar=ENV_VAR, dir_okay=False, help=_DB_HELP)
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue this eval run (id or prefix) without redoing finished cases."),
    ] = None,
    constrained: Annotated[
        bool | None,
        typer.Option(
            "--constrained/--no-constrained",
            help="Grammar-constrained call blocks on the local backend (default: on).",
        ),
    ] = None,
    adapter: Annotated[
        str | None,
        typer.Option(
            help="A LoRA adapter folder merged into the local model (default: the project's CML "
            "adapter on the embedded model); none: the raw model."
        ),
    ] = None,
    call_threshold: Annotated[
        float | None,
        typer.Option(
            help="Local backend, greedy: open a call block only where the model gives it at least "
            "this probability (0.5); 0: the likeliest token decides."
        ),
    ] = None,
) -> None:
    """Run BFCL cases through an agent in each mode; record accuracy and latency per case."""
    console = Console(stderr=True)
    given: dict[str, Any] = {
        "categories": category or None,
        "modes": mode or None,
        "model": model,
        "limit": limit,
        "max_tokens": max_tokens,
        "latency_scale": latency_scale,
        "turns": turns,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "constrained": constrained,
        "adapter": adapter,
        "call_threshold": call_threshold,
    }
    with _user_errors():
        if concurrency < 1:
            raise ConfigError(f"--concurrency must be 1 or more, got {concurrency}")
        tracer = SQLiteTracer(resolve_db_path(db))
    try:
        with _user_errors():
            if resume is not None:
                record = find_eval_run(tracer.store, resume)
                config = EvalConfig.from_json(dict(record.config))
                _check_resume_options(config, given, record.id)
            else:
                config = EvalConfig(
                    categories=tuple(category or ("all",)),
                    modes=tuple(mode or ("all",)),  # type: ignore[arg-type]
                    model=model or "embedded",
                    base_url=base_url,
                    limit=limit,
                    max_tokens=max_tokens if max_tokens is not None else 256,
                    latency_scale=latency_scale if latency_scale is not None else 1.0,
                    turns=_turns(turns),
                    data_dir=str(data_dir) if data_dir is not None else None,
                    constrained=constrained is not False,
                    adapter=adapter,
                    call_threshold=(
                        call_threshold if call_threshold is not None else EvalConfig.call_threshold
                    ),
                )
            _warn_held_back(config, console)
            outcome = _run(config, tracer, resume, base_url, concurrency, console)
            _print_summary(tracer.store, outcome, console)
    finally:
        tracer.close()


def _turns(value: str | None) -> Literal["all", "first"]:
    if value is None or value == "all":
        return "all"
    if value == "first":
        return "first"
    raise ConfigError(f"--turns must be 'all' or 'first', got {value!r}")


def _run(
    config: EvalConfig,
    tracer: SQLiteTracer,
    resume: str | None,
    base_url: str | None,
    concurrency: int,
    console: Console,
) -> EvalOutcome:
    view = _ProgressView(console)
    if resume is not None:
        work = resume_bfcl(
            resume,
            tracer,
            concurrency=concurrency,
            on_plan=view.on_plan,
            on_result=view.on_result,
            base_url=base_url,
        )
    else:
        work = run_bfcl(
            config, tracer, concurrency=concurrency, on_plan=view.on_plan, on_result=view.on_result
        )
    started = time.monotonic()
    try:
        outcome = asyncio.run(work)
    except KeyboardInterrupt:
        view.stop()
        plan = view.plan
        if plan is not None:
            console.print(
                f"interrupted: {plan.done + view.finished} of {plan.total} cases are kept in "
                f"{tracer.path}; continue with `counterpoint eval bfcl --resume {plan.run_id}"
                f" --db {tracer.path}`",
                highlight=False,
            )
        raise typer.Exit(130) from None
    finally:
        view.stop()
    console.print(f"ran {view.finished} cases in {time.monotonic() - started:.0f} s")
    return outcome


def _stdout() -> Console:
    """The console for tables: the terminal's width, or 120 columns when piped."""
    return Console() if sys.stdout.isatty() else Console(width=120)


def _print_summary(store: TraceStore, outcome: EvalOutcome, console: Console) -> None:
    out = _stdout()
    for table in render_tables(build_report(store, [outcome.run_id])):
        out.print(table)
    console.print(
        f"eval run {outcome.run_id} ({outcome.status}) recorded in {store.path}; "
        f"`counterpoint eval report {outcome.run_id}` for the plot and JSON",
        highlight=False,
    )


@eval_app.command("report")
def report(
    runs: Annotated[
        list[str] | None,
        typer.Argument(help="Eval run ids or prefixes (default: the latest run of each model)."),
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", envvar=ENV_VAR, dir_okay=False, help=_DB_HELP)
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for summary.json and latency.png.")] = Path(
        "eval-report"
    ),
) -> None:
    """Accuracy per category x mode, latency p50/p95, async speedup vs sync, protocol overhead."""
    with _user_errors():
        path = resolve_db_path(db)
        if not Path(path).exists():
            raise ConfigError(f"no traces database at {path}: run `counterpoint eval bfcl` first")
        with TraceStore(path) as store:
            built = build_report(store, runs or None)
        files = write_report(built, out)
    console = _stdout()
    for table in render_tables(built):
        console.print(table)
    Console(stderr=True).print(f"wrote {files.json} and {files.png}", highlight=False)
