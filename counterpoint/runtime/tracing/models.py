"""The trace database schema (sqlmodel tables): runs, spans, eval runs and eval results, and the
checkpoints of AOV workflows (workflow runs, their tasks, and the cache of task results).

The tables live in their own SQLAlchemy registry (``TraceBase.metadata``), not in sqlmodel's global
one, so that other subsystems declaring sqlmodel tables never end up in the traces file and never
clash with these table names.

Times: a run's ``started_at``/``ended_at`` are Unix wall-clock seconds. A span's
``start_s``/``end_s`` are seconds since its run started (the events' monotonic ``t``), and
``start_time``/``end_time`` are the wall-clock times derived from them (run start + offset), so
that spans of different runs can be placed on one calendar.

Attribute names follow OpenTelemetry's GenAI semantic conventions where one exists
(``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``gen_ai.usage.input_tokens``...); counterpoint's own attributes are prefixed ``counterpoint.``.

The DDL that creates these tables is written out, version by version, in ``_migrations.py``; a test
checks that it matches the models below. Changing a model therefore means adding a migration.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "EvalResultRecord",
    "EvalRunRecord",
    "RunRecord",
    "RunStatus",
    "SpanKind",
    "SpanRecord",
    "SpanStatus",
    "TraceBase",
    "WorkflowCacheRecord",
    "WorkflowRunRecord",
    "WorkflowTaskRecord",
]


class SpanKind(StrEnum):
    """What a span measures."""

    GENERATION = "generation"
    """The whole decode of a run, first token to done."""
    TOOL_CALL = "tool_call"
    """One tool call, dispatched (CallStarted) to finished (CallFinished)."""
    INTERRUPT = "interrupt"
    """Results injected into the model's context; the span covers the prefill."""
    TRAP = "trap"
    """The model waiting for pending results (enter..exit)."""
    WORKFLOW_TASK = "workflow_task"
    """One task of an AOV workflow (written by the scheduler)."""
    KV_REUSE = "kv_reuse"
    """A prompt segment served from another agent's KV cache (written by the KV reuse layer)."""
    EVAL_CASE = "eval_case"
    """One eval case (written by the eval runner)."""
    EVENT = "event"
    """A moment of a run (a call written, a protocol error, a user interrupt, or an event kind
    of another package): zero length, named by the event's kind, its fields under the
    ``counterpoint.event`` attribute."""


class RunStatus(StrEnum):
    """A run's status: the ``Done`` event's status, or one of the tracer's own."""

    RUNNING = "running"
    """Started, not done; or its process died and the file has not been opened since."""
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"
    LIMIT = "limit"
    INCOMPLETE = "incomplete"
    """The tracer was closed before the run's ``Done`` event arrived."""
    INTERRUPTED = "interrupted"
    """The process recording it died (killed, crashed) before its ``Done``: set when the file is
    next opened on the same host (``TraceStore.recover_interrupted``)."""


class SpanStatus(StrEnum):
    """A span's status."""

    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    UNFINISHED = "unfinished"
    """The run ended (or the tracer closed) before the span's end event arrived."""


class TraceBase(SQLModel, registry=registry()):
    """Base of the trace tables; ``TraceBase.metadata`` holds exactly these tables."""


class RunRecord(TraceBase, table=True):
    """One run: an agent run (RunStarted..Done), a workflow run, anything emitting those events."""

    __tablename__ = "runs"

    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    model: str = ""
    mode: str = ""
    status: str = Field(default=RunStatus.RUNNING.value, index=True)
    prompt: str = ""
    output: str | None = None
    error: str | None = None
    parent_run_id: str | None = Field(default=None, index=True)
    started_at: float = Field(index=True, description="Unix time at the start of the run.")
    ended_at: float | None = None
    duration_s: float | None = Field(default=None, description="Wall seconds, start to Done.")
    first_token_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    interrupts: int = 0
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class SpanRecord(TraceBase, table=True):
    """One timed operation inside a run (see :class:`SpanKind`)."""

    __tablename__ = "spans"
    __table_args__ = (
        Index("ix_spans_run_id_start_s", "run_id", "start_s"),
        # covers tool_stats(): per-tool latency and errors without touching the table
        Index("ix_spans_kind_name", "kind", "name", "status", "duration_s"),
    )

    id: str = Field(primary_key=True)
    run_id: str
    parent_id: str | None = None
    kind: str
    name: str
    status: str = SpanStatus.OK.value
    start_s: float = Field(description="Seconds since the run started.")
    end_s: float | None = None
    duration_s: float | None = None
    start_time: float | None = Field(default=None, description="Unix time (run start + start_s).")
    end_time: float | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class EvalRunRecord(TraceBase, table=True):
    """One eval run: a dataset (some categories) run in some modes with one model."""

    __tablename__ = "eval_runs"

    id: str = Field(primary_key=True)
    name: str = ""
    dataset: str = ""
    model: str = ""
    categories: list[str] = Field(default_factory=list, sa_type=JSON)
    modes: list[str] = Field(default_factory=list, sa_type=JSON)
    status: str = "running"
    n_cases: int = 0
    started_at: float = Field(index=True)
    ended_at: float | None = None
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class EvalResultRecord(TraceBase, table=True):
    """The outcome of one eval case in one mode; ``run_id`` links the agent run's trace."""

    __tablename__ = "eval_results"
    __table_args__ = (
        Index("ix_eval_results_run_category_mode", "eval_run_id", "category", "mode"),
    )

    id: int | None = Field(default=None, primary_key=True)
    eval_run_id: str
    case_id: str
    category: str
    mode: str
    model: str = ""
    correct: bool
    failure_reason: str | None = None
    calls: list[Any] = Field(default_factory=list, sa_type=JSON)
    latency_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    run_id: str | None = Field(default=None, index=True)
    created_at: float = 0.0
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class WorkflowRunRecord(TraceBase, table=True):
    """One run of an AOV workflow, as its checkpoints record it (for ``resume``).

    ``id`` is the workflow run's id, which is also its row in ``runs`` (written by the tracer:
    events, spans); this row is written by the scheduler's checkpoint store
    (:class:`~counterpoint.agents.workflow.store.WorkflowStore`), so it exists even with tracing
    off. ``graph`` is the task list as ``Graph.to_dicts()`` gives it, at graph ``version`` (the
    latest patch saved); ``config`` holds what a resume needs besides (scheduler options, agent
    specs). ``status`` is ``running``, ``ok``, ``failed`` or ``cancelled``; a run whose process died
    stays ``running``. ``resumes`` counts the times it was resumed.
    """

    __tablename__ = "workflow_runs"

    id: str = Field(primary_key=True)
    name: str = ""
    goal: str = ""
    status: str = "running"
    version: int = 0
    graph: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    source: str | None = Field(default=None, description="The file the workflow was loaded from.")
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    started_at: float = Field(index=True, description="Unix time at the start of the run.")
    ended_at: float | None = None
    resumes: int = 0
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class WorkflowTaskRecord(TraceBase, table=True):
    """The checkpoint of one task of a workflow run: its status and result, in one row.

    ``status`` is ``running`` from the start of an attempt until its outcome is committed, then one
    of the task statuses (``ok``, ``failed``, ``skipped``, ``cached``, ``cancelled``); ``result`` is
    set with ``ok``/``cached`` in the same write, so a row never shows one without the other.
    ``started``/``ended`` are seconds since the workflow run started; ``updated_at`` is Unix time;
    ``graph_version`` is the graph's version when the outcome was committed.
    """

    __tablename__ = "workflow_tasks"

    run_id: str = Field(primary_key=True)
    task_id: str = Field(primary_key=True)
    status: str
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    started: float | None = Field(default=None, description="Seconds since the run started.")
    ended: float | None = None
    agent_run_id: str | None = None
    updated_at: float
    graph_version: int = 0


class WorkflowCacheRecord(TraceBase, table=True):
    """A finished task's result, keyed by a hash of what it depended on (objective, agent, output
    format, upstream results: ``counterpoint.agents.workflow.store.cache_key``); ``task_id`` and
    ``run_id`` say where it was first computed."""

    __tablename__ = "workflow_cache"

    key: str = Field(primary_key=True, description="sha256 hex of the task's inputs.")
    result: str
    task_id: str
    run_id: str
    created_at: float
