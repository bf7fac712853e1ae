"""Traces: runs and spans recorded in SQLite, derived from runtime events.

- :class:`SQLiteTracer` (the default) and :class:`NullTracer` are event sinks; the SQLite one
  commits from a background thread in batches. Other subsystems add spans with
  ``tracer.span(...)``/``tracer.start_span(...)`` and eval records with ``tracer.record_eval_*``.
- :class:`TraceStore` opens, checks and migrates a traces file; :mod:`.query` reads it.
- ``counterpoint traces`` is :data:`counterpoint.runtime.tracing.cli.traces_app` (imported lazily).
"""

from counterpoint.runtime.tracing import query
from counterpoint.runtime.tracing.errors import (
    AmbiguousRunError,
    TracerClosedError,
    TraceStoreError,
    TraceWriteError,
    UnknownRunError,
)
from counterpoint.runtime.tracing.models import (
    EvalResultRecord,
    EvalRunRecord,
    RunRecord,
    RunStatus,
    SpanKind,
    SpanRecord,
    SpanStatus,
)
from counterpoint.runtime.tracing.query import (
    EvalSummary,
    RunExport,
    SpanNode,
    ToolStat,
)
from counterpoint.runtime.tracing.store import TraceStore, default_db_path, resolve_db_path
from counterpoint.runtime.tracing.tracer import (
    CommitReport,
    NullTracer,
    SpanHandle,
    SQLiteTracer,
    Tracer,
    default_tracer,
)

__all__ = [
    "AmbiguousRunError",
    "CommitReport",
    "EvalResultRecord",
    "EvalRunRecord",
    "EvalSummary",
    "NullTracer",
    "RunExport",
    "RunRecord",
    "RunStatus",
    "SQLiteTracer",
    "SpanHandle",
    "SpanKind",
    "SpanNode",
    "SpanRecord",
    "SpanStatus",
    "ToolStat",
    "TraceStore",
    "TraceStoreError",
    "TraceWriteError",
    "Tracer",
    "TracerClosedError",
    "UnknownRunError",
    "default_db_path",
    "default_tracer",
    "query",
    "resolve_db_path",
]
