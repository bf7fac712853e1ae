"""The tracer's writer: flush, close, back-pressure, concurrency, failures, direct spans, evals."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from counterpoint.core.events import Event, RunStarted, TokenEvent
from counterpoint.runtime.tracing import (
    CommitReport,
    EvalResultRecord,
    EvalRunRecord,
    NullTracer,
    SpanKind,
    SpanStatus,
    SQLiteTracer,
    Tracer,
    TracerClosedError,
    TraceStore,
    TraceWriteError,
    UnknownRunError,
    default_tracer,
    query,
)

from ._events import WALL, ToolCall, run_events


def _counts(store: TraceStore) -> tuple[int, int]:
    with store.connect() as conn:
        runs = conn.exec_driver_sql("SELECT count(*) FROM runs").scalar_one()
        spans = conn.exec_driver_sql("SELECT count(*) FROM spans").scalar_one()
    return runs, spans


def test_flush_commits_everything_emitted_so_far(tmp_path: Path) -> None:
    # a long linger: without flush cutting it short, nothing would be committed yet
    with SQLiteTracer(tmp_path / "t.db", linger_s=30.0) as tracer:
        events = run_events("r1")
        for e in events:
            tracer.emit(e)
        started = time.monotonic()
        tracer.flush()
        assert time.monotonic() - started < 20.0
        assert tracer.committed == len(events)
        assert tracer.spans_committed == 3  # generation, tool call, interrupt
        # a separate reader (another connection) sees it all
        with TraceStore(tmp_path / "t.db") as reader:
            assert _counts(reader) == (1, 3)
            assert query.get_run(reader, "r1").status == "ok"


def test_close_flushes_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    tracer = SQLiteTracer(path, linger_s=30.0)
    for e in run_events("r1"):
        tracer.emit(e)
    tracer.close()
    tracer.close()
    assert tracer.closed
    with TraceStore(path) as reader:
        assert _counts(reader) == (1, 3)
    with pytest.raises(TracerClosedError):
        tracer.emit(run_events("r2")[0])
    with pytest.raises(TracerClosedError):
        tracer.span("r1", SpanKind.KV_REUSE, "x", 0.0, 0.1)


def test_on_commit_reports_spans_and_runs() -> None:
    reports: list[CommitReport] = []
    with SQLiteTracer(":memory:", on_commit=reports.append, linger_s=0) as tracer:
        for e in run_events(
            "r1", calls=(ToolCall("c1", "f", 0.1, 0.2), ToolCall("c2", "g", 0.1, 0.3))
        ):
            tracer.emit(e)
        tracer.flush()
        span_ids = {s.id for s in query.spans_of(tracer.store, "r1")}
    assert reports and reports[-1].total == tracer.committed
    assert sum(r.items for r in reports) == tracer.committed
    reported = [i for r in reports for i in r.span_ids]
    assert set(reported) == span_ids and len(span_ids) == 5
    assert [i for r in reports for i in r.run_ids] == ["r1"]


def test_a_full_queue_blocks_the_producer_and_loses_nothing() -> None:
    store = TraceStore(":memory:")
    tracer = SQLiteTracer(store=store, max_queue=10, max_batch=5, linger_s=0)
    calls = tuple(ToolCall(f"c{i}", "f", 0.1, 0.2) for i in range(50))
    events = run_events("r1", tokens=200, calls=calls)
    produced = threading.Event()

    def produce() -> None:
        for e in events:
            tracer.emit(e)
        for i in range(100):
            tracer.span("r1", SpanKind.KV_REUSE, f"kv{i}", 0.0, 0.1)
        produced.set()

    with store.lock:  # the writer cannot commit while we hold the in-memory store's lock
        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(0.5)
        assert not produced.is_set()  # blocked on the full queue, not dropping
        assert len(tracer._writer._queue) == 10
    producer.join(timeout=60)
    assert produced.is_set()
    tracer.flush()
    assert tracer.committed == len(events) + 100 and tracer.failed == 0
    gen = query.spans_of(store, "r1", kind=SpanKind.GENERATION)[0]
    assert gen.attributes["counterpoint.token_events"] == 200
    assert len(query.spans_of(store, "r1", kind=SpanKind.KV_REUSE)) == 100
    assert len(query.spans_of(store, "r1", kind=SpanKind.TOOL_CALL)) == 50
    tracer.close()
    store.close()


async def test_many_concurrent_producers_lose_nothing(tmp_path: Path) -> None:
    """25 asyncio runs interleaving on the loop and 8 threads of 5 runs each, one tracer."""
    tracer = SQLiteTracer(tmp_path / "t.db", max_queue=500)
    task_runs = [f"task-{i}" for i in range(25)]
    thread_runs = [[f"thread-{t}-{i}" for i in range(5)] for t in range(8)]

    def calls(i: int) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(f"c{k}", f"tool{k % 3}", 0.05 + k * 0.01, 0.3 + k * 0.02)
            for k in range(i % 4 + 1)
        )

    async def run_task(i: int, run_id: str) -> None:
        for n, e in enumerate(run_events(run_id, tokens=30, calls=calls(i))):
            tracer.emit(e)
            if n % 3 == 0:
                await asyncio.sleep(0)

    def run_thread(t: int, run_ids: list[str]) -> None:
        for i, run_id in enumerate(run_ids):
            for e in run_events(run_id, tokens=30, calls=calls(t + i)):
                tracer.emit(e)

    threads = [
        threading.Thread(target=run_thread, args=(t, ids)) for t, ids in enumerate(thread_runs)
    ]
    for th in threads:
        th.start()
    await asyncio.gather(*(run_task(i, r) for i, r in enumerate(task_runs)))
    for th in threads:
        await asyncio.to_thread(th.join)
    await tracer.aflush()

    expected_events = sum(
        len(run_events(r, tokens=30, calls=calls(i))) for i, r in enumerate(task_runs)
    )
    expected_events += sum(
        len(run_events(r, tokens=30, calls=calls(t + i)))
        for t, ids in enumerate(thread_runs)
        for i, r in enumerate(ids)
    )
    assert tracer.committed == expected_events and tracer.failed == 0
    store = tracer.store
    all_runs = task_runs + [r for ids in thread_runs for r in ids]
    assert len(query.list_runs(store, limit=1000, status="ok")) == len(all_runs) == 65
    for i, r in enumerate(task_runs):
        spans = query.spans_of(store, r)
        n_calls = len(calls(i))
        assert sorted(s.kind for s in spans).count("tool_call") == n_calls
        assert len(spans) == 1 + 2 * n_calls
        assert all(s.status == SpanStatus.OK for s in spans)
    tracer.close()


def test_a_failed_batch_is_reported_by_flush_and_the_writer_goes_on() -> None:
    store = TraceStore(":memory:")
    tracer = SQLiteTracer(store=store, linger_s=0)
    with store.connect() as conn, conn.begin():
        conn.exec_driver_sql("ALTER TABLE spans RENAME TO spans_gone")
    for e in run_events("r1"):
        tracer.emit(e)
    with pytest.raises(TraceWriteError, match="could not be written"):
        tracer.flush()
    assert tracer.failed > 0
    tracer.flush()  # the error was reported once
    with store.connect() as conn, conn.begin():
        conn.exec_driver_sql("ALTER TABLE spans_gone RENAME TO spans")
    for e in run_events("r2"):
        tracer.emit(e)
    tracer.flush()
    assert query.get_run(store, "r2").status == "ok"
    assert len(query.spans_of(store, "r2")) == 3
    tracer.close()
    store.close()


def test_start_span_times_a_block_and_records_errors() -> None:
    with SQLiteTracer(":memory:", linger_s=0) as tracer:
        tracer.emit(
            RunStarted(
                run_id="wf",
                t=0.0,
                name="flow",
                model="",
                mode="workflow",
                prompt="",
                wall_time=time.time(),
            )
        )
        with tracer.start_span(
            "wf", SpanKind.WORKFLOW_TASK, "plan", attributes={"task": "a"}
        ) as span:
            time.sleep(0.05)
            span.set_attribute("counterpoint.task.result", "fine")
        with pytest.raises(ValueError), tracer.start_span("wf", SpanKind.WORKFLOW_TASK, "fail"):
            raise ValueError("no")
        with pytest.raises(UnknownRunError):
            tracer.start_span("never-started", SpanKind.KV_REUSE, "x").__enter__()
        tracer.flush()
        spans = {s.name: s for s in query.spans_of(tracer.store, "wf")}
    plan, fail = spans["plan"], spans["fail"]
    assert plan.id == span.id and plan.status == SpanStatus.OK
    assert plan.duration_s is not None and plan.duration_s >= 0.04
    assert plan.attributes == {"task": "a", "counterpoint.task.result": "fine"}
    assert fail.status == SpanStatus.ERROR and fail.attributes["error.type"] == "ValueError"
    assert fail.start_s >= plan.end_s  # type: ignore[operator]


def test_eval_records_round_trip() -> None:
    with SQLiteTracer(":memory:", linger_s=0) as tracer:
        tracer.record_eval_run(
            EvalRunRecord(
                id="ev1",
                name="dev",
                dataset="bfcl",
                model="smol",
                categories=["simple_python"],
                modes=["sync", "async"],
                started_at=WALL,
            )
        )
        for i in range(6):
            for mode in ("sync", "async"):
                tracer.record_eval_result(
                    EvalResultRecord(
                        eval_run_id="ev1",
                        case_id=f"simple_{i}",
                        category="simple_python",
                        mode=mode,
                        model="smol",
                        correct=(i % 3 != 0),
                        failure_reason=None if i % 3 else "wrong name",
                        calls=[{"name": "f", "arguments": {"x": i}}],
                        latency_s=1.0 + i if mode == "sync" else 0.5 + i,
                        output_tokens=10,
                        run_id=f"run-{i}-{mode}",
                    )
                )
        tracer.record_eval_run(
            EvalRunRecord(
                id="ev1",
                name="dev",
                dataset="bfcl",
                model="smol",
                categories=["simple_python"],
                modes=["sync", "async"],
                started_at=WALL,
                ended_at=WALL + 60,
                status="done",
                n_cases=12,
            )
        )
        tracer.flush()
        store = tracer.store
        (run,) = query.list_eval_runs(store)
        assert (run.status, run.n_cases, run.modes) == ("done", 12, ["sync", "async"])
        assert query.get_eval_run(store, "ev1").ended_at == WALL + 60
        results = query.eval_results(store, "ev1", mode="async")
        assert [r.case_id for r in results] == [f"simple_{i}" for i in range(6)]
        assert (
            results[0].calls == [{"name": "f", "arguments": {"x": 0}}] and results[0].created_at > 0
        )
        assert len(query.eval_results(store, "ev1", correct=False)) == 4
        summary = {s.mode: s for s in query.eval_summary(store, "ev1")}
        assert summary["sync"].accuracy == pytest.approx(4 / 6)
        assert summary["async"].latency_p50_s == pytest.approx(3.0)
        assert summary["sync"].latency_mean_s == pytest.approx(3.5)
        with pytest.raises(UnknownRunError):
            query.get_eval_run(store, "nope")


def test_null_tracer_and_protocol() -> None:
    null = NullTracer()
    assert isinstance(null, Tracer)
    null.emit(TokenEvent(run_id="r", t=0.0, text="x", token_id=1, index=0))
    with null.start_span("r", SpanKind.TRAP, "x") as span:
        span.set_status(SpanStatus.ERROR)
    assert len(null.span("r", SpanKind.TRAP, "x", 0.0, 1.0)) == 24
    null.flush()
    null.close()
    with SQLiteTracer(":memory:") as tracer:
        assert isinstance(tracer, Tracer)


def test_default_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERPOINT_TRACES_DB", str(tmp_path / "env.db"))
    events: list[Event] = run_events("r1")
    with SQLiteTracer() as tracer:
        assert tracer.path == str(tmp_path / "env.db")
        for e in events:
            tracer.emit(e)
    assert (tmp_path / "env.db").exists()


def test_default_tracer_is_shared_and_replaced_once_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from counterpoint.runtime.tracing import tracer as tracer_module

    monkeypatch.setenv("COUNTERPOINT_TRACES_DB", str(tmp_path / "default.db"))
    monkeypatch.setattr(tracer_module, "_default", None)
    first = default_tracer()
    try:
        assert default_tracer() is first and first.path == str(tmp_path / "default.db")
        first.close()
        second = default_tracer()
        assert second is not first and not second.closed
        second.close()
    finally:
        first.close()
