"""A span reported committed survives the writing process being killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from counterpoint.runtime.tracing import TraceStore, query

CHILD = textwrap.dedent(
    """
    import sys, time
    from counterpoint.core.events import (
        CallFinished, CallStarted, Done, InterruptInjected, RunStarted, TokenEvent, Usage,
    )
    from counterpoint.runtime.tracing import SQLiteTracer

    def report(r):
        lines = [f"SPAN {i}" for i in r.span_ids] + [f"RUN {i}" for i in r.run_ids]
        if lines:
            sys.stdout.write("\\n".join(lines) + "\\n")
            sys.stdout.flush()

    tracer = SQLiteTracer(sys.argv[1], on_commit=report, linger_s=0.01)
    n = 0
    while True:  # runs until killed
        run = f"run-{n}"
        tracer.emit(RunStarted(run_id=run, t=0.0, name="crash", model="m", mode="async",
                               prompt="p", wall_time=time.time()))
        for k in range(3):
            tracer.emit(TokenEvent(run_id=run, t=0.01 * k, text="x", token_id=1, index=k))
            tracer.emit(CallStarted(run_id=run, t=0.01 * k, call_id=f"c{k}", name="f",
                                    arguments={"k": k}))
            tracer.emit(CallFinished(run_id=run, t=0.05 + k, call_id=f"c{k}", name="f", ok=True,
                                     result="1", started=0.01 * k, duration_s=0.05))
            tracer.emit(InterruptInjected(run_id=run, t=0.06 + k, call_ids=[f"c{k}"], text="i",
                                          tokens=1, duration_s=0.001))
        tracer.emit(Done(run_id=run, t=4.0, status="ok", text="done", usage=Usage(calls=3)))
        n += 1
        time.sleep(0.002)
    """
)


def test_committed_spans_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    spans: list[str] = []
    runs: list[str] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 120
        while len(spans) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            kind, _, ident = line.strip().partition(" ")
            (spans if kind == "SPAN" else runs).append(ident)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert len(spans) >= 300, child.stderr.read() if child.stderr else ""

    conn = sqlite3.connect(db)  # recovers from the WAL like any other reader
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    stored = dict(conn.execute("SELECT id, end_s FROM spans").fetchall())
    conn.close()
    missing = [s for s in spans if s not in stored]
    assert not missing, f"{len(missing)} of {len(spans)} reported spans are not in the file"
    assert all(stored[s] is not None for s in spans)  # committed complete, not just opened

    with TraceStore(db) as store:  # counterpoint opens it cleanly too
        for run_id in runs[:20]:
            run = query.get_run(store, run_id)
            assert run.status == "ok" and run.calls == 3
            assert len(query.spans_of(store, run_id)) == 7  # generation + 3 calls + 3 interrupts


@pytest.mark.parametrize("close", [False, True], ids=["atexit", "close"])
def test_events_are_committed_when_the_process_exits_normally(tmp_path: Path, close: bool) -> None:
    db = tmp_path / "exit.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        from counterpoint.core.events import RunStarted, TokenEvent
        from counterpoint.runtime.tracing import SQLiteTracer
        tracer = SQLiteTracer(sys.argv[1], linger_s=60)  # would hold events for a minute
        tracer.emit(RunStarted(run_id="r", t=0.0, name="n", model="m", mode="sync", prompt="",
                               wall_time=time.time()))
        for i in range(100):
            tracer.emit(TokenEvent(run_id="r", t=i / 100, text="x", token_id=1, index=i))
        if {close}:
            tracer.close()
        """
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script, str(db)], check=True, timeout=120, env=os.environ)
    assert time.monotonic() - started < 50  # the exit did not wait out the linger
    with TraceStore(db) as store:
        run = query.get_run(store, "r")
        # closing ends a run that never got its Done as incomplete; so does interpreter exit
        assert run.status == "incomplete"
        (gen,) = query.spans_of(store, "r")
        assert gen.attributes["counterpoint.token_events"] == 100
