"""Grammar-constrained call blocks, tool_choice and jump-forward on the real embedded model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from counterpoint.agents.agent import Agent
from counterpoint.errors import ConfigError
from counterpoint.protocol.callsyntax import parse_call
from counterpoint.protocol.cml import CallBlock, CMLParser
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel
from counterpoint.runtime.session import Limits
from counterpoint.tools import Toolset, tool

executed: list[str] = []


@tool
def get_weather(city: str, unit: str = "celsius") -> dict[str, object]:
    """The current weather in a city."""
    executed.append(city)
    return {"city": city, "temp_c": 17}


@tool
def convert_currency(amount: float, source: str, target: str) -> float:
    """Convert an amount of money from one currency to another."""
    return amount * 1.1


TOOLS = Toolset(get_weather, convert_currency)
ASK = "What is the weather like in Tokyo right now?"
CHAT = [Message(role="system", content="You are helpful."), Message(role="user", content=ASK)]


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load()
    yield loaded
    loaded.close()


async def first_block(decoder: TransformersDecoder, limit: int = 40) -> str:
    """Step until the first call block closes (or ``limit`` tokens)."""
    text = ""
    for _ in range(limit):
        token = await decoder.step()
        if token is None:
            break
        text += token.text
        if "[END]" in text:
            break
    return text


def blocks(text: str) -> list[CallBlock]:
    parser = CMLParser()
    events = [*parser.feed(text), *parser.finish()]
    return [e for e in events if isinstance(e, CallBlock)]


@pytest.mark.model
async def test_required_makes_the_first_output_a_call_the_runtime_runs(
    model: TransformersModel,
) -> None:
    executed.clear()
    agent = Agent(
        tools=TOOLS,
        model=model,
        mode="sync",
        limits=Limits(max_tokens=40),
        tool_choice="required",
        tracer=False,
    )
    result = await agent.run(ASK)
    assert result.generated.startswith("[CALL] c1 [HEAD] ")
    (block, *_) = blocks(result.generated)
    parsed = parse_call(block.body)
    assert parsed.name in TOOLS.names
    assert result.calls and result.calls[0].ok, result.calls
    assert result.calls[0].call.name == parsed.name
    if parsed.name == "get_weather":
        assert executed and executed[0] == parsed.arguments["city"]


@pytest.mark.model
async def test_a_named_choice_calls_that_function(model: TransformersModel) -> None:
    params = SamplingParams(max_tokens=40, tool_choice="convert_currency")
    decoder = await model.start(CHAT, params, tools=TOOLS.specs())
    text = await first_block(decoder)
    await decoder.close()
    (block,) = blocks(text)
    parsed = parse_call(block.body)
    assert parsed.name == "convert_currency"
    assert set(parsed.arguments) == {"amount", "source", "target"}  # every required argument
    assert isinstance(parsed.arguments["amount"], int | float)


@pytest.mark.model
async def test_none_writes_no_call(model: TransformersModel) -> None:
    prompt = "Call get_weather for Tokyo now. Write the call block."
    agent = Agent(
        tools=TOOLS,
        model=model,
        limits=Limits(max_tokens=30),
        tool_choice="none",
        tracer=False,
    )
    result = await agent.run(prompt)
    assert "[CALL" not in result.generated
    assert result.calls == []
    # the same prompt without the ban does call (so the test above can fail)
    auto = await agent.replace(tool_choice="auto").run(prompt)
    assert "[CALL]" in auto.generated


@pytest.mark.model
async def test_jump_forward_writes_the_same_block_with_fewer_forward_passes(
    model: TransformersModel,
) -> None:
    texts: dict[bool, str] = {}
    passes: dict[bool, int] = {}
    tokens: dict[bool, list[int]] = {}
    try:
        for jump in (True, False):
            model.jump_forward = jump
            params = SamplingParams(max_tokens=40, tool_choice="required")
            decoder = await model.start(CHAT, params, tools=TOOLS.specs())
            texts[jump] = await first_block(decoder)
            passes[jump] = decoder.forward_passes
            tokens[jump] = list(decoder.generated_ids)
            await decoder.close()
    finally:
        model.jump_forward = True
    assert texts[True] == texts[False]
    assert tokens[True] == tokens[False]
    assert texts[True].endswith(") [END]") and len(blocks(texts[True])) == 1
    assert passes[True] < passes[False] - 5, passes


@pytest.mark.model
async def test_constrained_is_on_by_default_and_can_be_turned_off(
    model: TransformersModel,
) -> None:
    decoder = await model.start(CHAT, SamplingParams(max_tokens=4), tools=TOOLS.specs())
    assert decoder.constraint is not None
    await decoder.close()
    plain = await model.start(CHAT, SamplingParams(max_tokens=4))
    assert plain.constraint is None  # no tools, nothing to constrain
    await plain.close()
    model.constrained = False
    try:
        off = await model.start(CHAT, SamplingParams(max_tokens=4), tools=TOOLS.specs())
        assert off.constraint is None
        await off.close()
    finally:
        model.constrained = True
    assert model.grammars.compiled >= 1
    compiled = model.grammars.compiled
    again = await model.start(CHAT, SamplingParams(max_tokens=4), tools=Toolset(*TOOLS).specs())
    await again.close()
    assert model.grammars.compiled == compiled  # the same schemas: compiled once


@pytest.mark.model
async def test_a_tool_choice_the_tools_cannot_meet_is_a_config_error(
    model: TransformersModel,
) -> None:
    with pytest.raises(ConfigError, match="not one of the tools"):
        await model.start(CHAT, SamplingParams(tool_choice="nope"), tools=TOOLS.specs())
    with pytest.raises(ConfigError, match="needs tools"):
        await model.start(CHAT, SamplingParams(tool_choice="required"))


@pytest.mark.model
async def test_a_stop_string_inside_a_forced_chunk_keeps_the_context_exact(
    model: TransformersModel,
) -> None:
    params = SamplingParams(max_tokens=30, tool_choice="required", stop=("[HEAD]",))
    decoder = await model.start(CHAT, params, tools=TOOLS.specs())
    prompt_ids = list(decoder.context_ids)
    text = ""
    while (token := await decoder.step()) is not None:
        text += token.text
    assert text.endswith("[HEAD]") and text.startswith("[CALL] c1")
    assert list(decoder.context_ids) == prompt_ids + list(decoder.generated_ids)
    await decoder.extend(' get_weather(city="Oslo") [END]')
    assert await decoder.step() is not None  # it goes on from the exact context
    await decoder.close()


@pytest.mark.model
async def test_extending_inside_a_block_leaves_it_unconstrained(model: TransformersModel) -> None:
    params = SamplingParams(max_tokens=30, tool_choice="required")
    decoder = await model.start(CHAT, params, tools=TOOLS.specs())
    first = await decoder.step()  # jump-forward fed the opener; one token returned
    assert first is not None and first.text == "["
    await decoder.extend(" (interrupted)")
    assert decoder.constraint is not None and not decoder.constraint.in_block
    assert len(decoder.context_ids) == decoder.prompt_tokens + decoder.generated_tokens
    assert await decoder.step() is not None
    await decoder.close()
