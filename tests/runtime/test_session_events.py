"""The session's new events: CallWritten, ProtocolViolation, user interrupts, native tool calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from counterpoint.core.bus import EventBus, RunScope
from counterpoint.core.calls import Call, CallResult, Interrupt, ToolSpec, UserInterrupt
from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallStarted,
    CallWritten,
    Done,
    InterruptInjected,
    ProtocolViolation,
    TokenEvent,
    TrapEvent,
    UserMessage,
)
from counterpoint.errors import CounterpointError
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams, Token
from counterpoint.runtime.session import Limits, Mode, RunResult, Session
from counterpoint.runtime.tracing import SQLiteTracer
from counterpoint.testing.scripted import ScriptedDecoder, ScriptedModel
from counterpoint.tools.tool import tool
from counterpoint.tools.toolset import Toolset

E = TypeVar("E", bound=BaseEvent)

RAN: list[tuple[str, dict[str, Any]]] = []


@tool
async def fast(x: int) -> dict[str, int]:
    """A fast tool.

    Args:
        x: a number.
    """
    await asyncio.sleep(0.005)
    return {"fast": x}


@tool
async def slow() -> str:
    """A slow tool."""
    await asyncio.sleep(0.3)
    return "slow done"


@tool
async def echo(text: str) -> str:
    """Echo the text.

    Args:
        text: anything.
    """
    return text


@tool
async def get_weather(city: str) -> dict[str, Any]:
    """Current weather.

    Args:
        city: the city.
    """
    RAN.append(("get_weather", {"city": city}))
    return {"city": city, "temp_c": 17}


TOOLS = Toolset([fast, slow, echo, get_weather])
MSGS = [Message(role="user", content="go")]
MODES: tuple[Mode, ...] = ("sync", "parallel", "async")


def _of(events: Sequence[BaseEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def _index(events: Sequence[BaseEvent], pred: Any) -> int:
    return next(i for i, e in enumerate(events) if pred(e))


def _decoder(model: ScriptedModel) -> ScriptedDecoder:
    assert len(model.decoders) == 1
    return model.decoders[0]


async def _run(
    model: Any, mode: Mode = "async", **kw: Any
) -> tuple[RunResult, list[BaseEvent], Session]:
    events: list[BaseEvent] = []
    session = Session(model, TOOLS, mode=mode, emit=events.append, **kw)
    result = await session.run(MSGS)
    return result, events, session


async def _wait_for(events: list[BaseEvent], pred: Any, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not any(pred(e) for e in events):
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


# -- CallWritten ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_every_call_is_written_with_its_name_arguments_and_offset(mode: Mode) -> None:
    script = [
        '[CALL] c1 [HEAD] fast(x=1) [END]\n[CALL] c2 [HEAD] get_weather(city="Paris") [END]\n'
        "[CALL] fast(x=3) [END]\n[TRAP][END]",
        "All done.",
    ]
    model = ScriptedModel(script)
    result, events, _ = await _run(model, mode)
    assert result.status == "ok" and result.text == "All done."
    written = _of(events, CallWritten)
    assert [(w.call_id, w.name, w.arguments, w.raw) for w in written] == [
        ("c1", "fast", {"x": 1}, "fast(x=1)"),
        ("c2", "get_weather", {"city": "Paris"}, 'get_weather(city="Paris")'),
        ("c3", "fast", {"x": 3}, "fast(x=3)"),
    ]
    assert all(not w.native and w.run_id == result.run_id for w in written)
    offsets = [w.offset for w in written]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    # each offset is where its block ends in the generated text
    for w in written:
        assert result.generated[: w.offset].endswith("[END]")
    assert result.generated[: offsets[0]] == "[CALL] c1 [HEAD] fast(x=1) [END]"
    indices = [w.token_index for w in written]
    assert indices == sorted(indices) and len(set(indices)) == 3
    tokens = _of(events, TokenEvent)
    for w in written:  # the token that closed the block is the "]" of its [END]
        assert tokens[w.token_index].text == "]"
    # every call was written before it started
    for w in written:
        assert _index(events, lambda e, w=w: e is w) < _index(
            events, lambda e, w=w: isinstance(e, CallStarted) and e.call_id == w.call_id
        )
    started = [
        _index(events, lambda e, c=c: isinstance(e, CallStarted) and e.call_id == c)
        for c in ("c1", "c2", "c3")
    ]
    written_at = [_index(events, lambda e, w=w: e is w) for w in written]
    if mode == "parallel":  # the whole turn is written before anything runs
        assert max(written_at) < min(started)
    if mode == "sync":  # c2 is written only after c1 finished
        c1_done = _index(events, lambda e: isinstance(e, CallFinished) and e.call_id == "c1")
        assert c1_done < written_at[1]
    if mode == "async":  # c1 starts before c2 is written
        assert started[0] < written_at[1]


async def test_a_call_over_max_calls_is_written_but_never_started() -> None:
    script = [
        " ".join(f"[CALL] c{i} [HEAD] fast(x={i}) [END]" for i in range(1, 4)) + " [TRAP][END]",
        "ok",
    ]
    model = ScriptedModel(script)
    result, events, _ = await _run(model, "async", limits=Limits(max_calls=2))
    assert [w.call_id for w in _of(events, CallWritten)] == ["c1", "c2", "c3"]
    assert sorted(s.call_id for s in _of(events, CallStarted)) == ["c1", "c2"]
    refused = [f for f in _of(events, CallFinished) if f.call_id == "c3"]
    assert len(refused) == 1
    assert refused[0].attempts == 0 and not refused[0].ok
    assert "call limit reached (2)" in (refused[0].error or "")
    assert result.usage.calls == 2
    assert "[INTR] c3 [HEAD]" in "".join(model.extensions)


async def test_a_call_with_bad_arguments_is_written_but_never_started() -> None:
    model = ScriptedModel(['[CALL] c1 [HEAD] fast(x="not a number") [END]', "ok"])
    result, events, _ = await _run(model, "async")
    assert [w.arguments for w in _of(events, CallWritten)] == [{"x": "not a number"}]
    assert _of(events, CallStarted) == []
    finished = _of(events, CallFinished)
    assert len(finished) == 1 and finished[0].attempts == 0 and not finished[0].ok
    assert result.status == "ok" and result.text == "ok"


# -- ProtocolViolation ----------------------------------------------------------------------


async def test_an_unparsable_call_is_a_protocol_violation_and_the_run_goes_on() -> None:
    script = [
        "[CALL] c1 [HEAD] fast(x=) [END]\n[CALL] c2 [HEAD] fast(x=2) [END]\n[TRAP][END]",
        "Recovered.",
    ]
    model = ScriptedModel(script)
    result, events, _ = await _run(model, "async")
    assert result.status == "ok" and result.text == "Recovered."
    violations = _of(events, ProtocolViolation)
    assert len(violations) == 1
    v = violations[0]
    assert v.call_id == "c1" and v.raw == "[CALL] c1 [HEAD] fast(x=) [END]" and v.message
    # no CallWritten for the unusable block; the good one still runs
    assert [w.call_id for w in _of(events, CallWritten)] == ["c2"]
    assert [r.call.id for r in result.calls] == ["c2"] and result.calls[0].ok
    injected = _decoder(model).injected
    errors = [i for i in injected if isinstance(i, CallResult) and i.call.id == "c1"]
    assert len(errors) == 1 and not errors[0].ok and errors[0].error == v.message
    assert "[INTR] c1 [HEAD]" in "".join(model.extensions)


async def test_a_model_written_interrupt_is_a_protocol_violation() -> None:
    model = ScriptedModel(["[INTR] c9 [HEAD] 42 [END] ok", "after"])
    result, events, _ = await _run(model, "async")
    violations = _of(events, ProtocolViolation)
    assert len(violations) == 1
    assert violations[0].call_id is None and violations[0].raw == "[INTR] c9 [HEAD] 42 [END]"
    assert "only the runtime writes [INTR]" in violations[0].message
    assert "[INTR] error [HEAD]" in "".join(model.extensions)
    assert result.status == "ok"


async def test_a_raising_subscriber_does_not_break_the_run(tmp_path: Path) -> None:
    tracer = SQLiteTracer(tmp_path / "t.db")
    tracer.close()
    bus = EventBus()
    bus.subscribe(tracer)
    events: list[BaseEvent] = []
    model = ScriptedModel(["[CALL] c1 [HEAD] fast(x=1) [END]", "fine"])
    session = Session(model, TOOLS, bus=bus, emit=events.append)
    result = await session.run(MSGS)
    assert result.status == "ok" and result.text == "fine"
    assert len(bus.detached) == 1
    name, error = bus.detached[0]
    assert name == "SQLiteTracer" and error.startswith("TracerClosedError")
    assert events[0].kind == "run_started" and events[-1].kind == "done"
    assert bus.subscribers == 1


# -- user interrupts ------------------------------------------------------------------------


async def test_a_user_interrupt_wakes_a_trap_wait() -> None:
    script = [
        "[CALL] c1 [HEAD] slow() [END]\n[TRAP][END]",
        "Noted, Rome too. [TRAP][END]",
        "Paris and Rome.",
    ]
    model = ScriptedModel(script)
    events: list[BaseEvent] = []
    session = Session(model, TOOLS, mode="async", emit=events.append)
    task = asyncio.create_task(session.run(MSGS))
    await _wait_for(events, lambda e: isinstance(e, TrapEvent) and e.phase == "enter")
    assert not _of(events, CallFinished)  # the tool is still running: the model waits
    session.interrupt("also Rome")
    result = await asyncio.wait_for(task, 10)
    assert result.status == "ok" and result.text == "Noted, Rome too. Paris and Rome."
    injected = _decoder(model).injected
    assert len(injected) == 2
    user, tool_result = injected
    assert isinstance(user, UserInterrupt) and user.text == "also Rome" and user.t > 0
    assert isinstance(tool_result, CallResult) and tool_result.call.id == "c1"
    assert model.extensions[0] == "[INTR] user [HEAD] also Rome [END]\n"
    messages = _of(events, UserMessage)
    assert [(m.text, m.run_id) for m in messages] == [("also Rome", result.run_id)]
    interrupts = _of(events, InterruptInjected)
    assert [i.call_ids for i in interrupts] == [["user"], ["c1"]]
    # the trap was woken by the user, before the tool finished
    woken = _index(events, lambda e: e is interrupts[0])
    finished = _index(events, lambda e: isinstance(e, CallFinished))
    assert _index(events, lambda e: e is messages[0]) < woken < finished
    assert result.usage.interrupts == 2
    assert "[INTR] user [HEAD] also Rome [END]" in result.transcript


async def test_a_user_interrupt_waits_for_the_end_of_a_call_block() -> None:
    words = " ".join(["lorem"] * 20 + ["marker"] + ["ipsum"] * 40)
    script = f'Start. [CALL] c1 [HEAD] echo(text="{words}") [END] and then some more words.'
    model = ScriptedModel(script, token_time_s=0.002)
    events: list[BaseEvent] = []
    session = Session(model, TOOLS, mode="async", emit=events.append)
    task = asyncio.create_task(session.run(MSGS))
    await _wait_for(events, lambda e: isinstance(e, TokenEvent) and e.text == " marker")
    # the premise: we are inside the block
    assert not _of(events, CallWritten)
    tokens_before = len(_of(events, TokenEvent))
    session.interrupt("hurry up")
    result = await asyncio.wait_for(task, 10)
    assert result.status == "ok"
    sent = _index(events, lambda e: isinstance(e, UserMessage))
    written = _index(events, lambda e: isinstance(e, CallWritten))
    injected = _index(events, lambda e: isinstance(e, InterruptInjected) and "user" in e.call_ids)
    assert sent < written < injected
    block_end = _of(events, CallWritten)[0].token_index
    assert tokens_before <= block_end
    # nothing was injected inside the block; the user's message comes right after it
    transcript = result.transcript
    start = transcript.index("[CALL] c1")
    end = transcript.index("[END]", start) + len("[END]")
    assert "[INTR]" not in transcript[start:end]
    assert transcript[end:].startswith("[INTR] user [HEAD] hurry up [END]\n")
    assert model.extensions[0] == "[INTR] user [HEAD] hurry up [END]\n"
    assert isinstance(_decoder(model).injected[0], UserInterrupt)


async def test_interrupt_after_the_run_is_an_error() -> None:
    result, events, session = await _run(ScriptedModel("Just an answer."), "async")
    assert result.status == "ok"
    with pytest.raises(CounterpointError, match="run is over"):
        session.interrupt("too late")
    assert not _of(events, UserMessage)


async def test_interrupt_needs_text() -> None:
    session = Session(ScriptedModel("x"), TOOLS)
    with pytest.raises(CounterpointError):
        session.interrupt("   ")


async def test_a_user_interrupt_sent_before_the_run_is_injected_first() -> None:
    model = ScriptedModel("Answer.")
    events: list[BaseEvent] = []
    session = Session(model, TOOLS, emit=events.append)
    session.interrupt("be brief")
    result = await session.run(MSGS)
    assert result.text == "Answer."
    assert model.extensions == ["[INTR] user [HEAD] be brief [END]\n"]
    assert _index(events, lambda e: isinstance(e, InterruptInjected)) < _index(
        events, lambda e: isinstance(e, TokenEvent)
    )


# -- native tool calls ----------------------------------------------------------------------


class NativeDecoder:
    """Plays parts of tokens; a part ends where the model waits for results (like ScriptedModel):
    if something was injected meanwhile it goes straight on, else it ends the turn."""

    def __init__(self, parts: Sequence[Sequence[Token]]) -> None:
        self._parts = [list(p) for p in parts]
        self._part = -1
        self._pos = 0
        self._fed = True  # the first part starts at once
        self.injected: list[Interrupt] = []
        self.extensions: list[str] = []
        self._generated = 0
        self._prompt_tokens = 10
        self.closed = False

    async def step(self) -> Token | None:
        await asyncio.sleep(0)
        if self._part >= 0 and self._pos < len(self._parts[self._part]):
            token = self._parts[self._part][self._pos]
            self._pos += 1
            self._generated += 1
            return token
        if not self._fed or self._part + 1 >= len(self._parts):
            return None
        self._part += 1
        self._pos = 0
        self._fed = False
        return await self.step()

    async def inject(self, items: Sequence[Interrupt]) -> None:
        self.injected.extend(items)
        self._prompt_tokens += len(items)
        self._fed = True

    async def extend(self, text: str) -> None:
        self.extensions.append(text)
        self._fed = True

    async def close(self) -> None:
        self.closed = True

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    @property
    def generated_tokens(self) -> int:
        return self._generated


class NativeModel:
    def __init__(self, parts: Sequence[Sequence[Token]]) -> None:
        self.parts = parts
        self.decoders: list[NativeDecoder] = []
        self.tools: tuple[ToolSpec, ...] = ()
        self.async_results: bool | None = None
        self.scope: RunScope | None = None

    @property
    def name(self) -> str:
        return "native-test"

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> NativeDecoder:
        self.tools = tuple(tools)
        self.async_results = async_results
        self.scope = scope
        decoder = NativeDecoder(self.parts)
        self.decoders.append(decoder)
        return decoder


@pytest.mark.parametrize("mode", MODES)
async def test_a_native_tool_call_runs_without_touching_the_parser(mode: Mode) -> None:
    RAN.clear()
    call = Call(id="n1", name="get_weather", arguments={"city": "Paris"}, raw='{"city": "Paris"}')
    model = NativeModel([[Token(id=-1, text="", call=call)], [Token(id=7, text="done")]])
    result, events, session = await _run(model, mode)
    assert result.status == "ok" and result.text == "done"
    assert RAN == [("get_weather", {"city": "Paris"})]
    written = _of(events, CallWritten)
    assert len(written) == 1
    w = written[0]
    assert (w.call_id, w.name, w.arguments, w.native, w.raw) == (
        "n1",
        "get_weather",
        {"city": "Paris"},
        True,
        '{"city": "Paris"}',
    )
    assert w.offset == 0  # nothing generated as text before it
    # the parser never saw text for it: the only text is the answer
    assert [t.text for t in _of(events, TokenEvent)] == ["done"]
    assert result.generated == "done" and "get_weather" not in result.transcript.split("[INTR]")[0]
    assert not _of(events, ProtocolViolation)
    decoder = model.decoders[0]
    assert decoder.extensions == []  # results go in as data
    assert len(decoder.injected) == 1
    injected = decoder.injected[0]
    assert isinstance(injected, CallResult) and injected.call.id == "n1" and injected.ok
    assert injected.value == {"city": "Paris", "temp_c": 17}
    assert [r.call.id for r in result.calls] == ["n1"]
    assert result.first_token_t is not None
    # the session offered its tools as data, with its scope
    assert [t.name for t in model.tools] == ["fast", "slow", "echo", "get_weather"]
    assert model.async_results is (mode == "async")
    assert model.scope is not None and model.scope.run_id == result.run_id
    assert model.scope.bus is session.bus
    assert decoder.closed


async def test_a_native_call_id_is_reserved_for_the_cml_parser() -> None:
    call = Call(id="c1", name="get_weather", arguments={"city": "Oslo"})
    text = [
        Token(id=i, text=p)
        for i, p in enumerate(["[CALL]", " c1 ", "[HEAD]", " fast(x=1) ", "[END]"])
    ]
    model = NativeModel([[Token(id=-1, text="", call=call), *text], [Token(id=9, text="ok")]])
    result, events, _ = await _run(model, "async")
    assert result.status == "ok" and result.text == "ok"
    assert [w.call_id for w in _of(events, CallWritten)] == ["c1"]
    violations = _of(events, ProtocolViolation)
    assert len(violations) == 1 and violations[0].call_id == "c1"
    assert "already used" in violations[0].message


async def test_an_unreadable_native_call_is_a_protocol_violation() -> None:
    RAN.clear()
    bad = Call(id="n2", name="get_weather", raw='{"city": ')
    model = NativeModel(
        [
            [Token(id=-1, text="", call=bad, call_error="arguments are not a JSON object")],
            [Token(id=3, text="sorry")],
        ]
    )
    result, events, _ = await _run(model, "sync")
    assert result.status == "ok" and result.text == "sorry"
    assert RAN == []
    violations = _of(events, ProtocolViolation)
    assert len(violations) == 1
    v = violations[0]
    assert v.call_id == "n2" and v.raw == '{"city": '
    assert v.message == "get_weather: arguments are not a JSON object"
    assert not _of(events, CallWritten) and not _of(events, CallStarted)
    injected = model.decoders[0].injected
    assert len(injected) == 1
    error = injected[0]
    assert isinstance(error, CallResult) and error.call.id == "n2" and not error.ok
    assert "arguments are not a JSON object" in error.text
    assert [i.call_ids for i in _of(events, InterruptInjected)] == [["n2"]]
    done = _of(events, Done)
    assert len(done) == 1 and done[0].status == "ok"


@tool
async def stuck() -> str:
    """A tool that would run for a minute."""
    await asyncio.sleep(60)
    return "never"


async def test_cancelling_one_call_tells_the_model_and_the_run_goes_on() -> None:
    script = [
        "[CALL] c1 [HEAD] stuck() [END]\n[CALL] c2 [HEAD] fast(x=2) [END]\n[TRAP][END]",
        "Got 2. [TRAP][END]",
        "The first was cancelled.",
    ]
    model = ScriptedModel(script)
    events: list[BaseEvent] = []
    session = Session(model, Toolset([stuck, fast]), mode="async", emit=events.append)
    task = asyncio.create_task(session.run(MSGS))
    await _wait_for(events, lambda e: isinstance(e, CallStarted) and e.call_id == "c1")
    assert session.cancel_call("nobody") is False
    assert session.cancel_call("c1") is True
    result = await asyncio.wait_for(task, 10)
    assert result.status == "ok" and result.text.endswith("The first was cancelled.")
    finished = {e.call_id: e for e in _of(events, CallFinished)}
    assert finished["c1"].error == "cancelled" and finished["c2"].ok
    injected = [r for r in _decoder(model).injected if isinstance(r, CallResult)]
    assert {r.call.id: r.error for r in injected} == {"c1": "cancelled", "c2": None}
    assert session.cancel_call("c1") is False  # the run is over
