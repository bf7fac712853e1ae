"""Reading traces: typed queries over a :class:`~counterpoint.runtime.tracing.store.TraceStore`.

Every function takes the store first and returns sqlmodel records (detached: readable after the
session closed) or small pydantic models. Used by ``counterpoint traces``, the TUI and the evals.

A run is named by its id or any unique prefix of it (as git names commits); an unknown id raises
:class:`UnknownRunError`, an ambiguous prefix :class:`AmbiguousRunError`.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, func
from sqlmodel import col, select

from counterpoint.runtime.tracing.errors import AmbiguousRunError, UnknownRunError
from counterpoint.runtime.tracing.models import (
    EvalResultRecord,
    EvalRunRecord,
    RunRecord,
    SpanKind,
    SpanRecord,
    SpanStatus,
    TraceBase,
)
from counterpoint.runtime.tracing.store import TraceStore

__all__ = [
    "EvalSummary",
    "RunExport",
    "SpanNode",
    "ToolStat",
    "as_dict",
    "count_runs",
    "eval_results",
    "eval_summary",
    "export_run",
    "get_eval_run",
    "get_run",
    "list_eval_runs",
    "list_runs",
    "percentile",
    "span_tree",
    "spans_of",
    "starts_with",
    "tool_stats",
]


class ToolStat(BaseModel):
    """Latency and errors of one tool over its finished calls."""

    model_config = ConfigDict(frozen=True)

    name: str
    count: int
    errors: int
    error_rate: float
    p50_s: float
    p95_s: float
    mean_s: float
    max_s: float


class SpanNode(BaseModel):
    """A span and its children, ordered by start."""

    span: SpanRecord
    depth: int
    children: list[SpanNode]


class RunExport(BaseModel):
    """A run and all its spans, as ``counterpoint traces export`` writes them."""

    run: RunRecord
    spans: list[SpanRecord]

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON with each record's fields in column order."""
        data = {"run": as_dict(self.run), "spans": [as_dict(s) for s in self.spans]}
        return json.dumps(data, indent=indent, ensure_ascii=False)


def as_dict(record: TraceBase) -> dict[str, Any]:
    """A record's columns, in table order."""
    table = record.__table__  # type: ignore[attr-defined]
    return {c.name: getattr(record, c.name) for c in table.columns}


class EvalSummary(BaseModel):
    """Accuracy and latency of one (category, mode, model) group of an eval run."""

    model_config = ConfigDict(frozen=True)

    category: str
    mode: str
    model: str
    cases: int
    correct: int
    accuracy: float
    latency_p50_s: float
    latency_mean_s: float
    output_tokens: int


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- runs ----------------------------------------------------------------------------------------


def list_runs(
    store: TraceStore,
    *,
    limit: int = 20,
    name: str | None = None,
    status: str | None = None,
    parent_run_id: str | None = None,
) -> list[RunRecord]:
    """The most recent runs first, optionally only those with this name, status or parent."""
    stmt = select(RunRecord)
    if name is not None:
        stmt = stmt.where(RunRecord.name == name)
    if status is not None:
        stmt = stmt.where(RunRecord.status == status)
    if parent_run_id is not None:
        stmt = stmt.where(RunRecord.parent_run_id == parent_run_id)
    stmt = stmt.order_by(col(RunRecord.started_at).desc()).limit(limit)
    with store.session() as session:
        return list(session.exec(stmt).all())


def count_runs(store: TraceStore) -> dict[str, int]:
    """How many runs there are per status."""
    stmt = select(RunRecord.status, func.count()).group_by(RunRecord.status)
    with store.session() as session:
        return {status: int(n) for status, n in session.exec(stmt).all()}


def starts_with(column: Any, prefix: str) -> ColumnElement[bool]:
    """The SQL condition "``column`` starts with ``prefix``", every character of ``prefix`` taken
    literally (``LIKE``'s wildcards ``%`` and ``_`` are escaped), for id-prefix lookups."""
    condition: ColumnElement[bool] = col(column).startswith(prefix, autoescape=True)
    return condition


def get_run(store: TraceStore, run_id: str) -> RunRecord:
    """The run with this id, or the only run whose id starts with it."""
    if not run_id:
        raise UnknownRunError("Give a run id (see `counterpoint traces list`).")
    with store.session() as session:
        exact = session.get(RunRecord, run_id)
        if exact is not None:
            return exact
        stmt = (
            select(RunRecord)
            .where(starts_with(RunRecord.id, run_id))
            .order_by(col(RunRecord.started_at).desc())
            .limit(6)
        )
        matches = list(session.exec(stmt).all())
    if not matches:
        raise UnknownRunError(
            f"No run has the id {run_id!r} in {store.path}; `counterpoint traces list` shows the "
            "recent ones."
        )
    if len(matches) > 1:
        shown = ", ".join(m.id for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise AmbiguousRunError(
            f"{run_id!r} is the start of several run ids ({shown}); give more characters."
        )
    return matches[0]


def spans_of(store: TraceStore, run_id: str, *, kind: SpanKind | None = None) -> list[SpanRecord]:
    """The spans of a run (its exact id), ordered by start."""
    stmt = select(SpanRecord).where(SpanRecord.run_id == run_id)
    if kind is not None:
        stmt = stmt.where(SpanRecord.kind == kind.value)
    stmt = stmt.order_by(col(SpanRecord.start_s), col(SpanRecord.end_s))
    with store.session() as session:
        return list(session.exec(stmt).all())


def span_tree(spans: Iterable[SpanRecord]) -> list[SpanNode]:
    """Arrange spans by parent; a span whose parent is unknown becomes a root."""
    spans = list(spans)
    ids = {s.id for s in spans}
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for s in spans:
        children[s.parent_id if s.parent_id in ids else None].append(s)

    def build(parent: str | None, depth: int, seen: frozenset[str]) -> list[SpanNode]:
        nodes = []
        for s in sorted(children.get(parent, []), key=lambda s: (s.start_s, s.end_s or s.start_s)):
            if s.id in seen:  # a cycle in parent ids: cut it
                continue
            nodes.append(
                SpanNode(span=s, depth=depth, children=build(s.id, depth + 1, seen | {s.id}))
            )
        return nodes

    return build(None, 0, frozenset())


def export_run(store: TraceStore, run_id: str) -> RunExport:
    """A run (id or unique prefix) with all its spans."""
    run = get_run(store, run_id)
    return RunExport(run=run, spans=spans_of(store, run.id))


def tool_stats(store: TraceStore, *, since: float | None = None) -> list[ToolStat]:
    """Per tool name: finished calls, error rate, p50/p95/mean/max latency. Busiest first.

    ``since`` (Unix time) keeps only calls that started after it.
    """
    stmt = select(SpanRecord.name, SpanRecord.duration_s, SpanRecord.status).where(
        SpanRecord.kind == SpanKind.TOOL_CALL.value,
        col(SpanRecord.status).in_([SpanStatus.OK.value, SpanStatus.ERROR.value]),
    )
    if since is not None:
        stmt = stmt.where(col(SpanRecord.start_time) >= since)
    durations: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    with store.session() as session:
        for name, duration, status in session.exec(stmt).all():
            durations[name].append(duration or 0.0)
            if status == SpanStatus.ERROR.value:
                errors[name] += 1
    stats = [
        ToolStat(
            name=name,
            count=len(values),
            errors=errors[name],
            error_rate=errors[name] / len(values),
            p50_s=percentile(values, 50),
            p95_s=percentile(values, 95),
            mean_s=sum(values) / len(values),
            max_s=max(values),
        )
        for name, values in durations.items()
    ]
    return sorted(stats, key=lambda s: (-s.count, s.name))


# -- evals ---------------------------------------------------------------------------------------


def list_eval_runs(store: TraceStore, *, limit: int = 20) -> list[EvalRunRecord]:
    """The most recent eval runs first."""
    stmt = select(EvalRunRecord).order_by(col(EvalRunRecord.started_at).desc()).limit(limit)
    with store.session() as session:
        return list(session.exec(stmt).all())


def get_eval_run(store: TraceStore, eval_run_id: str) -> EvalRunRecord:
    """The eval run with this exact id."""
    with store.session() as session:
        found = session.get(EvalRunRecord, eval_run_id)
    if found is None:
        raise UnknownRunError(f"No eval run has the id {eval_run_id!r} in {store.path}.")
    return found


def eval_results(
    store: TraceStore,
    eval_run_id: str,
    *,
    category: str | None = None,
    mode: str | None = None,
    correct: bool | None = None,
) -> list[EvalResultRecord]:
    """The results of an eval run, in the order they were recorded."""
    stmt = select(EvalResultRecord).where(EvalResultRecord.eval_run_id == eval_run_id)
    if category is not None:
        stmt = stmt.where(EvalResultRecord.category == category)
    if mode is not None:
        stmt = stmt.where(EvalResultRecord.mode == mode)
    if correct is not None:
        stmt = stmt.where(EvalResultRecord.correct == correct)
    stmt = stmt.order_by(col(EvalResultRecord.id))
    with store.session() as session:
        return list(session.exec(stmt).all())


def eval_summary(store: TraceStore, eval_run_id: str) -> list[EvalSummary]:
    """Accuracy and latency per (category, mode, model) of an eval run."""
    groups: dict[tuple[str, str, str], list[EvalResultRecord]] = defaultdict(list)
    for r in eval_results(store, eval_run_id):
        groups[(r.category, r.mode, r.model)].append(r)
    out = []
    for (category, mode, model), rows in sorted(groups.items()):
        latencies = [r.latency_s for r in rows]
        n_correct = sum(1 for r in rows if r.correct)
        out.append(
            EvalSummary(
                category=category,
                mode=mode,
                model=model,
                cases=len(rows),
                correct=n_correct,
                accuracy=n_correct / len(rows),
                latency_p50_s=percentile(latencies, 50),
                latency_mean_s=sum(latencies) / len(latencies),
                output_tokens=sum(r.output_tokens for r in rows),
            )
        )
    return out
