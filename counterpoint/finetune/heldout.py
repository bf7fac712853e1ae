"""The held-out evaluation: run an agent on samples over functions training never saw.

Each held-out sample (:func:`~counterpoint.finetune.data.build_dataset` with
``split="held_out"``: the music, recipes and real-estate domains) is run as a real agent: its
instructions, its user question, and the library's real (deterministic fake) implementations of
its tools, in ``async`` mode by default. A run is judged on what the sample's ideal transcript
did:

- **calls right**: the model called exactly the functions with exactly the arguments the ideal
  trace called (as a multiset, in any order; dependent calls' arguments copied from results);
- **answer states the results**: its final answer contains every result value the reference
  answer states (:func:`~counterpoint.finetune.traces.facts_stated`), among the runs whose calls
  were right;
- **abstained right**: on samples no function fits, it called nothing;
- **protocol error**: the run failed (status ``error``) or broke the protocol (a
  :class:`~counterpoint.core.events.ProtocolViolation`: a malformed block, a forged marker).

Samples whose user writes again mid-run (``user_interrupt``) are left out: the question alone
does not say what they asked.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from counterpoint.agents.agent import Agent
from counterpoint.core.bus import EventBus
from counterpoint.core.events import BaseEvent, ProtocolViolation
from counterpoint.finetune import library
from counterpoint.finetune.traces import Sample, facts_stated
from counterpoint.runtime.backends.base import Model, SamplingParams
from counterpoint.runtime.session import Limits, Mode

__all__ = ["HeldOutCase", "HeldOutReport", "evaluate_held_out"]


@dataclass(frozen=True)
class HeldOutCase:
    """One sample's run, judged."""

    sample_id: str
    kind: str
    shape: str
    expected: tuple[str, ...]
    called: tuple[str, ...]
    calls_right: bool
    facts_share: float
    status: str
    protocol_error: bool
    answer: str


@dataclass(frozen=True)
class HeldOutReport:
    """The judged runs and their shares."""

    cases: tuple[HeldOutCase, ...]
    mode: str

    def _share(self, hits: Sequence[bool]) -> float | None:
        return sum(hits) / len(hits) if hits else None

    @property
    def calls_right(self) -> float | None:
        """Share of the samples that need calls whose calls were exactly right."""
        return self._share([c.calls_right for c in self.cases if c.expected])

    @property
    def answers_state_results(self) -> float | None:
        """Share of the samples with right calls whose answer states every result value."""
        return self._share(
            [c.facts_share == 1.0 for c in self.cases if c.expected and c.calls_right]
        )

    @property
    def answers_state_results_all(self) -> float | None:
        """Share of every sample that needs calls whose answer states every result value."""
        return self._share([c.facts_share == 1.0 for c in self.cases if c.expected])

    @property
    def abstained_right(self) -> float | None:
        """Share of the samples no function fits on which nothing was called."""
        return self._share([not c.called for c in self.cases if c.kind in ("no_call", "chat")])

    @property
    def protocol_errors(self) -> float | None:
        """Share of runs that failed or broke the protocol."""
        return self._share([c.protocol_error for c in self.cases])

    def summary(self) -> dict[str, Any]:
        """The shares (rounded) and counts, as JSON-ready data."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "mode": self.mode,
            "samples": len(self.cases),
            "calls_right": r(self.calls_right),
            "answers_state_results": r(self.answers_state_results),
            "answers_state_results_all": r(self.answers_state_results_all),
            "abstained_right": r(self.abstained_right),
            "protocol_errors": r(self.protocol_errors),
        }


def _key(name: str, arguments: dict[str, Any]) -> str:
    return f"{name}({json.dumps(arguments, sort_keys=True, default=str)})"


async def _run_one(model: Model, sample: Sample, mode: Mode, max_tokens: int) -> HeldOutCase:
    agent = Agent(
        name=f"held-out {sample.id}",
        instructions=sample.instructions,
        tools=library.toolset(sample.tools),
        model=model,
        mode=mode,
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        limits=Limits(max_tokens=max_tokens),
        tracer=False,
    )
    bus = EventBus()
    violations: list[BaseEvent] = []
    bus.subscribe(
        lambda e: violations.append(e) if isinstance(e, ProtocolViolation) else None,
        name="held-out judge",
    )
    result = await agent.run(sample.user, bus=bus)
    expected = tuple(sorted(_key(c.name, c.arguments) for c in sample.calls))
    called = tuple(sorted(_key(r.call.name, r.call.arguments) for r in result.calls))
    right = Counter(expected) == Counter(called)
    return HeldOutCase(
        sample_id=sample.id,
        kind=sample.kind,
        shape=sample.shape,
        expected=expected,
        called=called,
        calls_right=right,
        facts_share=facts_stated(sample, result.text),
        status=result.status,
        protocol_error=result.status == "error" or bool(violations),
        answer=result.text,
    )


async def evaluate_held_out(
    model: Model,
    samples: Sequence[Sample],
    *,
    mode: Mode = "async",
    concurrency: int = 4,
    max_tokens: int = 320,
    on_case: Callable[[HeldOutCase], None] | None = None,
) -> HeldOutReport:
    """Run every sample (but those with a user interrupt) as an agent on ``model``; judge each.

    ``concurrency`` samples run at once (on a local model their decode steps share batches).
    """
    chosen = [s for s in samples if s.shape != "user_interrupt"]
    gate = asyncio.Semaphore(max(1, concurrency))
    cases: list[HeldOutCase | None] = [None] * len(chosen)

    async def one(index: int, sample: Sample) -> None:
        async with gate:
            case = await _run_one(model, sample, mode, max_tokens)
        cases[index] = case
        if on_case is not None:
            on_case(case)

    await asyncio.gather(*(one(i, s) for i, s in enumerate(chosen)))
    return HeldOutReport(tuple(c for c in cases if c is not None), mode)
