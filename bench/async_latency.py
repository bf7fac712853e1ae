"""Asynchronous vs parallel vs synchronous function calling: measured latency against the bound.

Workloads (counterpoint.testing.workloads): a BFCL-parallel-shaped set (2–6 independent calls per
task) and a multi-step parallel set (three chains of 1–5 dependent calls), tool latencies drawn
deterministically from 30–500 ms (mean ≈ 110 ms). Generation is emulated by ScriptedModel at 5 ms
per token (the paper's cloud emulation), driven by an ideal model that writes each call as soon as
it is ready (LPT order); the same policy drives every mode. On the real embedded model the same
transcripts are replayed teacher-forced (real forward passes, real prefill of interrupts), and the
stateless variants (a full re-prefill of the context after every result, what a stateless chat API
pays) are measured too.

Latency is measured from the first generated token to the last (the paper's measure). The bound is
the paper's latency model (counterpoint.testing.latency) for the same calls; efficiency = bound /
measured. Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

from counterpoint.runtime.backends.base import Message, Model
from counterpoint.runtime.session import Mode, Session
from counterpoint.testing.latency import bound_async, bound_parallel, bound_sync
from counterpoint.testing.scripted import ScriptedModel, scripted_tokens
from counterpoint.testing.workloads import (
    FINAL_ANSWER,
    IdealPolicy,
    Task,
    multistep_set,
    parallel_set,
    task_toolset,
)

MODES: tuple[Mode, ...] = ("sync", "parallel", "async")
BOUNDS: dict[str, Callable[..., float]] = {
    "sync": bound_sync,
    "parallel": bound_parallel,
    "async": bound_async,
}
PROMPT = [
    Message(role="system", content="You call functions with CML."),
    Message(role="user", content="Run the task."),
]


async def run_task(model: Model, task: Task, mode: Mode) -> float:
    session = Session(model, task_toolset(task), mode=mode)
    result = await session.run(PROMPT)
    if result.status != "ok" or len(result.calls) != len(task.calls()):
        raise RuntimeError(f"{task.id} in {mode}: {result.status}, {len(result.calls)} calls")
    if not all(r.ok for r in result.calls):
        raise RuntimeError(f"{task.id} in {mode}: a call failed: {result.calls}")
    return result.latency_s


def bound(task: Task, mode: str, token_time_s: float) -> float:
    final_s = len(scripted_tokens(FINAL_ANSWER)) * token_time_s
    # latency runs from the first token's emission to the last's: one token time less
    return BOUNDS[mode](task.planned(token_time_s), final_s) - token_time_s


async def scripted_set(name: str, tasks: Sequence[Task], token_time_s: float) -> dict[str, Any]:
    measured: dict[str, list[float]] = {m: [] for m in MODES}
    bounds: dict[str, list[float]] = {m: [] for m in MODES}
    for task in tasks:
        for mode in MODES:  # interleaved, so drift of the machine hits every mode alike
            model = ScriptedModel(IdealPolicy(task), token_time_s=token_time_s)
            measured[mode].append(await run_task(model, task, mode))
            bounds[mode].append(bound(task, mode, token_time_s))
    out: dict[str, Any] = {"set": name, "tasks": len(tasks)}
    print(f"\n{name} set: {len(tasks)} tasks, {token_time_s * 1000:.0f} ms/token (ScriptedModel)")
    print(f"{'mode':10} {'measured s':>11} {'bound s':>9} {'efficiency':>11} {'p50 task s':>11}")
    for mode in MODES:
        total, total_bound = sum(measured[mode]), sum(bounds[mode])
        eff = total_bound / total
        out[f"{mode}_s"] = total
        out[f"{mode}_bound_s"] = total_bound
        out[f"{mode}_efficiency"] = eff
        p50 = statistics.median(measured[mode])
        print(f"{mode:10} {total:11.3f} {total_bound:9.3f} {eff:11.3f} {p50:11.3f}")
    out["speedup_async_vs_sync"] = out["sync_s"] / out["async_s"]
    out["speedup_parallel_vs_sync"] = out["sync_s"] / out["parallel_s"]
    out["bound_speedup_async_vs_sync"] = out["sync_bound_s"] / out["async_bound_s"]
    print(
        f"speedup async/sync {out['speedup_async_vs_sync']:.2f} "
        f"(bound {out['bound_speedup_async_vs_sync']:.2f}), "
        f"parallel/sync {out['speedup_parallel_vs_sync']:.2f}"
    )
    return out


async def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=12, help="tasks per set (ScriptedModel)")
    parser.add_argument("--token-ms", type=float, default=5.0, help="ms per generated token")
    parser.add_argument("--replay-tasks", type=int, default=3, help="tasks per set on the model")
    parser.add_argument("--no-replay", action="store_true", help="skip the real-model replay")
    args = parser.parse_args(argv)
    dt = args.token_ms / 1000
    par = await scripted_set("parallel", parallel_set(args.tasks), dt)
    ms = await scripted_set("multistep", multistep_set(args.tasks), dt)
    result: dict[str, Any] = {
        "speedup_async_vs_sync_parallel_set": round(par["speedup_async_vs_sync"], 3),
        "speedup_async_vs_sync_multistep_set": round(ms["speedup_async_vs_sync"], 3),
        "speedup_parallel_vs_sync_parallel_set": round(par["speedup_parallel_vs_sync"], 3),
        "speedup_parallel_vs_sync_multistep_set": round(ms["speedup_parallel_vs_sync"], 3),
        "async_efficiency_min": round(min(par["async_efficiency"], ms["async_efficiency"]), 3),
        "efficiency_min_all_modes": round(
            min(s[f"{m}_efficiency"] for s in (par, ms) for m in MODES), 3
        ),
    }
    if not args.no_replay:
        from _replay import replay_sets

        result.update(await replay_sets(args.replay_tasks))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
