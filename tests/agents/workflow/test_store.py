"""The workflow checkpoint store: round trips, atomic commits, lookups, the cache, the v1 -> v2
upgrade, and commits against a database another connection keeps locked (real SQLite files)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.outcome import TaskOutcome
from counterpoint.agents.workflow.store import StoredWorkflow, WorkflowStore, cache_key
from counterpoint.runtime.tracing import _migrations
from counterpoint.runtime.tracing.store import TraceStore

GRAPH: list[dict[str, Any]] = [
    {"id": "a", "objective": "do a", "agent": "w", "needs": []},
    {"id": "b", "objective": "do b", "agent": "w", "needs": ["a"], "output_format": "json"},
]


def _new(store: WorkflowStore, run_id: str = "run-0001", **kw: Any) -> None:
    store.create_run(
        run_id,
        name=kw.pop("name", "demo"),
        goal=kw.pop("goal", "the goal"),
        graph=kw.pop("graph", GRAPH),
        version=kw.pop("version", 0),
        **kw,
    )


def _ok(task_id: str, result: str, attempts: int = 1) -> TaskOutcome:
    return TaskOutcome(task_id, "ok", result, None, attempts, 0.5, 1.5, f"agent-{task_id}")


def _raw_row(path: Path, run_id: str, task_id: str) -> tuple[Any, ...] | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT status, result, error, attempts FROM workflow_tasks"
            " WHERE run_id = ? AND task_id = ?",
            (run_id, task_id),
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else tuple(row)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "traces.db"


def test_a_run_round_trips(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store, source="flows/demo.yaml", config={"spec": {"agents": {"w": {"model": "x"}}}})
    with WorkflowStore(db) as store:
        stored = store.load_run("run-0001")
    assert isinstance(stored, StoredWorkflow)
    assert (stored.run_id, stored.name, stored.goal) == ("run-0001", "demo", "the goal")
    assert stored.status == "running" and stored.version == 0 and stored.resumes == 0
    assert stored.graph == GRAPH
    assert stored.source == "flows/demo.yaml"
    assert stored.config == {"spec": {"agents": {"w": {"model": "x"}}}}
    assert stored.outcomes == {} and stored.ended_at is None
    assert stored.started_at > 0


def test_graph_to_dicts_round_trips_and_rebuilds(db: Path) -> None:
    graph = Graph(
        [Task("a", "do a", "w"), Task("b", "do b", "w", needs=("a",), timeout_s=2.5)],
        agents={"w": object()},  # type: ignore[dict-item]
    )
    with WorkflowStore(db) as store:
        _new(store, graph=graph.to_dicts(), version=graph.version)
        stored = store.load_run("run-0001")
    assert stored.graph == graph.to_dicts()
    rebuilt = [Task(**{**d, "needs": tuple(d["needs"])}) for d in stored.graph]
    assert [t.id for t in rebuilt] == ["a", "b"] and rebuilt[1].timeout_s == 2.5


def test_task_progress_and_outcomes_round_trip(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store)
        store.task_started("run-0001", "a", attempt=1, started=0.25, agent_run_id="ag1")
        running = store.load_run("run-0001").outcomes["a"]
        assert (running.status, running.result, running.attempts) == ("running", None, 1)
        assert (running.started, running.agent_run_id) == (0.25, "ag1")
        store.commit("run-0001", _ok("a", "result of a"), graph_version=3)
        store.task_started("run-0001", "b", attempt=2, started=2.0, agent_run_id="ag2")
        failed = TaskOutcome("b", "failed", None, "boom", 2, 2.0, 3.0, "ag2")
        store.commit("run-0001", failed)
        skipped = TaskOutcome("c", "skipped", None, "a task it needs failed", 0, None, 3.0)
        store.commit("run-0001", skipped)
    with WorkflowStore(db) as store:
        stored = store.load_run("run-0001")
    assert stored.outcomes["a"] == _ok("a", "result of a")
    assert stored.outcomes["b"] == failed
    assert stored.outcomes["c"] == skipped
    assert set(stored.finished()) == {"a"}
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT graph_version FROM workflow_tasks WHERE task_id = 'a'"
    ).fetchone() == (3,)
    conn.close()


def test_a_restarted_task_loses_its_old_error(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store)
        store.commit("run-0001", TaskOutcome("a", "failed", None, "boom", 1, 0.0, 1.0))
        store.task_started("run-0001", "a", attempt=1, started=5.0, agent_run_id=None)
        again = store.load_run("run-0001").outcomes["a"]
    assert (again.status, again.error, again.ended) == ("running", None, None)


def test_cached_outcomes_count_as_finished(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store)
        store.commit("run-0001", TaskOutcome("a", "cached", "old", None, 0, 1.0, 1.0))
        store.commit("run-0001", TaskOutcome("b", "cancelled", None, "stopped", 1, 1.0, 2.0))
        finished = store.load_run("run-0001").finished()
    assert list(finished) == ["a"] and finished["a"].result == "old"


def test_status_resume_and_graph_versions(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store)
        store.set_status("run-0001", "failed", ended_at=123.0)
        stored = store.load_run("run-0001")
        assert (stored.status, stored.ended_at) == ("failed", 123.0)
        store.mark_resumed("run-0001")
        store.mark_resumed("run-0001")
        stored = store.load_run("run-0001")
        assert (stored.status, stored.ended_at, stored.resumes) == ("running", None, 2)
        patched = [*GRAPH, {"id": "c", "objective": "do c", "agent": "w", "needs": ["b"]}]
        store.save_graph("run-0001", patched, 2)
        store.save_graph("run-0001", GRAPH, 1)  # a late, older patch does not roll it back
        stored = store.load_run("run-0001")
        assert (stored.version, [t["id"] for t in stored.graph]) == (2, ["a", "b", "c"])
        with pytest.raises(WorkflowError, match="status is one of"):
            store.set_status("run-0001", "done")


def test_unknown_ids_say_what_to_do(db: Path) -> None:
    with WorkflowStore(db) as store:
        with pytest.raises(WorkflowError) as info:
            store.load_run("nope-nope")
        message = str(info.value)
        assert "no workflow run 'nope-nope'" in message and str(db) in message
        assert "counterpoint workflow list" in message
        with pytest.raises(WorkflowError, match="create_run first"):
            store.commit("nope-nope", _ok("a", "x"))
        with pytest.raises(WorkflowError, match="no workflow run 'nope'"):
            store.mark_resumed("nope")
        _new(store)
        with pytest.raises(WorkflowError, match="already in"):
            _new(store)


def test_prefix_lookup(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store, "abcdef123456")
        _new(store, "abcdef999999")
        _new(store, "xyz_%_000111")
        assert store.load_run("abcdef1").run_id == "abcdef123456"
        assert store.load_run("abcdef123456").run_id == "abcdef123456"
        with pytest.raises(WorkflowError, match="several") as info:
            store.load_run("abcdef")
        assert "abcdef123456" in str(info.value) and "abcdef999999" in str(info.value)
        with pytest.raises(WorkflowError, match="at least 6 characters"):
            store.load_run("abcde")  # too short to be a prefix
        with pytest.raises(WorkflowError, match="no workflow run"):
            store.load_run("ABCDEF1")  # prefixes are case-sensitive
        with pytest.raises(WorkflowError, match="no workflow run"):
            store.load_run("xyz_%_0001119")
        assert store.load_run("xyz_%_").run_id == "xyz_%_000111"  # no LIKE wildcards
        with pytest.raises(WorkflowError, match="no workflow run"):
            store.load_run("xyz___")


def test_list_runs_newest_first(db: Path) -> None:
    with WorkflowStore(db) as store:
        for i in range(3):
            _new(store, f"run-{i:04d}", name=f"n{i}")
            store.set_status(f"run-{i:04d}", "ok", ended_at=float(i))
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("UPDATE workflow_runs SET started_at = 100 + CAST(substr(id, 5) AS INT)")
        conn.close()
        runs = store.list_runs()
        assert [r.id for r in runs] == ["run-0002", "run-0001", "run-0000"]
        assert runs[0].name == "n2" and runs[0].status == "ok" and runs[0].graph == GRAPH
        assert [r.id for r in store.list_runs(limit=1)] == ["run-0002"]


def test_commit_is_atomic_a_failure_mid_way_leaves_the_previous_row(db: Path) -> None:
    traces = TraceStore(db)
    store = WorkflowStore(traces)
    _new(store)
    store.commit("run-0001", TaskOutcome("a", "failed", None, "first try", 1, 0.0, 1.0))

    class Crash(Exception):
        pass

    def crash_after_write(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO WORKFLOW_TASKS"):
            raise Crash  # the row was written inside the transaction; COMMIT never happens

    event.listen(traces.engine, "after_cursor_execute", crash_after_write)
    with pytest.raises(Crash):
        store.commit("run-0001", _ok("a", "the result", attempts=2))
    event.remove(traces.engine, "after_cursor_execute", crash_after_write)

    assert _raw_row(db, "run-0001", "a") == ("failed", None, "first try", 1)
    assert store.load_run("run-0001").finished() == {}
    store.commit("run-0001", _ok("a", "the result", attempts=2))
    assert _raw_row(db, "run-0001", "a") == ("ok", "the result", None, 2)
    store.close()
    traces.close()


def test_a_committed_outcome_is_visible_to_another_process_connection(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store)
        store.commit("run-0001", _ok("a", "r"))
        # read through a connection of its own, without closing the store first
        assert _raw_row(db, "run-0001", "a") == ("ok", "r", None, 1)


def test_cache(db: Path) -> None:
    key = cache_key("summarise", "w", None, {"b": "B", "a": "A"})
    assert key == cache_key("summarise", "w", None, {"a": "A", "b": "B"})
    assert len(key) == 64 and int(key, 16) >= 0
    others = {
        cache_key("summarise!", "w", None, {"a": "A", "b": "B"}),
        cache_key("summarise", "v", None, {"a": "A", "b": "B"}),
        cache_key("summarise", "w", "json", {"a": "A", "b": "B"}),
        cache_key("summarise", "w", None, {"a": "A", "b": "C"}),
        cache_key("summarise", "w", None, {"a": "A", "c": "B"}),
        cache_key("summarise", "w", None, {"a": "A"}),
    }
    assert key not in others and len(others) == 6
    with WorkflowStore(db) as store:
        assert store.cache_get(key) is None
        store.cache_put(key, "the summary", task_id="t", run_id="r1")
    with WorkflowStore(db) as store:
        assert store.cache_get(key) == "the summary"
        store.cache_put(key, "a newer summary", task_id="t", run_id="r2")
        assert store.cache_get(key) == "a newer summary"


def test_memory_store_is_shared_between_threads() -> None:
    with WorkflowStore(":memory:") as store:
        _new(store)
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                tid = f"t{i}"
                store.task_started("run-0001", tid, attempt=1, started=0.0, agent_run_id=None)
                store.commit("run-0001", _ok(tid, f"r{i}"))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        finished = store.load_run("run-0001").finished()
        assert {t: o.result for t, o in finished.items()} == {f"t{i}": f"r{i}" for i in range(8)}


def test_threads_commit_to_one_file(db: Path) -> None:
    with WorkflowStore(db) as store:
        _new(store)
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for j in range(5):
                    store.commit("run-0001", _ok(f"t{i}-{j}", f"r{i}-{j}"))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.load_run("run-0001").finished()) == 20


def test_a_v1_file_is_upgraded_to_v2_on_open(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # what counterpoint wrote before the workflow tables
        m.setattr(_migrations, "MIGRATIONS", _migrations.MIGRATIONS[:1])
        with TraceStore(db) as old:
            assert old.schema_version == 1
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO runs (id, name, model, mode, status, prompt, started_at, input_tokens, "
            "output_tokens, calls, interrupts, attributes) VALUES "
            "('r1', 'n', '', '', 'ok', '', 1.0, 0, 0, 0, 0, '{}')"
        )
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "workflow_runs" not in tables

    with WorkflowStore(db) as store:
        assert store.traces.schema_version == 2
        _new(store)
        store.commit("run-0001", _ok("a", "r"))
        assert store.load_run("run-0001").finished()["a"].result == "r"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT id FROM runs").fetchall() == [("r1",)]
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    conn.close()
    assert versions == [1, 2]


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_commit_waits_for_a_locked_database_then_succeeds(db: Path) -> None:
    traces = TraceStore(db, busy_timeout_s=0.05)  # short waits: the store's retries do the rest
    store = WorkflowStore(traces, commit_timeout_s=60.0)
    _new(store)
    store.commit("run-0001", TaskOutcome("a", "failed", None, "first", 1, 0.0, 1.0))
    other = _hold_write_lock(db)
    done = threading.Event()
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            store.commit("run-0001", _ok("a", "after the wait", attempts=2))
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=commit)
    worker.start()
    try:
        # the lock is held: the commit cannot have finished, however long we look
        assert not done.wait(0.5)
        assert _raw_row(db, "run-0001", "a") == ("failed", None, "first", 1)
    finally:
        other.rollback()
        other.close()
    worker.join(timeout=60)
    assert not worker.is_alive() and errors == []
    assert _raw_row(db, "run-0001", "a") == ("ok", "after the wait", None, 2)
    store.close()
    traces.close()


def test_commit_gives_up_with_a_workflow_error_when_the_lock_is_never_released(
    db: Path,
) -> None:
    traces = TraceStore(db, busy_timeout_s=0.05)
    store = WorkflowStore(traces, commit_timeout_s=0.3)
    _new(store)
    store.commit("run-0001", TaskOutcome("a", "failed", None, "first", 1, 0.0, 1.0))
    other = _hold_write_lock(db)
    try:
        with pytest.raises(WorkflowError) as info:
            store.commit("run-0001", _ok("a", "never written", attempts=2))
    finally:
        other.rollback()
        other.close()
    message = str(info.value)
    assert str(db) in message and "'a'" in message and "locked" in message
    assert "commit_timeout_s" in message
    assert info.value.ids == ("a",)
    assert isinstance(info.value.__cause__, Exception)
    assert not isinstance(info.value, sqlite3.Error)
    assert _raw_row(db, "run-0001", "a") == ("failed", None, "first", 1)
    store.commit("run-0001", _ok("a", "now", attempts=2))  # usable again once released
    assert _raw_row(db, "run-0001", "a") == ("ok", "now", None, 2)
    store.close()
    traces.close()


def test_a_store_passed_in_stays_open_and_an_owned_one_closes(db: Path) -> None:
    traces = TraceStore(db)
    WorkflowStore(traces).close()
    with traces.connect() as conn:  # still usable
        conn.exec_driver_sql("SELECT 1").close()
    traces.close()
    own = WorkflowStore(db)
    own.close()
    own.close()  # idempotent
    with pytest.raises(WorkflowError, match="closed"):
        own.load_run("run-0001")


def test_a_bad_file_is_a_workflow_error(tmp_path: Path) -> None:
    bad = tmp_path / "not.db"
    bad.write_text("hello\n" * 50)
    with pytest.raises(WorkflowError, match="not an SQLite database"):
        WorkflowStore(bad)


def test_unserialisable_config_is_refused_clearly(db: Path) -> None:
    with WorkflowStore(db) as store, pytest.raises(WorkflowError, match="JSON-serialisable"):
        _new(store, config={"agent": object()})


def test_started_at_is_unix_time(db: Path) -> None:
    before = time.time()
    with WorkflowStore(db) as store:
        _new(store)
        started = store.load_run("run-0001").started_at
    assert before <= started <= time.time()
