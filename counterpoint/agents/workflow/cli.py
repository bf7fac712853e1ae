"""``counterpoint workflow``: run AOV workflows from files, show, resume and list their runs.

``workflow_app`` is a :class:`typer.Typer` that the main CLI mounts as ``counterpoint workflow``:

- ``counterpoint workflow run FILE`` loads a workflow (counterpoint's schema or Flow's, JSON or
  YAML; see :mod:`counterpoint.agents.workflow.loading`), runs it with a line per task start and
  finish, then prints the final tasks' results and the run id. ``--plan GOAL`` has a planner
  agent write the graph first (with FILE's agents, or built-in ones). Exit status: 0 when every
  task ended ok, 1 when the workflow failed, 2 on a user error, 130 on Ctrl-C (the run is
  cancelled cleanly: ``resume`` continues it).
- ``counterpoint workflow show RUN`` draws a stored run: the graph in layers with each task's
  status, a timeline of the tasks on a common time axis, and the makespan, task time and overlap.
- ``counterpoint workflow resume RUN`` continues a crashed, cancelled or failed run without
  running a finished task again (rebuilt from its file, or from the stored spec if the file is
  gone).
- ``counterpoint workflow list`` lists recent workflow runs.

Every command reads and writes the traces database given by ``--db`` (or
``$COUNTERPOINT_TRACES_DB``, or the default file). Errors a user can cause print one line on
stderr and exit with status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, JustifyMethod
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from counterpoint.agents.workflow import render
from counterpoint.agents.workflow.events import (
    TaskFinished,
    TaskRetry,
    TaskStarted,
    WorkflowStarted,
)
from counterpoint.agents.workflow.graph import WorkflowError
from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.runtime.tracing.store import ENV_VAR, MEMORY, resolve_db_path

if TYPE_CHECKING:
    from counterpoint.agents.agent import Agent
    from counterpoint.agents.workflow.outcome import TaskOutcome
    from counterpoint.agents.workflow.store import StoredWorkflow, WorkflowStore
    from counterpoint.agents.workflow.workflow import Workflow, WorkflowResult
    from counterpoint.core.events import BaseEvent
    from counterpoint.runtime.tracing import SQLiteTracer

__all__ = ["workflow_app"]

workflow_app = typer.Typer(
    name="workflow",
    help="Run AOV workflows from JSON/YAML files; show, resume and list their runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DB_HELP = "The traces database (default: $COUNTERPOINT_TRACES_DB or ~/.local/share/counterpoint)."
_MODEL_HELP = (
    "The model of agents that name none: embedded, a local model, a cached hub id, openai:NAME, "
    "or pkg.mod:attr (default: the file's model, else embedded)."
)

_PLANNER = {
    "instructions": (
        "You plan workflows: you split a goal into a few concrete tasks for the agents you are "
        "given, and you answer with one JSON object and nothing else."
    ),
    "max_tokens": 768,
}
"""The built-in planner agent (``--plan`` without a ``planner`` agent in FILE)."""

_PLAN_AGENTS = {
    "analyst": {
        "instructions": (
            "You are an analyst. You do the task you are given concretely and answer briefly."
        ),
        "max_tokens": 256,
    },
    "writer": {
        "instructions": (
            "You are a writer. You turn the material you are given into clear, concise text."
        ),
        "max_tokens": 384,
    },
}
"""The agents a plan may use when ``--plan`` is given without FILE."""


class OnFailure(StrEnum):
    """What a failed task means for the tasks that need it."""

    skip = "skip"
    fail = "fail"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn project errors into one line on stderr and exit status 2."""
    try:
        yield
    except CounterpointError as exc:
        raise _fail(_one_line(str(exc))) from None


def _stdout(width: int | None = None) -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if width is not None:
        console.width = width
    elif not sys.stdout.isatty():
        console.width = max(console.width, 100)
    return console


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


# -- run ---------------------------------------------------------------------------------------


@workflow_app.command("run")
def run_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="A workflow file (.yaml, .yml or .json), in counterpoint's schema or Flow's.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help=_MODEL_HELP)] = None,
    db: Annotated[
        Path | None, typer.Option("--db", envvar=ENV_VAR, dir_okay=False, help=_DB_HELP)
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Most tasks running at once (default: the file's).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds each attempt of a task may take.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(help="Attempts after a task's first (default: the file's, or 2).")
    ] = None,
    on_failure: Annotated[
        OnFailure | None,
        typer.Option(help="skip the tasks that need a failed one, or fail the workflow."),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Most tokens each agent run may generate (all agents).")
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache", help="Reuse the stored result of an identical earlier task (opt-in)."
        ),
    ] = False,
    kv_reuse: Annotated[
        str | None,
        typer.Option(
            "--kv-reuse",
            metavar="POLICY",
            help="Reuse upstream results as KV segments on the local backend: anchors, shift, "
            "prefix or dense.",
        ),
    ] = None,
    trace: Annotated[
        bool, typer.Option("--trace/--no-trace", help="Record the run's events as a trace.")
    ] = True,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            metavar="GOAL",
            help="Have a planner agent write the graph for GOAL (with FILE's agents, if given).",
        ),
    ] = None,
    candidates: Annotated[
        int, typer.Option(help="Candidate graphs the planner writes (with --plan).")
    ] = 3,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="The new run's id (default: a fresh one).")
    ] = None,
) -> None:
    """Run a workflow FILE (or plan one with --plan GOAL) and print each task as it goes."""
    from counterpoint.agents.workflow.loading import load_workflow

    err = _stderr()
    with _user_errors():
        overrides = _overrides(concurrency, timeout, retries, on_failure)
        _check_positive("--max-tokens", max_tokens)
        policy = _kv_policy(kv_reuse)
        if candidates < 1:
            raise ConfigError(f"--candidates must be 1 or more, not {candidates}")
        if file is None and plan is None:
            raise ConfigError("give a workflow FILE, or --plan GOAL to have one planned")
        db_path = resolve_db_path(db)
        if plan is not None:
            wf = _planned(file, plan, model, overrides, max_tokens, candidates, trace, db_path)
        else:
            assert file is not None
            wf = load_workflow(file, model=model, config=overrides, max_tokens=max_tokens)
            wf.source = str(file.resolve())
    code = _execute(
        wf,
        run_id=run_id or uuid.uuid4().hex,
        resume=None,
        db=db,
        db_path=db_path,
        trace=trace,
        cache=cache,
        kv_reuse=policy,
        err=err,
    )
    raise typer.Exit(code)


def _overrides(
    concurrency: int | None,
    timeout: float | None,
    retries: int | None,
    on_failure: OnFailure | None,
) -> dict[str, Any]:
    _check_positive("--concurrency", concurrency)
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, not {timeout}")
    if retries is not None and retries < 0:
        raise ConfigError(f"--retries must be 0 or more, not {retries}")
    out: dict[str, Any] = {}
    if concurrency is not None:
        out["max_concurrency"] = concurrency
    if timeout is not None:
        out["timeout_s"] = float(timeout)
    if retries is not None:
        out["retries"] = retries
    if on_failure is not None:
        out["on_failure"] = on_failure.value
    return out


def _check_positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be 1 or more, not {value}")


def _kv_policy(value: str | None) -> str | None:
    if value is None:
        return None
    from counterpoint.runtime.kv.policy import POLICIES

    if value not in POLICIES:
        raise ConfigError(f"unknown --kv-reuse policy {value!r}: use one of {', '.join(POLICIES)}")
    return value


def _planned(
    file: Path | None,
    goal: str,
    model: str | None,
    overrides: Mapping[str, Any],
    max_tokens: int | None,
    candidates: int,
    trace: bool,
    db_path: str,
) -> Workflow:
    """The workflow a planner writes for ``goal`` (FILE's agents, or the built-in ones)."""
    from counterpoint.agents.workflow.loading import load_workflow, workflow_from_dict
    from counterpoint.agents.workflow.planner import Planner

    if not goal.strip():
        raise ConfigError("--plan needs a goal: --plan 'what the workflow must achieve'")
    if file is not None:
        base = load_workflow(
            file, model=model, config=overrides, max_tokens=max_tokens, require_tasks=False
        )
    else:
        base = workflow_from_dict(
            {"name": "planned", "agents": _PLAN_AGENTS},
            model=model,
            config=overrides,
            max_tokens=max_tokens,
            require_tasks=False,
        )
    planner = base.agents.get("planner")
    if planner is None:
        planner = workflow_from_dict(
            {"agents": {"planner": _PLANNER}}, model=model, require_tasks=False
        ).agents["planner"]
    workers = {name: agent for name, agent in base.agents.items() if name != "planner"}
    if not workers:
        raise WorkflowError("--plan needs agents besides 'planner' to give tasks to", source=None)
    err = _stderr()
    _load_models([planner], err)
    tracer = _tracer(db_path) if trace else None
    planner = planner.replace(tracer=tracer if tracer is not None else False)
    err.print(
        f"planning {_short(goal, 60)!r} with {len(workers)} agent(s), {candidates} candidate(s)…",
        style="dim",
    )
    try:
        result = asyncio.run(Planner(planner, candidates=candidates).plan(goal, workers))
    finally:
        if tracer is not None:
            tracer.close()
    chosen = result.scores[result.chosen]
    console = _stdout()
    console.print(
        f"plan: {len(result.graph)} task(s), candidate {result.chosen + 1} of "
        f"{len(result.candidates)} (parallelism {chosen.parallelism:.2f}, dependency complexity "
        f"{chosen.complexity:.2f})"
    )
    if result.failures:
        err.print(f"{len(result.failures)} answer(s) rejected on the way", style="dim")
    console.print(render.layers_view(result.graph.to_dicts(), {}))
    document = dict(base.spec["document"])
    document["name"] = base.name
    document["goal"] = goal
    document["tasks"] = result.graph.to_dicts()
    wf = workflow_from_dict(document, model=model)
    wf.spec["planned"] = {"goal": goal, "file": str(file) if file is not None else None}
    return wf


def _execute(
    wf: Workflow,
    *,
    run_id: str,
    resume: str | None,
    db: Path | None,
    db_path: str,
    trace: bool,
    cache: bool,
    kv_reuse: str | None,
    err: Console,
) -> int:
    """Run (or resume) ``wf`` with live progress; the exit status."""
    console = _stdout()
    with _user_errors():
        _load_models([wf.agent_of(t) for t in wf], err)
        tracer = _tracer(db_path) if trace else None
    view = _Progress(console, wf)
    options: dict[str, Any] = {
        "db": db_path,
        "tracer": tracer if tracer is not None else False,
        "cache": cache,
        "kv_reuse": kv_reuse,
    }
    if resume is not None:
        options["resume"] = resume
    else:
        options["run_id"] = run_id
    try:
        with _user_errors():
            result = asyncio.run(_drive(wf, view, options))
    except KeyboardInterrupt:
        shown = view.run_id or resume or run_id
        err.print(
            f"interrupted: the run is cancelled; {view.finished} task(s) finished and are kept. "
            f"Continue it with `counterpoint workflow resume {shown}{_db_flag(db)}`",
        )
        return 130
    finally:
        if tracer is not None:
            tracer.close()
    _print_result(console, err, result, db)
    return {"ok": 0, "failed": 1}.get(result.status, 130)


async def _drive(wf: Workflow, view: _Progress, options: dict[str, Any]) -> WorkflowResult:
    handle = wf.start(**options)
    view.run_id = handle.run_id
    try:
        async for event in handle:
            view(event)
        return await handle.result()
    finally:
        await handle.cancel()


def _tracer(db_path: str) -> SQLiteTracer:
    from counterpoint.runtime.tracing import SQLiteTracer

    return SQLiteTracer(db_path)


def _load_models(agents: list[Agent], err: Console) -> None:
    """Load every model the agents use now (a bad spec is a user error before anything runs)."""
    for agent in agents:
        key = agent.model_key
        # a spinner on a terminal, nothing when piped (stderr keeps to errors there)
        with err.status(f"loading model {key}…"):
            try:
                agent.model  # noqa: B018 - loads it
            except CounterpointError:
                raise
            except Exception as e:
                raise ConfigError(
                    f"agent {agent.name!r}: cannot load model {key!r}: {type(e).__name__}: "
                    f"{_one_line(str(e))}"
                ) from None


class _Progress:
    """Prints a line per task start, retry and finish (the workflow's own events only)."""

    def __init__(self, console: Console, wf: Workflow) -> None:
        self.console = console
        self.width = max((len(t.id) for t in wf), default=4)
        self.run_id: str | None = None
        self.finished = 0

    def __call__(self, event: BaseEvent) -> None:
        if event.run_id != self.run_id:
            return  # an agent's event
        if isinstance(event, WorkflowStarted):
            self._started(event)
        elif isinstance(event, TaskStarted):
            self.console.print(
                render.task_line(
                    event.t,
                    "started",
                    event.task_id,
                    id_width=self.width,
                    agent=event.agent,
                    attempt=event.attempt,
                )
            )
        elif isinstance(event, TaskRetry):
            self.console.print(
                render.task_line(
                    event.t,
                    "retry",
                    event.task_id,
                    id_width=self.width,
                    attempt=event.attempt,
                    detail=_short(event.error, 80),
                )
            )
        elif isinstance(event, TaskFinished):
            if event.status in ("ok", "cached"):
                self.finished += 1
            detail = _short(event.error, 80) if event.error and event.status != "ok" else ""
            self.console.print(
                render.task_line(
                    event.t,
                    "finished",
                    event.task_id,
                    id_width=self.width,
                    status=event.status,
                    duration_s=event.duration_s,
                    detail=detail,
                )
            )

    def _started(self, event: WorkflowStarted) -> None:
        self.width = max([self.width, *(len(str(t.get("id", ""))) for t in event.tasks)])
        verb = "resuming" if event.resumed else "running"
        self.console.print(
            Text.assemble(
                (f"{verb} workflow ", "dim"),
                (event.name, "bold"),
                (f": {len(event.tasks)} task(s) · run ", "dim"),
                (event.run_id, ""),
            )
        )
        if event.done:
            self.finished += len(event.done)
            self.console.print(
                Text.assemble(
                    (f"reusing {len(event.done)} finished task(s): ", "dim"),
                    (", ".join(event.done), "green"),
                )
            )


def _print_result(console: Console, err: Console, result: WorkflowResult, db: Path | None) -> None:
    for sink in result.sinks:
        outcome = result.outcomes.get(sink)
        if outcome is None or outcome.result is None:
            continue
        console.print(Rule(Text(sink, style="bold"), align="left"))
        console.print(Text(outcome.result.strip()))
    console.print(Rule())
    line = Text.assemble(
        ("workflow ", "dim"),
        (result.status, render.STYLES.get(result.status, "")),
        (f" in {result.duration_s:.1f}s: ", "dim"),
    )
    line.append_text(render.counts_view(result.counts(), len(result.outcomes)))
    console.print(line)
    for tid, outcome in result.outcomes.items():
        if outcome.status == "failed":
            console.print(
                Text.assemble(
                    ("  ", ""),
                    render.mark("failed"),
                    (f" {tid}: {_short(outcome.error or 'failed', 160)}", "red"),
                )
            )
    flag = _db_flag(db)
    console.print(f"run id: {result.run_id}")
    console.print(f"details: counterpoint workflow show {result.run_id}{flag}")
    if result.status != "ok":
        console.print(f"continue it: counterpoint workflow resume {result.run_id}{flag}")


def _db_flag(db: Path | None) -> str:
    if db is None or str(db) == os.environ.get(ENV_VAR):
        return ""
    return f" --db {db}"


# -- show --------------------------------------------------------------------------------------


@workflow_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="A workflow run id (or a prefix of 6+ chars).")],
    db: Annotated[
        Path | None, typer.Option("--db", envvar=ENV_VAR, dir_okay=False, help=_DB_HELP)
    ] = None,
    width: Annotated[int | None, typer.Option(help="Width of the output (columns).")] = None,
) -> None:
    """A run: the graph in layers with each task's status, a timeline, and the overlap."""
    with _user_errors():
        if width is not None and width < 40:
            raise ConfigError(f"--width must be 40 or more, not {width}")
        with _open_store(db) as store:
            stored = store.load_run(run_id)
    console = _stdout(width)
    for renderable in run_view(stored, width=console.width):
        console.print(renderable)


def run_view(stored: StoredWorkflow, *, width: int = 100) -> list[Any]:
    """What ``show`` prints for a stored run, as rich renderables."""
    outcomes: dict[str, TaskOutcome] = dict(stored.outcomes)
    statuses = {tid: o.status for tid, o in outcomes.items()}
    out: list[Any] = []
    head = Text.assemble(
        ("workflow ", "dim"),
        (stored.name, "bold"),
        (" · run ", "dim"),
        stored.run_id,
        (" · ", "dim"),
        (stored.status, render.STYLES.get(stored.status, "")),
    )
    out.append(head)
    details = [f"started {_when(stored.started_at)}"]
    if stored.ended_at is not None:
        details.append(f"ended after {stored.ended_at - stored.started_at:.1f}s wall time")
    if stored.resumes:
        details.append(f"resumed {stored.resumes} time(s)")
    if stored.version:
        details.append(f"graph version {stored.version}")
    if stored.source:
        details.append(f"from {stored.source}")
    out.append(Text(" · ".join(details), style="dim"))
    if stored.goal:
        out.append(Text.assemble(("goal: ", "dim"), _short(stored.goal, max(40, width * 2))))
    out.append(Rule(Text("graph", style="bold"), align="left"))
    out.append(render.layers_view(stored.graph, statuses))
    order = [tid for layer in render.layers(stored.graph) for tid in layer]
    extra = [tid for tid in outcomes if tid not in order]  # removed by a patch after it ran
    out.append(Rule(Text("timeline", style="bold"), align="left"))
    out.append(render.timeline_view([*order, *extra], outcomes, width=width))
    done = {tid: o for tid, o in outcomes.items() if str(o.status) != "running"}
    out.append(render.summary_view(render.summarise(done, total=len(stored.graph))))
    for tid in [*order, *extra]:
        outcome = outcomes.get(tid)
        if outcome is not None and outcome.status == "failed" and outcome.error:
            out.append(
                Text.assemble(
                    render.mark("failed"), (f" {tid}: {_short(outcome.error, width * 2)}", "red")
                )
            )
    return out


@contextlib.contextmanager
def _open_store(db: Path | None, *, must_exist: bool = True) -> Iterator[WorkflowStore]:
    from counterpoint.agents.workflow.store import WorkflowStore

    path = resolve_db_path(db)
    if must_exist and path != MEMORY and not Path(path).exists():
        raise ConfigError(
            f"no traces database at {path}: run a workflow first, or pick the file with --db"
        )
    store = WorkflowStore(path)
    try:
        yield store
    finally:
        store.close()


# -- resume ------------------------------------------------------------------------------------


@workflow_app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="A workflow run id (or a prefix of 6+ chars).")],
    db: Annotated[
        Path | None, typer.Option("--db", envvar=ENV_VAR, dir_okay=False, help=_DB_HELP)
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Run on this model instead of the stored one.")
    ] = None,
    trace: Annotated[
        bool, typer.Option("--trace/--no-trace", help="Record the run's events as a trace.")
    ] = True,
) -> None:
    """Continue a run without running a finished task again (rebuilt from its file or spec)."""
    err = _stderr()
    with _user_errors():
        db_path = resolve_db_path(db)
        with _open_store(db) as store:
            stored = store.load_run(run_id)
        wf = rebuild(stored, model=model)
        ids = [str(t.get("id")) for t in stored.graph]
        finished = [tid for tid in ids if tid in stored.finished()]
        todo = [tid for tid in ids if tid not in finished]
    console = _stdout()
    if not todo:
        console.print(
            f"run {stored.run_id} has nothing left to run: all {len(ids)} task(s) finished"
        )
        raise typer.Exit(0)
    console.print(
        Text.assemble(
            (f"resuming run {stored.run_id} ({stored.status}): ", "dim"),
            (f"reused {len(finished)}", "green"),
            (f" finished task(s){': ' + ', '.join(finished) if finished else ''}; ", "dim"),
            f"to run: {', '.join(todo)}",
        )
    )
    code = _execute(
        wf,
        run_id=stored.run_id,
        resume=stored.run_id,
        db=db,
        db_path=db_path,
        trace=trace,
        cache=False,
        kv_reuse=None,
        err=err,
    )
    raise typer.Exit(code)


def rebuild(stored: StoredWorkflow, *, model: str | None = None) -> Workflow:
    """The workflow of a stored run: from its file if it is still there, else its stored spec.

    ``model`` overrides the model the run was started with.
    """
    from counterpoint.agents.workflow.loading import load_workflow, workflow_from_spec

    spec = stored.config.get("spec") or {}
    overrides = spec.get("overrides") or {}
    stored_model = spec.get("model")
    chosen = model if model is not None else stored_model if isinstance(stored_model, str) else None
    wf: Workflow
    if stored.source and Path(stored.source).is_file() and not spec.get("planned"):
        wf = load_workflow(
            stored.source,
            model=chosen,
            config=overrides.get("config") or None,
            max_tokens=overrides.get("max_tokens"),
            require_tasks=False,
        )
    elif isinstance(spec.get("document"), Mapping):
        wf = workflow_from_spec(spec, model=chosen, source=stored.source)
    else:
        raise WorkflowError(
            f"run {stored.run_id} was not started from a workflow file and stores no spec: "
            "resume it from Python with the same Workflow (wf.run(resume=RUN_ID))"
        )
    wf.rebuilt(stored.graph, stored.version)  # the stored graph fits these agents, or says why
    return wf


# -- list --------------------------------------------------------------------------------------


@workflow_app.command("list")
def list_runs(
    db: Annotated[
        Path | None, typer.Option("--db", envvar=ENV_VAR, dir_okay=False, help=_DB_HELP)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
) -> None:
    """The most recent workflow runs: when, id, name, status, tasks, resumes, wall time."""
    with _user_errors():
        if limit < 1:
            raise ConfigError(f"--limit must be 1 or more, not {limit}")
        path = resolve_db_path(db)
        if path != MEMORY and not Path(path).exists():
            typer.echo(f"No workflow runs yet: {path} does not exist.")
            return
        with _open_store(db) as store:
            runs = store.list_runs(limit)
    if not runs:
        typer.echo(f"No workflow runs in {path}.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("started", "left"),
        ("run id", "left"),
        ("name", "left"),
        ("status", "left"),
        ("tasks", "right"),
        ("resumes", "right"),
        ("wall", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name != "name")
    for run in runs:
        wall = f"{run.ended_at - run.started_at:.1f}s" if run.ended_at is not None else ""
        table.add_row(
            _when(run.started_at),
            run.id,
            run.name,
            Text(run.status, style=render.STYLES.get(run.status, "")),
            str(len(run.graph)),
            str(run.resumes or ""),
            wall,
        )
    _stdout().print(table)


# -- helpers -----------------------------------------------------------------------------------


def _when(unix: float) -> str:
    return _dt.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str, limit: int) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())
