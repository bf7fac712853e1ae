"""Reliability: fuzzed sessions, trace loss under contention, hostile bodies, silent servers.

1. Sessions fuzzed per second, and crashes: random transcripts (calls good and bad, traps, stray
   and model-written markers, unclosed blocks) cut into random tokens, in a random mode with random
   limits, on a scripted decoder and real tools. A crash is an exception out of ``Session.run``, a
   call left running, or a written call without exactly one ``call_finished`` (target 0 in 10,000).
2. Trace records lost: P processes × R runs each into one traces file at once (target 0 lost).
3. Worst-case time to refuse a 1 MB hostile call body, through the CML parser and ``parse_call``
   (target < 0.5 s).
4. Time to give up on a server that accepts the connection and never answers, with default
   settings (target <= 30 s).

``--quick`` runs 1,000 sessions, 5 × 40 runs. Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from counterpoint.core.events import BaseEvent, CallFinished, CallWritten
from counterpoint.protocol.callsyntax import CallSyntaxError, parse_call
from counterpoint.protocol.cml import CMLParser
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.backends.openai import OpenAIModel
from counterpoint.runtime.session import Limits, Session
from tests.runtime.test_session_fuzz import FRAGMENTS, TOOLS, _SplitModel

REPO = Path(__file__).resolve().parent.parent


def _transcript(rng: random.Random) -> list[list[str]]:
    turns = []
    for _ in range(rng.randint(1, 3)):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 10)))
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 16))))
        bounds = [0, *cuts, len(text)]
        turns.append([text[a:b] for a, b in itertools.pairwise(bounds) if b > a])
    return turns


async def _one(rng: random.Random) -> str | None:
    events: list[BaseEvent] = []
    session = Session(
        _SplitModel(_transcript(rng)),  # type: ignore[arg-type]
        TOOLS,
        mode=rng.choice(["sync", "parallel", "async"]),  # type: ignore[arg-type]
        limits=Limits(max_tokens=rng.randint(2, 60), max_calls=rng.randint(1, 6), max_pending=2),
        pending_policy=rng.choice(["wait", "cancel"]),  # type: ignore[arg-type]
        emit=events.append,
    )
    try:
        await asyncio.wait_for(session.run([Message(role="user", content="go")]), 10)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    written = sorted(e.call_id for e in events if isinstance(e, CallWritten))
    finished = sorted(e.call_id for e in events if isinstance(e, CallFinished))
    if written != finished:
        return f"written {written} but finished {finished}"
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("counterpoint-call")]
    return f"{len(left)} calls left running" if left else None


def fuzz(n: int) -> dict[str, Any]:
    rng = random.Random(20261202)
    crashes: list[str] = []

    async def main() -> None:
        for _ in range(n):
            problem = await _one(rng)
            if problem is not None:
                crashes.append(problem)

    began = time.perf_counter()
    asyncio.run(main())
    seconds = time.perf_counter() - began
    return {"sessions": n, "crashes": len(crashes), "per_s": n / seconds, "first": crashes[:3]}


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {repo!r})
    from counterpoint.agents.agent import Agent
    from counterpoint.runtime.tracing import SQLiteTracer
    from counterpoint.testing.scripted import ScriptedModel

    async def main():
        with SQLiteTracer({db!r}) as tracer:
            agent = Agent("w", "x", model=ScriptedModel("Done. All good."), tracer=tracer)
            for _ in range({runs}):
                await agent.run("go")
    asyncio.run(main())
    """
)


def trace_loss(processes: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "traces.db")
        sqlite3.connect(db).close()
        code = _WRITER.format(repo=str(REPO), db=db, runs=runs)
        began = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]
        codes = [p.wait(timeout=600) for p in procs]
        seconds = time.perf_counter() - began
        with sqlite3.connect(db) as conn:
            ok = conn.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0]
    expected = processes * runs
    return {
        "processes": processes,
        "runs_each": runs,
        "expected": expected,
        "committed_ok": ok,
        "lost": expected - ok,
        "failed_processes": sum(c != 0 for c in codes),
        "seconds": seconds,
    }


def hostile_parse() -> dict[str, Any]:
    mb = 1 << 20
    bodies = {
        "digits": "f(x=" + "1" * mb + ")",
        "minus": "f(x=" + "-" * mb + "1)",
        "nesting": "f(x=" + "[" * (mb // 2) + "]" * (mb // 2) + ")",
        "json_digits": '{"name": "f", "arguments": {"x": ' + "9" * mb + "}}",
        "garbage": "(" * mb,
        "brackets_outside": "[" * mb,
    }
    worst = 0.0
    times: dict[str, float] = {}
    for name, body in bodies.items():
        began = time.perf_counter()
        parser = CMLParser()
        events = [*parser.feed(f"[CALL] c1 [HEAD] {body} [END]"), *parser.finish()]
        for event in events:
            inner = getattr(event, "body", None)
            if isinstance(inner, str):
                with contextlib.suppress(CallSyntaxError):
                    parse_call(inner)
        times[name] = time.perf_counter() - began
        worst = max(worst, times[name])
    return {"worst_s": worst, "per_body_s": times}


def silent_server(cap_s: float) -> dict[str, Any]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # accepted, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    async def main() -> tuple[float, str]:
        began = time.perf_counter()
        async with OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1") as model:
            try:
                await asyncio.wait_for(model.start_completion("hi"), cap_s)
            except TimeoutError:
                return time.perf_counter() - began, f"still waiting after {cap_s:.0f} s"
            except Exception as exc:
                return time.perf_counter() - began, f"{type(exc).__name__}: {str(exc)[:160]}"
        return time.perf_counter() - began, "answered?"

    try:
        seconds, outcome = asyncio.run(main())
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()
    return {"give_up_s": seconds, "outcome": outcome, "capped_at_s": cap_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 sessions, 5 × 40 runs")
    args = parser.parse_args()
    sessions, processes, runs = (1_000, 5, 40) if args.quick else (10_000, 20, 100)
    f = fuzz(sessions)
    print(
        f"fuzz: {f['sessions']} sessions, {f['crashes']} crashes, {f['per_s']:.0f}/s {f['first']}"
    )
    t = trace_loss(processes, runs)
    print(f"traces: {t['committed_ok']}/{t['expected']} runs committed, {t['lost']} lost")
    h = hostile_parse()
    print(f"hostile 1 MB bodies: worst {h['worst_s'] * 1000:.1f} ms")
    s = silent_server(cap_s=90.0)
    print(f"silent server: gave up after {s['give_up_s']:.1f} s ({s['outcome']})")
    result = {
        "sessions_fuzzed_per_s": round(f["per_s"], 1),
        "session_crashes": f["crashes"],
        "sessions_fuzzed": f["sessions"],
        "trace_records_lost": t["lost"],
        "trace_processes": processes,
        "trace_runs_each": runs,
        "hostile_body_worst_parse_s": round(h["worst_s"], 4),
        "silent_server_give_up_s": round(s["give_up_s"], 2),
        "targets": {
            "session_crashes": 0,
            "trace_records_lost": 0,
            "hostile_body_worst_parse_s": "< 0.5",
            "silent_server_give_up_s": "<= 30",
        },
        "details": {"fuzz": f, "traces": t, "hostile": h, "silent": s},
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
