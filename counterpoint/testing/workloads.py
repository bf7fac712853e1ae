"""Synthetic call workloads shaped like AsyncLM's benchmarks, and an ideal scripted model for them.

- the *parallel* set: independent calls, 2–6 per task (BFCL parallel);
- the *multi-step* set: three independent chains per task, each of 1–5 dependent calls (the paper's
  multi-step parallel set).

Tool latencies are drawn deterministically per function name from 30–500 ms with a mean near 110 ms
(the paper's measured distribution: a shifted exponential, truncated at 500 ms).
:class:`IdealPolicy` is a ScriptedModel policy that writes each call as soon as it is ready, longest
remaining chain first (LPT), waits when nothing is ready, and answers once every result is in; the
same script drives every mode, so comparing modes isolates scheduling.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from counterpoint.testing.latency import PlannedCall, lpt_order
from counterpoint.testing.scripted import scripted_tokens
from counterpoint.tools.tool import Tool
from counterpoint.tools.toolset import Toolset

__all__ = [
    "IdealPolicy",
    "Task",
    "call_text",
    "function_latency",
    "multistep_set",
    "parallel_set",
    "task_toolset",
]

MIN_LATENCY_S = 0.030
MAX_LATENCY_S = 0.500
MEAN_EXTRA_S = 0.080  # 30 ms + an exponential of mean 80 ms: mean ≈ 110 ms
_INTR_ID = re.compile(r"\[INTR\]\s*(\w+)\s*\[HEAD\]")


def function_latency(name: str) -> float:
    """A deterministic latency in [30 ms, 500 ms] for a function name, mean near 110 ms."""
    digest = hashlib.sha256(name.encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return min(MAX_LATENCY_S, MIN_LATENCY_S - MEAN_EXTRA_S * math.log1p(-u))


@dataclass(frozen=True)
class Task:
    """A task: chains of calls (a chain of one call is an independent call)."""

    id: str
    chains: tuple[tuple[str, ...], ...]  # function names

    def calls(self) -> list[tuple[int, int, str]]:
        return [(ci, si, n) for ci, chain in enumerate(self.chains) for si, n in enumerate(chain)]

    def call_id(self, chain: int, step: int) -> str:
        return f"c{chain}_{step}"

    def planned(self, token_time_s: float) -> list[list[PlannedCall]]:
        """The chains with generation time (tokens x token time) and execution time per call."""
        return [
            [
                PlannedCall(
                    n,
                    len(scripted_tokens(call_text(self, ci, si))) * token_time_s,
                    function_latency(n),
                )
                for si, n in enumerate(chain)
            ]
            for ci, chain in enumerate(self.chains)
        ]


_POOL = tuple(f"fn_{i:02d}" for i in range(84))  # AsyncLM's evaluation used 84 functions


def parallel_set(n_tasks: int = 20, seed: int = 0) -> list[Task]:
    """Independent calls, 2–6 per task."""
    rng = random.Random(seed)
    return [
        Task(f"par{i}", tuple((name,) for name in rng.sample(_POOL, rng.randint(2, 6))))
        for i in range(n_tasks)
    ]


def multistep_set(n_tasks: int = 20, seed: int = 1) -> list[Task]:
    """Three independent chains per task, each of 1–5 dependent calls."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n_tasks):
        lengths = [rng.randint(1, 5) for _ in range(3)]
        names = rng.sample(_POOL, sum(lengths))
        chains, k = [], 0
        for length in lengths:
            chains.append(tuple(names[k : k + length]))
            k += length
        tasks.append(Task(f"ms{i}", tuple(chains)))
    return tasks


def call_text(task: Task, chain: int, step: int) -> str:
    """The CML block the ideal model writes for one call."""
    name = task.chains[chain][step]
    body = f'{name}(item="{task.id}", step={step})'
    return f"[CALL] {task.call_id(chain, step)} [HEAD] {body} [END]\n"


FINAL_ANSWER = "All results are in: here is the answer."


class IdealPolicy:
    """A ScriptedModel policy for one run of one task (create a new one per run)."""

    def __init__(self, task: Task, final: str = FINAL_ANSWER) -> None:
        self.task = task
        self.final = final
        self._written: set[tuple[int, int]] = set()
        self._answered = False
        self._chains = task.planned(1.0)

    def __call__(self, extensions: Sequence[str]) -> str | None:
        done = {m for text in extensions for m in _INTR_ID.findall(text)}
        ready = [
            (ci, si)
            for ci, si, _ in self.task.calls()
            if (ci, si) not in self._written and (si == 0 or self.task.call_id(ci, si - 1) in done)
        ]
        if ready:
            ci, si = lpt_order(self._chains, ready)[0]
            self._written.add((ci, si))
            return call_text(self.task, ci, si)
        if len(done) >= len(self.task.calls()):
            if self._answered:
                return None
            self._answered = True
            return self.final
        return ""  # wait for a result


def task_toolset(task: Task) -> Toolset:
    """Tools for a task's functions: each sleeps its deterministic latency and echoes its input."""

    def make(name: str) -> Tool:
        latency = function_latency(name)

        async def impl(**kwargs: Any) -> dict[str, Any]:
            await asyncio.sleep(latency)
            return {"function": name, "ok": True, **kwargs}

        spec = {
            "name": name,
            "description": f"A simulated function taking {latency * 1000:.0f} ms.",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string"}, "step": {"type": "integer"}},
                "required": ["item", "step"],
            },
        }
        return Tool.from_schema(spec, impl, estimated_latency_s=latency)

    names = sorted({n for chain in task.chains for n in chain})
    return Toolset([make(n) for n in names])
