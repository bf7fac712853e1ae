"""``counterpoint traces``: list, show, export and summarise recorded runs.

``traces_app`` is a :class:`typer.Typer` that the main CLI mounts as ``counterpoint traces``. Every
command reads the database given by ``--db`` (or ``$COUNTERPOINT_TRACES_DB``, or the default file).
Errors a user can cause (an unknown run id, an unusable file) print one line on stderr and exit
with status 2.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.rule import Rule

from counterpoint.errors import CounterpointError
from counterpoint.runtime.tracing import _render, query
from counterpoint.runtime.tracing.errors import UnknownRunError
from counterpoint.runtime.tracing.store import ENV_VAR, MEMORY, TraceStore, resolve_db_path

__all__ = ["traces_app"]

traces_app = typer.Typer(
    name="traces",
    help="Inspect recorded runs: list them, show one as a span tree and timeline, export, stats.",
    no_args_is_help=True,
    add_completion=False,
)

_DB_KEY = "counterpoint.traces.db"


@traces_app.callback()
def _traces(
    ctx: typer.Context,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar=ENV_VAR,
            help="The traces database (default: ~/.local/share/counterpoint/traces.db).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Inspect recorded runs."""
    ctx.meta[_DB_KEY] = db


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@contextlib.contextmanager
def _store(ctx: typer.Context) -> Iterator[TraceStore | None]:
    """The opened store, or None when the file does not exist yet; user errors exit 2."""
    try:
        path = resolve_db_path(ctx.meta.get(_DB_KEY))
        if path != MEMORY and not Path(path).exists():
            yield None
            return
        store = TraceStore(path)
    except CounterpointError as e:
        raise _fail(str(e)) from None
    try:
        yield store
    except CounterpointError as e:
        raise _fail(str(e)) from None
    finally:
        store.close()


def _console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def _no_db(ctx: typer.Context) -> None:
    path = resolve_db_path(ctx.meta.get(_DB_KEY))
    typer.echo(f"No traces yet: {path} does not exist (runs traced with SQLiteTracer create it).")


@traces_app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    name: Annotated[str | None, typer.Option(help="Only runs with this name.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
) -> None:
    """The most recent runs: time, id, name, mode, status, duration, tokens, calls."""
    with _store(ctx) as store:
        if store is None:
            _no_db(ctx)
            return
        runs = query.list_runs(store, limit=limit, name=name, status=status)
        if not runs:
            typer.echo(f"No runs recorded in {store.path}" + (" match." if name or status else "."))
            return
        console = _console()
        console.print(_render.runs_table(runs, width=console.width))


@traces_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    width: Annotated[int | None, typer.Option(min=40, help="Width of the output.")] = None,
    max_spans: Annotated[
        int, typer.Option("--spans", min=1, help="Show at most this many spans (earliest first).")
    ] = 200,
) -> None:
    """One run: its details, its spans as a tree, and a timeline of the spans."""
    with _store(ctx) as store:
        if store is None:
            raise _fail(str(UnknownRunError(f"No run has the id {run_id!r}: no traces yet.")))
        run = query.get_run(store, run_id)
        spans = query.spans_of(store, run.id)
        nodes = query.span_tree(spans[:max_spans])
        console = _console()
        if width is not None:
            console.width = width
        console.print(_render.run_details(run))
        console.print(Rule("spans"))
        console.print(_render.span_tree_view(run, nodes))
        if nodes:
            console.print(Rule("timeline"))
            console.print(_render.timeline(run, nodes, width=console.width))
        if len(spans) > max_spans:
            console.print(
                f"(showing the first {max_spans} of {len(spans)} spans; use --spans to see more, "
                "or `traces export` for all)"
            )


class ExportFormat(StrEnum):
    json = "json"


@traces_app.command("export")
def export(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = (
        ExportFormat.json
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="Write to this file.")
    ] = None,
) -> None:
    """A run and all its spans as JSON (on stdout, or into --output)."""
    with _store(ctx) as store:
        if store is None:
            raise _fail(str(UnknownRunError(f"No run has the id {run_id!r}: no traces yet.")))
        data = query.export_run(store, run_id).to_json()
    if output is None:
        typer.echo(data)
        return
    try:
        output.write_text(data + "\n", encoding="utf-8")
    except OSError as e:
        raise _fail(f"Cannot write {output}: {e.strerror or e}.") from None


@traces_app.command("stats")
def stats(ctx: typer.Context) -> None:
    """Per-tool call counts, p50/p95 latency and error rates, and runs per status."""
    with _store(ctx) as store:
        if store is None:
            _no_db(ctx)
            return
        counts = query.count_runs(store)
        tools = query.tool_stats(store)
        console = _console()
        total = sum(counts.values())
        by_status = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        console.print(f"{total} runs" + (f" ({by_status})" if by_status else ""))
        if not tools:
            console.print("No tool calls recorded.")
            return
        console.print(_render.tool_stats_table(tools))
