"""The writer under hostile conditions: text SQLite cannot encode, values it refuses, a database
locked by others (one connection, many processes), and processes killed mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from counterpoint.core.events import (
    CallFinished,
    CallStarted,
    Done,
    Event,
    RunStarted,
    TokenEvent,
    Usage,
)
from counterpoint.runtime.tracing import (
    CommitReport,
    RunStatus,
    SpanKind,
    SpanStatus,
    SQLiteTracer,
    TraceStore,
    TraceWriteError,
    query,
)
from counterpoint.runtime.tracing._writer import safe_text

from ._events import run_events

ROOT = Path(__file__).resolve().parents[3]
BAD = "\udcff"  # what os.listdir gives for the byte 0xff in a file name
FFFD = "\ufffd"


def _env() -> dict[str, str]:
    """The environment of a child process: this checkout first on its path."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _statuses(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT id, status FROM runs").fetchall())
    finally:
        conn.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- 1. text SQLite cannot encode --------------------------------------------------------------


def test_safe_text_replaces_lone_surrogates_only() -> None:
    assert safe_text("plain") == "plain"
    assert safe_text("café") == "café"
    assert safe_text(f"a{BAD}b") == f"a{FFFD}b"
    assert safe_text("\ud800") == FFFD
    assert safe_text("x\ud83d\ude00y") == "x\U0001f600y"  # a pair is the character it encodes
    assert safe_text(f"{BAD}{BAD}\ud83d") == FFFD * 3


def _poisoned(events: list[Event]) -> list[Event]:
    """The events of a run with lone surrogates in its prompt, arguments (a key too), a token
    and a tool result."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, RunStarted):
            e = e.model_copy(update={"prompt": f"summarise {BAD}.txt"})
        elif isinstance(e, TokenEvent):
            e = e.model_copy(update={"text": BAD})
        elif isinstance(e, CallStarted):
            e = e.model_copy(update={"arguments": {"path": f"dir/{BAD}", f"k{BAD}": [BAD]}})
        elif isinstance(e, CallFinished):
            e = e.model_copy(update={"result": f"ls: cannot open 'a{BAD}b'"})
        elif isinstance(e, Done):
            e = e.model_copy(update={"text": f"the file is {BAD}.txt"})
        out.append(e)
    return out


def test_lone_surrogates_cost_no_run_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    tracer = SQLiteTracer(db, linger_s=0.02)

    async def run(run_id: str, poisoned: bool) -> None:
        events = run_events(run_id)
        for e in _poisoned(events) if poisoned else events:
            tracer.emit(e)
            await asyncio.sleep(0)  # interleave the runs, as concurrent sessions do

    async def main() -> None:
        await asyncio.gather(*(run(f"r{i}", poisoned=i == 7) for i in range(31)))

    asyncio.run(main())
    tracer.span("r7", SpanKind.KV_REUSE, f"seg {BAD}", 0.0, 0.01, attributes={BAD: BAD})
    tracer.flush()
    tracer.close()
    assert tracer.failed == 0

    with TraceStore(db) as store:
        runs = {r.id: r for r in query.list_runs(store, limit=100)}
        assert len(runs) == 31
        assert {r.status for r in runs.values()} == {"ok"}
        for i in range(31):
            if i != 7:
                assert runs[f"r{i}"].output == f"answer of r{i}"
        bad = runs["r7"]
        assert bad.prompt == f"summarise {FFFD}.txt"
        assert bad.output == f"the file is {FFFD}.txt"
        spans = query.spans_of(store, "r7")
        call = next(s for s in spans if s.kind == SpanKind.TOOL_CALL)
        assert call.status == SpanStatus.OK
        assert call.attributes["gen_ai.tool.call.result"] == f"ls: cannot open 'a{FFFD}b'"
        assert call.attributes["gen_ai.tool.call.arguments"] == {
            "path": f"dir/{FFFD}",
            f"k{FFFD}": [FFFD],
        }
        kv = next(s for s in spans if s.kind == SpanKind.KV_REUSE)
        assert kv.name == f"seg {FFFD}" and kv.attributes == {FFFD: FFFD}


def test_a_row_sqlite_refuses_is_left_out_alone(tmp_path: Path) -> None:
    reports: list[CommitReport] = []
    tracer = SQLiteTracer(tmp_path / "t.db", linger_s=30.0, on_commit=reports.append)
    for i in range(5):
        events = run_events(f"r{i}")
        if i == 2:  # a token count past SQLite's 64-bit integers: this run's row cannot be written
            done = events[-1]
            assert isinstance(done, Done)
            events[-1] = done.model_copy(update={"usage": Usage(input_tokens=2**64)})
        for e in events:
            tracer.emit(e)
    with pytest.raises(TraceWriteError, match="too large"):
        tracer.flush()
    assert tracer.failed == 1  # that row, nothing else
    tracer.close()
    finished = {run for r in reports for run in r.run_ids}
    assert finished == {"r0", "r1", "r3", "r4"}  # a row left out is never reported committed
    statuses = _statuses(tmp_path / "t.db")
    assert {k: v for k, v in statuses.items() if k != "r2"} == dict.fromkeys(
        ["r0", "r1", "r3", "r4"], "ok"
    )


# -- 2. a locked database ----------------------------------------------------------------------


@pytest.fixture
def locker(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to ``tmp_path / "t.db"``, for holding its lock."""
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None, timeout=30.0)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_batches_wait_for_a_locked_database(tmp_path: Path, locker: sqlite3.Connection) -> None:
    tracer = SQLiteTracer(tmp_path / "t.db", busy_timeout_s=0.05, linger_s=0.0)
    locker.execute("BEGIN EXCLUSIVE")  # held far longer than the tracer's busy timeout
    for i in range(5):
        for e in run_events(f"r{i}"):
            tracer.emit(e)
    _wait_for(lambda: tracer.retries >= 3, "the writer to find the file locked")
    with pytest.raises(TraceWriteError, match="did not commit within"):
        tracer.flush(timeout=0.2)  # a flush with a timeout still says so
    locker.execute("COMMIT")
    tracer.flush()
    assert tracer.failed == 0
    tracer.close()
    assert _statuses(tmp_path / "t.db") == {f"r{i}": "ok" for i in range(5)}


def test_close_gives_up_on_a_lock_after_close_timeout(
    tmp_path: Path, locker: sqlite3.Connection
) -> None:
    tracer = SQLiteTracer(tmp_path / "t.db", busy_timeout_s=0.05, close_timeout_s=0.3, linger_s=0.0)
    locker.execute("BEGIN EXCLUSIVE")
    for e in run_events("r1"):
        tracer.emit(e)
    _wait_for(lambda: tracer.retries >= 1, "the writer to find the file locked")
    with pytest.raises(TraceWriteError, match=r"close_timeout_s=0\.3"):
        tracer.close()
    assert tracer.failed == len(run_events("r1"))
    locker.execute("COMMIT")
    assert _statuses(tmp_path / "t.db") == {}


MANY = textwrap.dedent(
    """
    import sys
    from counterpoint.runtime.tracing import SQLiteTracer
    from tests.runtime.tracing._events import run_events

    db, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # a busy timeout far shorter than the others' transactions: most tries find the file locked
    tracer = SQLiteTracer(db, busy_timeout_s=0.01, linger_s=0.002)
    for i in range(n):
        for e in run_events(f"{tag}-{i}", tokens=5):
            tracer.emit(e)
        if i % 10 == 0:
            tracer.flush()
    tracer.close()
    print("failed", tracer.failed, "retries", tracer.retries)
    """
)


def test_many_processes_lose_nothing(tmp_path: Path) -> None:
    db, processes, runs = tmp_path / "shared.db", 8, 50
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MANY, str(db), f"p{k}", str(runs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for k in range(processes)
    ]
    outputs = []
    try:
        for child in children:
            outputs.append(child.communicate(timeout=120))
    finally:
        for child in children:
            child.kill()
            child.wait()
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-2000:]
        assert out.startswith("failed 0 "), out + err[-2000:]
    statuses = _statuses(db)
    assert len(statuses) == processes * runs
    assert set(statuses.values()) == {"ok"}


# -- 3. processes killed mid-run ---------------------------------------------------------------

KILLED = textwrap.dedent(
    """
    import sys, time
    from counterpoint.core.events import CallStarted, RunStarted, TokenEvent
    from counterpoint.runtime.tracing import SQLiteTracer

    tracer = SQLiteTracer(sys.argv[1], linger_s=0.0)
    for run in ("killed-1", "killed-2"):
        tracer.emit(RunStarted(run_id=run, t=0.0, name="victim", model="m", mode="async",
                               prompt="p", wall_time=time.time()))
        tracer.emit(TokenEvent(run_id=run, t=0.1, text="x", token_id=1, index=0))
        tracer.emit(CallStarted(run_id=run, t=0.2, call_id="c1", name="f", arguments={}))
    tracer.flush()
    print("READY", flush=True)
    time.sleep(600)  # until killed
    """
)


def _insert_running(db: Path, run_id: str, attributes: dict[str, object]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO runs (id, name, model, mode, status, prompt, started_at, input_tokens,"
            " output_tokens, calls, interrupts, attributes)"
            " VALUES (?, 'n', '', '', 'running', '', ?, 0, 0, 0, 0, ?)",
            (run_id, time.time(), json.dumps(attributes)),
        )
    conn.close()


def test_runs_of_a_killed_process_are_marked_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    # a run of this (live) process, left running on purpose
    live = SQLiteTracer(db, linger_s=0.0)
    live.emit(
        RunStarted(
            run_id="live", t=0.0, name="n", model="m", mode="async", prompt="", wall_time=1.0
        )
    )
    live.flush()
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "READY", child.stderr.read() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)  # reaped: its pid no longer exists
    dead = child.pid

    # runs that are not this host's to judge, even though their pid is dead here
    _insert_running(db, "elsewhere", {"counterpoint.pid": dead, "counterpoint.host": "x.invalid"})
    _insert_running(
        db,
        "other-namespace",
        {
            "counterpoint.pid": dead,
            "counterpoint.host": socket.gethostname(),
            "counterpoint.pid_ns": "pid:[1]",
        },
    )
    _insert_running(db, "no-owner", {})
    assert _statuses(db)["killed-1"] == "running"

    with TraceStore(db) as store:  # opening the file marks the dead process's runs
        assert sorted(store.recovered) == ["killed-1", "killed-2"]
        for run_id in ("killed-1", "killed-2"):
            run = query.get_run(store, run_id)
            assert run.status == RunStatus.INTERRUPTED
            assert run.attributes["counterpoint.pid"] == dead
            assert run.duration_s == pytest.approx(0.2)
            spans = query.spans_of(store, run_id)
            assert {s.kind for s in spans} == {SpanKind.GENERATION, SpanKind.TOOL_CALL}
            for span in spans:
                assert span.status == SpanStatus.UNFINISHED
                assert span.end_s == pytest.approx(0.2)
    statuses = _statuses(db)
    for run_id in ("live", "elsewhere", "other-namespace", "no-owner"):
        assert statuses[run_id] == "running", run_id
    live.close()  # closing the live tracer still ends its own run as usual
    assert _statuses(db)["live"] == "incomplete"
    with TraceStore(db) as store:  # nothing left to mark
        assert store.recovered == []
