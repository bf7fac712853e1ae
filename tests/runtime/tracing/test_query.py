"""The query API: listing, lookup by id prefix, span trees, tool statistics, export."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
from sqlmodel import select

from counterpoint.runtime.tracing import (
    AmbiguousRunError,
    RunRecord,
    SpanKind,
    SpanStatus,
    SQLiteTracer,
    TraceStore,
    UnknownRunError,
    query,
)

from ._events import WALL, ToolCall, run_events


@pytest.fixture
def store() -> Iterator[TraceStore]:
    """Runs: abc-1 and abc-2 (share a prefix), xyz (error), child of abc-1; known tool latencies."""
    with SQLiteTracer(":memory:", linger_s=0) as tracer:
        weather = tuple(
            ToolCall(f"w{i}", "get_weather", 0.1, 0.1 + 0.1 * (i + 1)) for i in range(10)
        )
        for run_id, wall, calls, status, parent in [
            ("abc-1", WALL + 1, weather, "ok", None),
            ("abc-2", WALL + 2, (ToolCall("t1", "get_time", 0.1, 0.2, ok=False),), "ok", None),
            ("xyz", WALL + 3, (ToolCall("t2", "get_time", 0.1, 0.4),), "error", None),
            ("child", WALL + 4, (), "ok", "abc-1"),
        ]:
            for e in run_events(
                run_id,
                name="kid" if parent else "main",
                wall_time=wall,
                calls=calls,
                status=status,
                parent_run_id=parent,
            ):
                tracer.emit(e)
        tracer.flush()
        yield tracer.store


def test_list_runs_newest_first_with_filters(store: TraceStore) -> None:
    assert [r.id for r in query.list_runs(store)] == ["child", "xyz", "abc-2", "abc-1"]
    assert [r.id for r in query.list_runs(store, limit=2)] == ["child", "xyz"]
    assert [r.id for r in query.list_runs(store, status="error")] == ["xyz"]
    assert [r.id for r in query.list_runs(store, name="kid")] == ["child"]
    assert [r.id for r in query.list_runs(store, parent_run_id="abc-1")] == ["child"]
    assert query.count_runs(store) == {"ok": 3, "error": 1}


def test_get_run_by_id_or_unique_prefix(store: TraceStore) -> None:
    assert query.get_run(store, "abc-1").id == "abc-1"
    assert query.get_run(store, "xy").id == "xyz"
    assert query.get_run(store, "ch").id == "child"
    with pytest.raises(AmbiguousRunError, match="abc-1") as info:
        query.get_run(store, "abc")
    assert "abc-2" in str(info.value)
    with pytest.raises(UnknownRunError, match="traces list"):
        query.get_run(store, "nope")
    with pytest.raises(UnknownRunError):
        query.get_run(store, "%")  # LIKE wildcards are taken literally
    with pytest.raises(UnknownRunError):
        query.get_run(store, "")


def test_prefix_lookup_takes_like_wildcards_literally(store: TraceStore) -> None:
    # "abc_" would match abc-1 and abc-2 (ambiguous) if "_" were a wildcard; "x_z" would be xyz
    for prefix in ("abc_", "x_z", "%", "%1", "ab%", "\\", "abc-1\\"):
        with pytest.raises(UnknownRunError):
            query.get_run(store, prefix)
    assert query.get_run(store, "abc-2").id == "abc-2"
    with store.session() as session:
        stmt = select(RunRecord.id).where(query.starts_with(RunRecord.id, "a_c"))
        assert session.exec(stmt).all() == []
        stmt = select(RunRecord.id).where(query.starts_with(RunRecord.id, "abc-"))
        assert sorted(session.exec(stmt).all()) == ["abc-1", "abc-2"]


def test_span_tree_nests_calls_under_generation(store: TraceStore) -> None:
    spans = query.spans_of(store, "abc-1")
    assert [s.start_s for s in spans] == sorted(s.start_s for s in spans)
    (root,) = query.span_tree(spans)
    assert root.span.kind == SpanKind.GENERATION and root.depth == 0
    kinds = sorted(c.span.kind for c in root.children)
    assert kinds == ["interrupt"] * 10 + ["tool_call"] * 10
    assert all(c.depth == 1 and not c.children for c in root.children)


def test_tool_stats(store: TraceStore) -> None:
    stats = {s.name: s for s in query.tool_stats(store)}
    weather = stats["get_weather"]
    durations = [0.1 * (i + 1) for i in range(10)]
    assert weather.count == 10 and weather.errors == 0 and weather.error_rate == 0.0
    assert weather.p50_s == pytest.approx(query.percentile(durations, 50)) == pytest.approx(0.55)
    assert weather.p95_s == pytest.approx(0.955)
    assert weather.mean_s == pytest.approx(0.55) and weather.max_s == pytest.approx(1.0)
    time_ = stats["get_time"]
    assert (time_.count, time_.errors, time_.error_rate) == (2, 1, 0.5)
    assert [s.name for s in query.tool_stats(store)] == ["get_weather", "get_time"]
    assert query.tool_stats(store, since=WALL + 2.5)[0].count == 1  # only xyz's call


def test_tool_stats_ignore_unfinished_calls() -> None:
    with SQLiteTracer(":memory:", linger_s=0) as tracer:
        tracer.span("r", SpanKind.TOOL_CALL, "slow", 0.0, None)
        tracer.span("r", SpanKind.TOOL_CALL, "slow", 0.0, 2.0, status=SpanStatus.UNFINISHED)
        tracer.span("r", SpanKind.TOOL_CALL, "slow", 0.0, 1.0)
        tracer.flush()
        (slow,) = query.tool_stats(tracer.store)
    assert slow.count == 1 and slow.max_s == 1.0


def test_percentile() -> None:
    assert math.isnan(query.percentile([], 50))
    assert query.percentile([3.0], 95) == 3.0
    assert query.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert query.percentile([1.0, 2.0], 100) == 2.0 and query.percentile([1.0, 2.0], 0) == 1.0


def test_export_run(store: TraceStore) -> None:
    data = json.loads(query.export_run(store, "xy").to_json())
    assert data["run"]["id"] == "xyz" and data["run"]["status"] == "error"
    assert list(data["run"])[:3] == ["id", "name", "model"]
    assert [s["kind"] for s in data["spans"]] == ["generation", "tool_call", "interrupt"]
    assert data["spans"][1]["attributes"]["gen_ai.tool.name"] == "get_time"
