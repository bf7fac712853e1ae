"""Conversions between OpenAI chat conventions and CML text (no server needed)."""

from __future__ import annotations

import json

import pytest

from counterpoint.errors import ConfigError
from counterpoint.runtime.backends._http_cml import (
    call_to_cml,
    cml_id,
    normalize_tools,
    render_chatml,
    split_interrupts,
)
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.callsyntax import parse_call
from counterpoint.runtime.cml import CallBlock, CMLParser, format_interrupt


def _parse_blocks(text: str) -> list[CallBlock]:
    parser = CMLParser()
    events = [*parser.feed(text), *parser.finish()]
    return [e for e in events if isinstance(e, CallBlock)]


@pytest.mark.parametrize(
    "arguments",
    [
        {"city": "Paris", "days": 3},
        {"q": 'it\'s "quoted"\nnewline', "flag": True, "none": None},
        {"nested": {"a": [1, 2.5, {"b": False}]}, "empty": []},
        {},
    ],
)
def test_native_call_renders_as_cml_the_runtime_parses_back(arguments: dict[str, object]) -> None:
    text = call_to_cml("call_1", "get_weather", json.dumps(arguments))
    (block,) = _parse_blocks(text)
    assert block.call_id == "call_1"
    parsed = parse_call(block.body)
    assert parsed.name == "get_weather"
    assert dict(parsed.arguments) == arguments
    assert "(" in block.body  # the Python call form, not the JSON fallback


def test_unusual_names_fall_back_to_the_json_body() -> None:
    text = call_to_cml("c1", "get-weather", json.dumps({"not an identifier": 1}))
    (block,) = _parse_blocks(text)
    assert json.loads(block.body) == {"name": "get-weather", "arguments": {"not an identifier": 1}}


def test_malformed_arguments_reach_the_parser_as_an_error() -> None:
    text = call_to_cml("c1", "f", '{"city": "Par')
    (block,) = _parse_blocks(text)
    with pytest.raises(ValueError):
        parse_call(block.body)


@pytest.mark.parametrize(
    ("server_id", "expected"),
    [
        ("call_abc123", "call_abc123"),
        ("call-x.1", "call_x_1"),
        ("1abc", "call_7"),
        (None, "call_7"),
    ],
)
def test_cml_ids_are_identifiers(server_id: str | None, expected: str) -> None:
    assert cml_id(server_id, 7) == expected


def test_split_interrupts_takes_the_session_format_and_keeps_other_text() -> None:
    text = (
        format_interrupt("call_1", '{"temp_c": 17}')
        + "By the way, use Celsius.\n"
        + format_interrupt("c2", "line one\nline two")
    )
    interrupts, rest = split_interrupts(text)
    assert [(i.call_id, i.value) for i in interrupts] == [
        ("call_1", '{"temp_c": 17}'),
        ("c2", "line one\nline two"),
    ]
    assert rest == "By the way, use Celsius."
    assert split_interrupts("no blocks here") == ([], "no blocks here")


def test_render_chatml_is_the_smollm2_format() -> None:
    prompt = render_chatml(
        [Message(role="system", content="Be brief."), Message(role="user", content="Hi")]
    )
    assert prompt.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert [s.kind for s in prompt.segments].count("content") == 2


def test_normalize_tools_accepts_entries_and_bare_schemas() -> None:
    bare = {"name": "f", "description": "d"}
    entry = {"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}}
    tools = normalize_tools([bare, entry])
    assert [t["function"]["name"] for t in tools] == ["f", "g"]
    assert tools[0]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert tools[1]["function"]["parameters"] == {"type": "object"}
    with pytest.raises(ConfigError, match="OpenAI tool entry"):
        normalize_tools([{"description": "no name"}])
