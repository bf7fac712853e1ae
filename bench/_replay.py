"""The real-model part of bench/async_latency.py: teacher-forced replay of the ideal transcripts.

Each task's ideal transcript (counterpoint.testing.workloads.IdealPolicy) is replayed on the
embedded model: a real forward pass per generated token, a real prefill per injected result, with
the agent's real system prompt (protocol and tool listing). Modes: sync, parallel, async, and the
stateless sync/parallel variants that prefill the whole context again after every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.runtime.session import Limits, Mode, Session
from counterpoint.testing.replay import ReplayModel
from counterpoint.testing.workloads import (
    IdealPolicy,
    Task,
    multistep_set,
    parallel_set,
    task_toolset,
)

VARIANTS: tuple[tuple[str, Mode, bool], ...] = (
    ("sync", "sync", False),
    ("parallel", "parallel", False),
    ("async", "async", False),
    ("stateless_sync", "sync", True),
    ("stateless_parallel", "parallel", True),
)


async def _run(model: TransformersModel, task: Task, mode: Mode, stateless: bool) -> float:
    tools = task_toolset(task)
    # The instructions alone: the backend renders the protocol and the tools (given as data).
    system = "You run the user's task with the functions below."
    messages = [
        Message(role="system", content=system),
        Message(role="user", content=f"Run task {task.id}."),
    ]
    replay = ReplayModel(model, policy_factory=lambda: IdealPolicy(task), stateless=stateless)
    session = Session(
        replay,
        tools,
        mode=mode,
        params=SamplingParams(max_tokens=2048),
        limits=Limits(max_tokens=2048),
    )
    result = await session.run(messages)
    if result.status != "ok" or len(result.calls) != len(task.calls()):
        raise RuntimeError(f"replay of {task.id} in {mode}: {result.status}, {len(result.calls)}")
    return result.latency_s


async def _replay_set(
    model: TransformersModel, name: str, tasks: Sequence[Task]
) -> dict[str, float]:
    totals = {v: 0.0 for v, _, _ in VARIANTS}
    for task in tasks:
        for variant, mode, stateless in VARIANTS:
            totals[variant] += await _run(model, task, mode, stateless)
    print(f"\n{name} set on the embedded model (teacher-forced replay), {len(tasks)} tasks")
    print(f"{'variant':20} {'latency s':>10} {'vs async':>9}")
    for variant, total in totals.items():
        print(f"{variant:20} {total:10.2f} {total / totals['async']:9.2f}")
    return totals


async def replay_sets(n_tasks: int) -> dict[str, Any]:
    model = TransformersModel.load()
    await _run(model, parallel_set(1)[0], "async", False)  # warm-up (ban tables, caches)
    par = await _replay_set(model, "parallel", parallel_set(n_tasks))
    ms = await _replay_set(model, "multistep", multistep_set(n_tasks))
    return {
        "replay_speedup_async_vs_sync_parallel_set": round(par["sync"] / par["async"], 3),
        "replay_speedup_async_vs_sync_multistep_set": round(ms["sync"] / ms["async"], 3),
        "speedup_async_vs_stateless_sync_parallel_set": round(
            par["stateless_sync"] / par["async"], 3
        ),
        "speedup_async_vs_stateless_sync_multistep_set": round(
            ms["stateless_sync"] / ms["async"], 3
        ),
        "speedup_async_vs_stateless_parallel_multistep_set": round(
            ms["stateless_parallel"] / ms["async"], 3
        ),
        "replay_model": model.name,
        "replay_dtype": str(model.dtype).removeprefix("torch."),
    }
