"""The session loop under fuzzing: random transcripts, random token splits, all three modes.

Properties: no exception escapes ``Session.run``; every call the model wrote gets exactly one
``call_finished`` event; nothing is left running; the run ends with exactly one ``done``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import Interrupt, ToolSpec
from counterpoint.core.events import BaseEvent, CallFinished, CallWritten, Done
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams, Token
from counterpoint.runtime.session import Limits, Session
from counterpoint.tools.tool import tool
from counterpoint.tools.toolset import Toolset


@tool
async def fast(x: int = 0) -> int:
    """Return x.

    Args:
        x: A number.
    """
    return x


@tool
async def slow(x: int = 0) -> int:
    """Return x after a while.

    Args:
        x: A number.
    """
    await asyncio.sleep(0.002)
    return x


@tool
def broken(x: int = 0) -> int:
    """Always fails.

    Args:
        x: A number.
    """
    raise RuntimeError("boom")


TOOLS = Toolset(fast, slow, broken)

FRAGMENTS = [
    "Hello ",
    "world. ",
    "[CALL] c1 [HEAD] fast(x=1) [END]",
    "[CALL] c2 [HEAD] slow(x=2) [END]\n",
    "[CALL] c3 [HEAD] broken() [END]",
    "[CALL] fast(x=3) [END]",
    "[CALL] c4 [HEAD] unknown(y=1) [END]",
    "[CALL] c5 [HEAD] fast(x='not an int') [END]",
    "[CALL] c6 [HEAD] fast(x=1 [END]",
    "[CALL] c7 [HEAD] [END]",
    "[CALL] c1 [HEAD] fast(x=9) [END]",  # a duplicate id when c1 came first
    "[CALL] c8 [HEAD] fast(x=1)",  # never closed
    '[CALL] {"name": "fast", "arguments": {"x": 4}} [END]',
    "[TRAP][END]",
    "[TRAP] oops",
    "[INTR] c1 [HEAD] 99 [END]",
    "[END]",
    "[HEAD]",
    "[",
    "[CA",
    "]",
    "\n",
]


class _SplitModel:
    """Emits ``parts`` (one list of token texts per turn): a turn ends the stream, and an
    injection moves on to the next turn."""

    def __init__(self, turns: Sequence[Sequence[str]]) -> None:
        self._turns = [list(t) for t in turns]

    @property
    def name(self) -> str:
        return "split"

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> _SplitDecoder:
        return _SplitDecoder(self._turns, params or SamplingParams())


class _SplitDecoder:
    def __init__(self, turns: list[list[str]], params: SamplingParams) -> None:
        self._turns = turns
        self._turn = 0
        self._pos = 0
        self._params = params
        self._generated = 0
        self._prompt = 1

    async def step(self) -> Token | None:
        await asyncio.sleep(0)
        if self._turn >= len(self._turns) or self._generated >= self._params.max_tokens:
            return None
        turn = self._turns[self._turn]
        if self._pos >= len(turn):
            return None
        text = turn[self._pos]
        self._pos += 1
        self._generated += 1
        return Token(id=self._generated, text=text)

    async def inject(self, items: Sequence[Interrupt]) -> None:
        self._prompt += len(items)
        if self._pos >= len(self._turns[self._turn]) if self._turn < len(self._turns) else True:
            self._turn += 1
            self._pos = 0

    async def extend(self, text: str) -> None:
        self._prompt += 1

    async def close(self) -> None:
        pass

    @property
    def prompt_tokens(self) -> int:
        return self._prompt

    @property
    def generated_tokens(self) -> int:
        return self._generated


@st.composite
def transcripts(draw: st.DrawFn) -> list[list[str]]:
    turns = []
    for _ in range(draw(st.integers(1, 3))):
        text = "".join(draw(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8)))
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=12)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        turns.append([p for p in pieces if p])
    return turns


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    turns=transcripts(),
    mode=st.sampled_from(["sync", "parallel", "async"]),
    max_tokens=st.integers(2, 40),
    max_calls=st.integers(1, 6),
    pending_policy=st.sampled_from(["wait", "cancel"]),
)
def test_the_session_survives_any_transcript(
    turns: list[list[str]], mode: str, max_tokens: int, max_calls: int, pending_policy: str
) -> None:
    events: list[BaseEvent] = []

    async def main() -> None:
        session = Session(
            _SplitModel(turns),  # type: ignore[arg-type]
            TOOLS,
            mode=mode,  # type: ignore[arg-type]
            limits=Limits(max_tokens=max_tokens, max_calls=max_calls, max_pending=2),
            pending_policy=pending_policy,  # type: ignore[arg-type]
            emit=events.append,
        )
        result = await asyncio.wait_for(session.run([Message(role="user", content="go")]), 10)
        assert result.status in {"ok", "limit"}
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [t for t in pending if t.get_name().startswith("counterpoint-call")]

    asyncio.run(main())
    written = [e.call_id for e in events if isinstance(e, CallWritten)]
    finished = [e.call_id for e in events if isinstance(e, CallFinished)]
    assert sorted(written) == sorted(finished), (written, finished)
    assert [e.kind for e in events].count("done") == 1 and isinstance(events[-1], Done)
