"""Traces replayed through the real runtime (Session, async mode) on a ScriptedModel.

The scripted model writes each model-written span of a trace once the results that precede it in
the trace have been injected; the real parser, executor and library tools do the rest. A trace is
protocol-valid if the run ends ok with no protocol violation, every call runs with the trace's
arguments and returns the trace's result, and the answer comes out as the trace states it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from counterpoint.core.events import BaseEvent, CallWritten, ProtocolViolation, UserMessage
from counterpoint.finetune import library
from counterpoint.finetune.traces import Sample
from counterpoint.protocol import USER_ID
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.session import Session
from counterpoint.testing import ScriptedModel
from counterpoint.tools import Toolset, tool

_INTR = re.compile(r"\[INTR\] (\w+) \[HEAD\]")


def _parts(sample: Sample) -> list[tuple[str, frozenset[str]]]:
    """The model-written spans, each with the interrupts that come before it."""
    parts: list[tuple[str, frozenset[str]]] = []
    seen: set[str] = set()
    text = ""
    for segment in sample.segments:
        if segment.train:
            text += segment.text
        else:
            if text:
                parts.append((text, frozenset(seen)))
                text = ""
            seen.update(_INTR.findall(segment.text))
    parts.append((text, frozenset(seen)))
    return parts


class _TracePolicy:
    """Hands out the trace's spans; sends the user's message when the span before it starts."""

    def __init__(self, sample: Sample) -> None:
        self._parts = _parts(sample)
        self._next = 0
        self._user = sample.user_interrupt
        self.session: Session | None = None

    def __call__(self, extensions: Sequence[str]) -> str | None:
        if self._next >= len(self._parts):
            return None
        text, needs = self._parts[self._next]
        arrived = {cid for e in extensions for cid in _INTR.findall(e)}
        if not needs <= arrived:
            return ""  # wait for the results this span reads
        self._next += 1
        coming = self._parts[self._next][1] if self._next < len(self._parts) else frozenset()
        if self._user is not None and USER_ID in coming and self.session is not None:
            self.session.interrupt(self._user)
            self._user = None
        return text


def _pick(samples: list[Sample], per_shape: int) -> list[Sample]:
    out: list[Sample] = []
    shapes = (
        "single",
        "parallel",
        "chain",
        "fanout",
        "mix",
        "user_interrupt",
        "partial",
        "no_call",
    )
    for shape in (*shapes, "chat"):
        out.extend([s for s in samples if s.shape == shape][:per_shape])
    return out


async def _replay(sample: Sample, token_time_s: float = 0.0) -> None:
    tools = Toolset(
        [tool(library.entry(n).tool, estimated_latency=sample.latencies[n]) for n in sample.tools]
    )
    policy = _TracePolicy(sample)
    model = ScriptedModel(policy, token_time_s=token_time_s)
    events: list[BaseEvent] = []
    session = Session(model, tools, mode="async", emit=events.append)
    policy.session = session
    messages = [
        Message(role="system", content=sample.instructions),
        Message(role="user", content=sample.user),
    ]
    result = await session.run(messages)

    assert result.status == "ok", (sample.id, result.error)
    assert not [e for e in events if isinstance(e, ProtocolViolation)], sample.id
    written = [e for e in events if isinstance(e, CallWritten)]
    assert [(e.call_id, e.name, e.arguments) for e in written] == [
        (c.id, c.name, c.arguments) for c in sample.calls
    ]
    results = {r.call.id: r for r in result.calls}
    assert set(results) == {c.id for c in sample.calls}
    for c in sample.calls:
        assert results[c.id].ok and results[c.id].text == c.result_text, (sample.id, c.id)
    assert result.text == sample.answer
    assert sample.system in model.decoders[0].prompt.text  # the prompt the trace shows
    users = [e for e in events if isinstance(e, UserMessage)]
    assert [e.text for e in users] == ([sample.user_interrupt] if sample.user_interrupt else [])


@pytest.mark.parametrize("split", ["train", "held_out"])
async def test_traces_replay_through_the_runtime(
    split: str, train_samples: list[Sample], held_out_samples: list[Sample]
) -> None:
    samples = train_samples if split == "train" else held_out_samples
    chosen = _pick(samples, 3 if split == "train" else 1)
    assert len(chosen) >= (20 if split == "train" else 6)
    for sample in chosen:
        await _replay(sample)


async def test_replay_with_results_arriving_mid_stream(train_samples: list[Sample]) -> None:
    """With a token rate, results arrive while the model writes and are injected at safe points
    the trace did not choose; the calls, results and answer are still the trace's."""
    chosen = [s for s in train_samples if s.shape in ("parallel", "mix", "user_interrupt")][:3]
    for sample in chosen:
        await _replay(sample, token_time_s=0.001)
