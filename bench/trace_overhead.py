"""What tracing costs: raw span insert throughput, and traced vs untraced time of agent runs.

1. Raw throughput: ``tracer.span(...)`` written N times into a fresh file (WAL, synchronous=FULL,
   the defaults), timed from the first call until ``flush()`` returns: every span committed.
   Also the same through events (CallStarted + CallFinished pairs -> one tool_call span each).
2. Overhead: the same workload with ``tracer=SQLiteTracer(file)`` and with ``tracer=False``,
   interleaved (the order alternates every repetition); the ratio is the median over repetitions
   of traced/untraced within each repetition. The workload:
   8 concurrent ``Agent`` runs in async mode on a ``ScriptedModel``, each writing 20 calls of a
   tool that takes 1-4 ms, ~400 tokens. Two token rates: 2 ms per token (a fast cloud model; the
   embedded model takes ~70 ms), and 0 (the runtime flat out, CPU-bound: the worst case, since
   the writer thread then competes with the event loop for the GIL; 6 rounds of 8 runs per
   sample, to get samples long enough to measure). Time is measured until every run is done; the
   flush that follows is reported separately (it is off the runs' path).

Last line: RESULT {json} with ``spans_per_s`` (target >= 20000) and
``traced_vs_untraced_time_ratio`` (target <= 1.03; the 2 ms/token workload).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from counterpoint.agents.agent import Agent
from counterpoint.core.events import CallFinished, CallStarted, Event, RunStarted
from counterpoint.runtime.tracing import SpanKind, SQLiteTracer
from counterpoint.testing.scripted import ScriptedModel

AGENTS = 8
CALLS = 20


async def ping(x: int) -> int:
    """Return x after a short wait (1-4 ms)."""
    await asyncio.sleep(0.001 * (1 + x % 4))
    return x


def script() -> list[str]:
    calls = "".join(
        f"Now step {i} of the plan, then on. [CALL] c{i} [HEAD] ping(x={i}) [END]\n"
        for i in range(CALLS)
    )
    return [calls + "[TRAP][END]", "Every result is in; the answer is ready and final."]


async def workload(tracer: SQLiteTracer | None, token_time_s: float, rounds: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        await _round(tracer, token_time_s)
    return time.perf_counter() - started


async def _round(tracer: SQLiteTracer | None, token_time_s: float) -> None:
    agents = [
        Agent(
            name=f"bench-{i}",
            instructions="Call ping for every step.",
            tools=[ping],
            model=ScriptedModel(script(), token_time_s=token_time_s),
            mode="async",
            tracer=tracer if tracer is not None else False,
        )
        for i in range(AGENTS)
    ]
    results = await asyncio.gather(*(a.run("Go.") for a in agents))
    for r in results:
        if r.status != "ok" or len(r.calls) != CALLS:
            raise RuntimeError(f"bad run: {r.status} with {len(r.calls)} calls ({r.error})")


def overhead(tmp: Path, token_time_s: float, reps: int, rounds: int) -> dict[str, Any]:
    tracer = SQLiteTracer(tmp / f"overhead-{token_time_s}.db")
    asyncio.run(workload(tracer, token_time_s))  # warm up both paths
    asyncio.run(workload(None, token_time_s))
    tracer.flush()
    traced: list[float] = []
    untraced: list[float] = []
    flushes: list[float] = []
    for rep in range(reps):
        for with_tracer in (True, False) if rep % 2 == 0 else (False, True):
            if with_tracer:
                traced.append(asyncio.run(workload(tracer, token_time_s, rounds)))
                t0 = time.perf_counter()
                tracer.flush()
                flushes.append(time.perf_counter() - t0)
            else:
                untraced.append(asyncio.run(workload(None, token_time_s, rounds)))
    committed = tracer.committed
    tracer.close()
    # each repetition ran both conditions back to back: compare within the pair, then take the
    # median, so that slow drifts of a shared machine cancel out
    ratio = statistics.median(t / u for t, u in zip(traced, untraced, strict=True))
    return {
        "token_time_s": token_time_s,
        "rounds_per_sample": rounds,
        "traced_s": round(statistics.median(traced), 4),
        "untraced_s": round(statistics.median(untraced), 4),
        "ratio": round(ratio, 4),
        "ratio_of_medians": round(statistics.median(traced) / statistics.median(untraced), 4),
        "flush_after_s": round(statistics.median(flushes), 4),
        "events_committed": committed,
    }


def raw_spans(tmp: Path, n: int) -> float:
    with SQLiteTracer(tmp / "raw.db") as tracer:
        started = time.perf_counter()
        for i in range(n):
            tracer.span(
                "raw-run",
                SpanKind.KV_REUSE,
                "segment",
                i * 1e-4,
                i * 1e-4 + 5e-5,
                attributes={"counterpoint.kv.tokens": i % 512, "counterpoint.kv.reused": True},
            )
        tracer.flush()
        return n / (time.perf_counter() - started)


def event_spans(tmp: Path, n: int) -> float:
    events: list[Event] = [
        RunStarted(run_id="ev", t=0.0, name="b", model="m", mode="async", prompt="", wall_time=0.0)
    ]
    for i in range(n):  # built before the clock starts: the runtime builds them, not the tracer
        t, cid = i * 1e-4, f"c{i}"
        events.append(CallStarted(run_id="ev", t=t, call_id=cid, name="f", arguments={"x": i}))
        events.append(
            CallFinished(
                run_id="ev",
                t=t + 5e-5,
                call_id=cid,
                name="f",
                ok=True,
                result=str(i),
                started=t,
                duration_s=5e-5,
            )
        )
    with SQLiteTracer(tmp / "events.db") as tracer:
        started = time.perf_counter()
        for event in events:
            tracer.emit(event)
        tracer.flush()
        return n / (time.perf_counter() - started)


def _fresh(tmp: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=50_000, help="spans for the raw throughput")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per condition")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        raw = statistics.median(raw_spans(_fresh(tmp), args.spans) for _ in range(3))
        ev = statistics.median(event_spans(_fresh(tmp), args.spans // 2) for _ in range(3))
        print(f"raw span inserts: {raw:,.0f} spans/s (direct tracer.span, committed, WAL + FULL)")
        print(f"spans from events: {ev:,.0f} spans/s (CallStarted + CallFinished per span)")
        fast = overhead(tmp, 0.002, args.reps, rounds=1)
        flat = overhead(tmp, 0.0, args.reps, rounds=6)
    for label, r in (("2 ms/token", fast), ("CPU-bound", flat)):
        print(
            f"{label}: traced {r['traced_s']:.3f} s, untraced {r['untraced_s']:.3f} s, "
            f"ratio {r['ratio']:.3f} (flush after: {r['flush_after_s'] * 1000:.1f} ms, "
            f"{r['events_committed']} events committed)"
        )
    result = {
        "spans_per_s": round(raw),
        "event_spans_per_s": round(ev),
        "traced_vs_untraced_time_ratio": fast["ratio"],
        "cpu_bound_traced_vs_untraced_time_ratio": flat["ratio"],
        "workload": {"agents": AGENTS, "calls_per_agent": CALLS, "reps": args.reps},
        "fast": fast,
        "cpu_bound": flat,
        "targets": {"spans_per_s": ">= 20000", "traced_vs_untraced_time_ratio": "<= 1.03"},
    }
    print("RESULT " + json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
