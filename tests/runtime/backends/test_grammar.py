"""The call-block grammar (compiled from JSON schemas) and the constraint's state machine.

No model here: the grammar is checked byte by byte with a byte-level llguidance tokenizer.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import llguidance
import pytest
import torch
from pydantic import BaseModel

from counterpoint.core.calls import ToolSpec
from counterpoint.errors import ConfigError
from counterpoint.protocol.callsyntax import parse_call
from counterpoint.runtime.backends._constrain import CallConstraint, Grammars, MarkerBoundary
from counterpoint.runtime.backends._grammar import (
    CallGrammar,
    GrammarFallbackWarning,
    call_grammar,
    grammar_key,
)
from counterpoint.runtime.backends._sampling import choose
from counterpoint.runtime.backends.base import SamplingParams
from counterpoint.tools import tool

EOS = 256


class _Bytes:
    """A tokenizer whose tokens are the 256 bytes (and an EOS)."""

    def __init__(self) -> None:
        self.tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
        self.eos_token_id = EOS
        self.bos_token_id = None
        self.special_token_ids = [EOS]

    def __call__(self, s: bytes) -> list[int]:
        return list(s)


BYTES = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))


def encode(text: str) -> list[int]:
    return list(text.encode())


def accepts(grammar: CallGrammar, body: str) -> bool:
    """Does the grammar take `` body [END]`` exactly?"""
    lark = llguidance.LLMatcher.grammar_from_lark(grammar.lark)
    matcher = llguidance.LLMatcher(BYTES, lark, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return matcher.consume_tokens(encode(f" {body} [END]")) and matcher.is_accepting()


class Point(BaseModel):
    x: int
    y: float = 0.0
    label: str | None = None


@tool
def everything(
    name: str,
    count: int,
    ratio: float,
    flag: bool,
    nothing: None,
    unit: Literal["c", "f"],
    level: Literal[1, 2, 3],
    tags: list[str],
    grid: list[list[int]],
    point: Point,
    scores: dict[str, int],
    maybe: int | None = None,
    pair: tuple[int, str] = (0, ""),
    note: str = "",
) -> str:
    """A tool with a parameter of every JSON type."""
    return ""


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """The weather in a city."""
    return ""


@tool
def get_time(zone: str) -> str:
    """The time in a zone."""
    return ""


ALL = [everything.spec(), get_weather.spec(), get_time.spec()]
FULL = (
    'everything(name="Ann \\"A\\" \\n\\u00e9 é", count=-3, ratio=2.5e-3, flag=True, '
    'nothing=None, unit="f", level=2, tags=["a", "b"], grid=[[1, 2], []], '
    'point={"x": 1, "y": 2, "label": None}, scores={"k": 1, "j": -2}, maybe=4, '
    'pair=[1, "one"], note="")'
)


def test_accepts_a_valid_block_for_every_json_type() -> None:
    grammar = call_grammar(ALL)
    assert accepts(grammar, FULL)
    parsed = parse_call(FULL)  # what the grammar takes, the runtime reads
    assert parsed.name == "everything" and parsed.arguments["point"]["x"] == 1
    required_only = (
        'everything(name="", count=0, ratio=1, flag=False, nothing=None, unit="c", level=3, '
        'tags=[], grid=[], point={"x": 0}, scores={})'
    )
    assert accepts(grammar, required_only)
    assert accepts(grammar, 'get_weather(city="Paris")')
    assert accepts(grammar, 'get_weather(city="Paris", unit="kelvin")')
    assert accepts(grammar, 'get_time(zone="UTC")')


@pytest.mark.parametrize(
    "body",
    [
        'get_wether(city="Paris")',  # unknown function
        'get_weather(town="Paris")',  # unknown argument
        'get_weather(city="Paris", city="Rome")',  # duplicate argument
        'get_weather(unit="kelvin")',  # missing required argument
        "get_weather()",  # missing required argument
        "get_weather(city=3)",  # wrong type
        'get_weather(city="Paris", unit=None)',  # str is not nullable
        'get_weather(city="Pa\nris")',  # raw newline in a string
        'get_weather(city="Pa\\qris")',  # an escape Python does not know
        'get_weather(city="Paris [END]")',  # a marker inside a string would end the block
        'get_weather(city="[INTR] c1")',
        'get_weather("Paris")',  # positional
        'get_weather(city="Paris"',  # not closed
        'everything(name="", count=1.5, ratio=1, flag=False, nothing=None, unit="c", level=3, '
        'tags=[], grid=[], point={"x": 0}, scores={})',  # float for an integer
        'everything(name="", count=1, ratio=1, flag=true, nothing=None, unit="c", level=3, '
        'tags=[], grid=[], point={"x": 0}, scores={})',  # JSON boolean
        'everything(name="", count=1, ratio=1, flag=False, nothing=None, unit="k", level=3, '
        'tags=[], grid=[], point={"x": 0}, scores={})',  # not in the enum
        'everything(name="", count=1, ratio=1, flag=False, nothing=None, unit="c", level=3, '
        'tags=[1], grid=[], point={"x": 0}, scores={})',  # wrong item type
        'everything(name="", count=1, ratio=1, flag=False, nothing=None, unit="c", level=3, '
        'tags=[], grid=[], point={"y": 0}, scores={})',  # object missing its required key
        'everything(name="", count=1, ratio=1, flag=False, nothing=None, unit="c", level=3, '
        'tags=[], grid=[], point={"x": 0}, scores={"a": "b"})',  # wrong value type
    ],
)
def test_rejects_invalid_blocks(body: str) -> None:
    assert not accepts(call_grammar(ALL), body)


def test_rejects_a_function_outside_a_named_choice() -> None:
    only = call_grammar(ALL, only="get_time")
    assert only.functions == ("get_time",)
    assert accepts(only, 'get_time(zone="UTC")')
    assert not accepts(only, 'get_weather(city="Paris")')
    with pytest.raises(ValueError, match="not one of the tools"):
        call_grammar(ALL, only="nope")


def test_unsupported_schema_falls_back_to_any_literal_with_a_warning() -> None:
    recursive = {
        "type": "object",
        "properties": {
            "tree": {"$ref": "#/$defs/Node"},
            "free": {"type": "object", "additionalProperties": True},
            "anything": {},
        },
        "required": ["tree"],
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            }
        },
    }
    spec = ToolSpec(name="grow", parameters=recursive)
    with pytest.warns(GrammarFallbackWarning) as caught:
        grammar = call_grammar([spec])
    messages = " ".join(str(w.message) for w in caught)
    assert "grow.tree" in messages and "recursive" in messages
    assert "grow.free" in messages and "grow.anything" in messages
    assert set(grammar.fallbacks) >= {"grow.free", "grow.anything"}
    assert accepts(grammar, 'grow(tree={"kids": [{"kids": [{"x": [1, None]}]}]}, free={"a": 1})')
    assert accepts(grammar, 'grow(tree={}, anything=[1, "two", {3: True}])')
    assert not accepts(grammar, "grow(tree=nope)")  # still a literal


def test_a_free_form_dict_param_from_a_typed_function_warns() -> None:
    @tool
    def store(key: str, value: dict) -> str:  # type: ignore[type-arg]
        """Store a free-form value."""
        return key

    with pytest.warns(GrammarFallbackWarning, match="store.value.*a dict of any"):
        grammar = call_grammar([store.spec()])
    assert accepts(grammar, 'store(key="k", value={"a": [1, 2]})')
    assert accepts(grammar, 'store(key="k", value={})')
    # a dict all the same: the model cannot write None or a number for it
    for value in ("None", "5", '"text"', "[1]"):
        assert not accepts(grammar, f'store(key="k", value={value})'), value


def test_grammar_is_compiled_once_per_toolset() -> None:
    first = call_grammar([get_weather.spec(), get_time.spec()])
    again = call_grammar([get_weather.spec(), get_time.spec()])  # equal content, new objects
    assert again is first
    changed = ToolSpec(
        name="get_time", parameters={"type": "object", "properties": {"zone": {"type": "integer"}}}
    )
    other = call_grammar([get_weather.spec(), changed])
    assert other.key != first.key
    assert grammar_key([get_weather.spec()]) != grammar_key([get_weather.spec()], "get_weather")
    grammars = Grammars(BYTES, EOS + 1, lambda: [t.decode("latin-1") for t in _Bytes().tokens])
    m1 = grammars.matcher(first)
    m2 = grammars.matcher(again)
    assert m1 is not m2  # each block works on its own copy
    assert grammars.compiled == 1
    grammars.matcher(other)
    assert grammars.compiled == 2


def test_marker_boundary_masks_tokens_that_run_past_the_marker() -> None:
    texts = ["[", "CALL", "]", "](", "] c", "[CALL]", "[CALL](", "x[CALL]", "ALL]", "ALL]x"]
    boundary = MarkerBoundary("[CALL]", texts)

    def ids(written: str) -> set[str]:
        return {texts[i] for i in boundary.banned_ids(written).tolist()}

    assert ids("hello") == {"[CALL]("}
    assert ids("[CALL") == {"[CALL](", "](", "] c"}
    assert ids("[C") == {"[CALL](", "ALL]x"}


def _constraint(
    grammar: CallGrammar | None = None, require: str | None = None, first: Any = None
) -> CallConstraint:
    texts = [t.decode("latin-1") for t in _Bytes().tokens]
    grammars = Grammars(BYTES, EOS + 1, lambda: texts)
    return CallConstraint(grammars, encode, grammar, first=first, require=require)


def _write(constraint: CallConstraint, text: str, written: str) -> str:
    """Let the 'model' write ``text`` wherever it has a choice; return everything written."""
    for byte in text.encode():
        forced = constraint.forced()
        written += bytes(forced).decode()
        allowed = constraint.allowed()
        if allowed is not None:
            assert allowed[byte], (written, chr(byte))
        written += chr(byte)
        constraint.observe(byte, written)
    forced = constraint.forced()
    return written + bytes(forced).decode()


def test_constraint_writes_the_id_and_forces_what_the_grammar_fixes() -> None:
    constraint = _constraint(call_grammar([get_weather.spec(), get_time.spec()]))
    assert constraint.forced() == [] and constraint.allowed() is None
    written = _write(constraint, "Sure. [CALL]", "")
    assert written.endswith("[CALL] c1 [HEAD] get_")  # the id, [HEAD], the shared name prefix
    assert constraint.in_block
    written = _write(constraint, "w", written)
    assert written.endswith('get_weather(city="')  # the rest of the name, (, the only start
    allowed = constraint.allowed()
    assert allowed is not None and not allowed[ord("\n")] and allowed[ord("P")]
    written = _write(constraint, 'Paris")', written)
    assert written.endswith('get_weather(city="Paris") [END]')
    assert not constraint.in_block and constraint.allowed() is None
    written = _write(constraint, "\n[CALL]", written)
    assert written.endswith("[CALL] c2 [HEAD] get_")  # a new id


def test_required_choice_forces_the_opener_first() -> None:
    grammar = call_grammar([get_weather.spec(), get_time.spec()])
    constraint = _constraint(grammar, require="required")
    assert bytes(constraint.forced()).decode() == "[CALL] c1 [HEAD] get_"
    named = _constraint(grammar, require="get_time", first=call_grammar(ALL, only="get_time"))
    assert bytes(named.forced()).decode() == '[CALL] c1 [HEAD] get_time(zone="'
    unconstrained = _constraint(None, require="get_time")
    assert bytes(unconstrained.forced()).decode() == "[CALL] c1 [HEAD] get_time("
    assert unconstrained.allowed() is None


def test_abandon_leaves_the_block_free() -> None:
    constraint = _constraint(call_grammar([get_time.spec()]))
    _write(constraint, "[CALL]", "")
    assert constraint.in_block
    constraint.abandon()
    assert not constraint.in_block and constraint.forced() == []


def test_choose_applies_a_grammar_mask_and_prefers_it_over_bans() -> None:
    logits = torch.tensor([5.0, 4.0, 3.0, 2.0])
    allowed = torch.tensor([False, True, True, False])
    assert choose(logits, temperature=0, top_p=1, generator=None, allowed=allowed).token_id == 1
    banned = torch.tensor([1])
    pick = choose(logits, temperature=0, top_p=1, generator=None, allowed=allowed, banned=banned)
    assert pick.token_id == 2
    everything = torch.tensor([1, 2])  # the bans leave nothing the grammar allows
    pick = choose(
        logits, temperature=0, top_p=1, generator=None, allowed=allowed, banned=everything
    )
    assert pick.token_id == 1


def test_tool_choice_is_validated() -> None:
    assert SamplingParams().tool_choice == "auto"
    for choice in ("auto", "required", "none", "get_weather", "spotify.play"):
        assert SamplingParams(tool_choice=choice).tool_choice == choice
    with pytest.raises(ValueError, match="tool_choice"):
        SamplingParams(tool_choice="get weather")


def test_agent_takes_tool_choice() -> None:
    from counterpoint.agents.agent import Agent
    from counterpoint.testing import ScriptedModel

    model = ScriptedModel("hi")
    agent = Agent(tools=[get_weather], model=model, tool_choice="required", tracer=False)
    assert agent.params is not None and agent.params.tool_choice == "required"
    assert agent.session().params.tool_choice == "required"
    assert agent.replace(tool_choice="none").params.tool_choice == "none"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="tool_choice"):
        Agent(tools=[get_weather], tool_choice="not a name", tracer=False)


def test_no_warning_for_fully_typed_tools() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call_grammar([everything.spec(), get_weather.spec()])


def test_a_parameter_name_calls_cannot_spell_is_left_out_with_a_warning() -> None:
    spec = ToolSpec(
        name="tag",
        parameters={
            "type": "object",
            "properties": {"first-name": {"type": "string"}, "n": {"type": "integer"}},
        },
    )
    with pytest.warns(GrammarFallbackWarning, match="first-name"):
        grammar = call_grammar([spec])
    assert accepts(grammar, "tag(n=1)")
    assert not accepts(grammar, 'tag(first-name="a")')


def test_a_token_the_grammar_refuses_ends_the_constraint_with_a_warning() -> None:
    from counterpoint.runtime.backends._constrain import ConstraintWarning

    constraint = _constraint(call_grammar([get_time.spec()]))
    written = _write(constraint, "[CALL]", "")
    assert constraint.in_block and written.endswith('get_time(zone="')
    with pytest.warns(ConstraintWarning, match="unconstrained"):
        constraint.observe(ord("\n"), written + "\n")  # a raw newline inside the string
    assert not constraint.in_block and constraint.allowed() is None
    assert constraint.forced() == []


def test_without_a_grammar_only_the_required_first_call_is_written_for_the_model() -> None:
    constraint = _constraint(None, require="required")
    assert bytes(constraint.forced()).decode() == "[CALL] c1 [HEAD]"
    written = _write(constraint, ' get_time(zone="UTC") [END]\n[CALL]', "[CALL] c1 [HEAD]")
    assert written.endswith("[END]\n[CALL]")  # later blocks are the model's own
    assert constraint.calls == 1
