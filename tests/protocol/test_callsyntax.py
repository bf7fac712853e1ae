"""Tests for parsing call bodies (Python call syntax and JSON) without evaluating anything."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.protocol.callsyntax import (
    CallSyntaxError,
    ParsedCall,
    format_call_body,
    parse_call,
)

# -- Python form ---------------------------------------------------------------------------------


def test_simple_call() -> None:
    assert parse_call('get_weather(city="Paris")') == ParsedCall(
        "get_weather", {"city": "Paris"}, ()
    )


def test_no_arguments_and_surrounding_whitespace() -> None:
    assert parse_call("  \n now() \n") == ParsedCall("now", {}, ())


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ('"text"', "text"),
        ("'single'", "single"),
        ('"a" "b"', "ab"),
        ('"""tri\nple"""', "tri\nple"),
        ('"caf\\u00e9 \\n"', "café \n"),
        ("42", 42),
        ("-7", -7),
        ("+7", 7),
        ("--7", 7),
        ("1_000", 1000),
        ("0x1F", 31),
        ("3.5", 3.5),
        ("-2.5e-3", -0.0025),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 'a', None]", [1, "a", None]),
        ("(1, 2)", [1, 2]),
        ("()", []),
        ("[]", []),
        ("{}", {}),
        ('{"k": [1, {"n": -1.5}], 2: (true, null)}', {"k": [1, {"n": -1.5}], 2: [True, None]}),
    ],
)
def test_literal_values(source: str, value: Any) -> None:
    parsed = parse_call(f"f(x={source})")
    assert strict_equal(parsed.arguments["x"], value)


def test_negative_zero_keeps_its_sign() -> None:
    assert math.copysign(1.0, parse_call("f(x=-0.0)").arguments["x"]) == -1.0


def test_positional_and_keyword_arguments() -> None:
    parsed = parse_call('math.hypot(3, -4.0, "s", round=True)')
    assert parsed == ParsedCall("math.hypot", {"round": True}, (3, -4.0, "s"))


def test_dotted_names() -> None:
    assert parse_call('spotify.play(artist="x")').name == "spotify.play"
    assert parse_call("a.b.c.d()").name == "a.b.c.d"
    assert parse_call("math.sqrt(16)").positional == (16,)


def test_multiline_body_and_trailing_comma_and_semicolon() -> None:
    body = 'search(\n    query="x",  # comment\n    limit=2,\n);'
    assert parse_call(body) == ParsedCall("search", {"query": "x", "limit": 2}, ())


def test_keyword_argument_named_after_a_python_keyword() -> None:
    parsed = parse_call('book_flight(from="NYC", to="LA", class="economy", lambda=1)')
    assert parsed.arguments == {"from": "NYC", "to": "LA", "class": "economy", "lambda": 1}
    # A keyword inside a string or as a value is not renamed.
    assert parse_call('f(x="from=1", y=[1, 2])').arguments == {"x": "from=1", "y": [1, 2]}


def test_code_fences_and_backticks_are_unwrapped() -> None:
    expected = ParsedCall("f", {"x": 1}, ())
    assert parse_call("```python\nf(x=1)\n```") == expected
    assert parse_call("```\nf(x=1)\n```") == expected
    assert parse_call("`f(x=1)`") == expected


def test_nothing_is_evaluated() -> None:
    # Would raise or have effects if evaluated; must be rejected by the tree walk instead.
    for body in ['f(x=__import__("os").system("false"))', "f(x=open('/etc/passwd').read())"]:
        with pytest.raises(CallSyntaxError, match="function call inside an argument"):
            parse_call(body)


# -- Python form errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("f(x=Paris)", ["argument 'x'", "column 5", "Paris is a name", 'write "Paris"']),
        ("f(x=g(1))", ["argument 'x'", "g(1)", "function call inside an argument"]),
        ("f(x=[1, g()])", ["argument 'x'", "g()", "function call"]),
        ("f(1, y)", ["positional argument 2", "y is a name"]),
        ("f(x=a.b)", ["a.b", "attribute"]),
        ("f(x=lambda: 1)", ["lambda"]),
        ("f(x=1 + 2)", ["1 + 2", "expression"]),
        ("f(x={1, 2})", ["set", "list"]),
        ('f(x=f"{a}")', ["f-string"]),
        ('f(x=b"raw")', ["bytes"]),
        ("f(x=1j)", ["complex"]),
        ("f(x=...)", ["ellipsis"]),
        ('f(x=-"s")', ["sign"]),
        ("f(x={**d})", ["**"]),
        ("f(x={[1]: 2})", ["dict key"]),
        ("f(*args)", ["*args", "unpacking"]),
        ("f(**kw)", ["**kw", "not allowed", "name=value"]),
        ("f(x=1, x=2)", ["'x'", "twice"]),
        ("f(x=g(from=1))", ["g(from=1)", "function call"]),
        ("a().b()", ["a().b", "must be a name"]),
        ("f(1)(2)", ["f(1)", "must be a name"]),
        ("'s'.upper()", ["must be a name"]),
        ("get_weather", ["not a function call", "get_weather(...)"]),
        ("42", ["not a function call"]),
        ("x = f()", ["x = f()", "not a function call", "without assigning"]),
        ("import os", ["not a function call"]),
        ("f(x=1); g()", ["2 statements", "own [CALL]"]),
        ("f(x=1) trailing", ["Could not parse", "column 8"]),
        ("f(x=1", ["never closed", "every quote and bracket"]),
        ('f(x="abc)', ["unterminated string"]),
        ("", ["empty"]),
        ("   \n", ["empty"]),
        ("# only a comment", ["empty"]),
        ("f(x=1\0)", ["Could not parse"]),
        ("f(x=" + "[" * 300 + "]" * 300 + ")", ["Could not parse"]),
    ],
)
def test_errors_say_what_and_where(body: str, fragments: list[str]) -> None:
    with pytest.raises(CallSyntaxError) as info:
        parse_call(body)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_call_syntax_error_is_a_value_error() -> None:
    assert issubclass(CallSyntaxError, ValueError)


# -- JSON form -----------------------------------------------------------------------------------


def test_json_form() -> None:
    expected = ParsedCall("get_weather", {"city": "Paris", "days": [1, 2]}, ())
    arguments = '{"city": "Paris", "days": [1, 2]}'
    assert parse_call(f'{{"name": "get_weather", "arguments": {arguments}}}') == expected
    assert parse_call(f'{{"name": "get_weather", "parameters": {arguments}}}') == expected
    as_string = json.dumps({"name": "get_weather", "arguments": arguments})
    assert '"arguments": "{' in as_string
    assert parse_call(as_string) == expected


def test_json_form_leniency() -> None:
    assert parse_call('{"name": "now"}') == ParsedCall("now", {}, ())
    assert parse_call('{"name": "now", "arguments": ""}') == ParsedCall("now", {}, ())
    assert parse_call('{"name": "now", "arguments": null}') == ParsedCall("now", {}, ())
    assert parse_call('{"name": " f ", "arguments": {"s": "\\ud83d\\ude00"}}') == ParsedCall(
        "f", {"s": "😀"}, ()
    )
    # A dict in Python syntax (single quotes, True, trailing comma) is accepted as well.
    assert parse_call("{'name': 'f', 'arguments': {'ok': True,},}") == ParsedCall(
        "f", {"ok": True}, ()
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"name": "f", "args": {}}', "Unknown key(s) 'args'"),
        ('{"arguments": {}}', '"name"'),
        ('{"name": 3, "arguments": {}}', '"name"'),
        ('{"name": "", "arguments": {}}', '"name"'),
        ('{"name": "f", "arguments": [1]}', "must be an object"),
        ('{"name": "f", "arguments": "[1]"}', "must be an object"),
        ('{"name": "f", "arguments": {}, "parameters": {}}', "once"),
        ('{"name": "f", "arguments": "{oops"}', 'the "arguments" string'),
        ('{"name": "f", "arguments": {}} {"name": "g"}', "Unexpected text after the JSON call"),
        ('{"name": "f", "arguments": {"x": 1}', "Could not parse the JSON call"),
        ("{'name': 'f', 'arguments': {'x': g()}}", "function call"),
        ("{'name': 'f', 'arguments': {1: 2}}", "must be an object"),
    ],
)
def test_json_form_errors(body: str, fragment: str) -> None:
    with pytest.raises(CallSyntaxError) as info:
        parse_call(body)
    assert fragment in str(info.value)


# -- format_call_body ----------------------------------------------------------------------------


def test_format_call_body() -> None:
    assert format_call_body("f", {"a": 1, "b": "x"}) == 'f(a=1, b="x")'
    assert format_call_body("spotify.play", {}) == "spotify.play()"
    assert (
        format_call_body("f", {"s": 'q"\\\n\x00é', "l": (1, None, True), "d": {"k": -0.5, 2: []}})
        == 'f(s="q\\"\\\\\\n\\x00é", l=[1, None, True], d={"k": -0.5, 2: []})'
    )


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("get-weather", {}, ValueError),
        ("a..b", {}, ValueError),
        ("", {}, ValueError),
        ("f", {"bad key": 1}, ValueError),
        ("f", {"None": 1}, ValueError),
        ("f", {"ﬁ": 1}, ValueError),  # Python would read it back as "fi"
        ("f", {"x": math.inf}, ValueError),
        ("f", {"x": math.nan}, ValueError),
        ("f", {"x": b"bytes"}, TypeError),
        ("f", {"x": {1, 2}}, TypeError),
        ("f", {"x": {(1, 2): 3}}, TypeError),
    ],
)
def test_format_call_body_rejects_what_cannot_round_trip(
    name: str, arguments: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        format_call_body(name, arguments)


# -- property tests ------------------------------------------------------------------------------


def strict_equal(a: Any, b: Any) -> bool:
    """Equality that also compares types (True != 1) and the sign of zero."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def normalize(value: Any) -> Any:
    """Tuples come back as lists."""
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    return value


_KEYS = st.none() | st.integers() | st.text(max_size=5)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(st.characters(blacklist_categories=()), max_size=5),  # surrogates, controls
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=10,
)
_IDENTIFIERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
    lambda s: s not in ("True", "False", "None")
)
_ARG_NAMES = _IDENTIFIERS | st.sampled_from(["from", "class", "import", "lambda", "if", "in"])
_NAMES = st.lists(
    _IDENTIFIERS.filter(lambda s: not __import__("keyword").iskeyword(s)), min_size=1, max_size=3
).map(".".join)


@settings(max_examples=200, deadline=None)
@given(name=_NAMES, arguments=st.dictionaries(_ARG_NAMES, _VALUES, max_size=5))
def test_format_then_parse_round_trips(name: str, arguments: dict[str, Any]) -> None:
    body = format_call_body(name, arguments)
    parsed = parse_call(body)
    assert parsed.name == name
    assert parsed.positional == ()
    assert strict_equal(parsed.arguments, normalize(arguments))


@settings(max_examples=200, deadline=None)
@given(
    body=st.text(max_size=40)
    | st.lists(
        st.sampled_from(["f", "(", ")", "x", "=", "1", ",", '"', "[", "]", "{", "}", ":", "from"])
    ).map("".join)
)
def test_parse_call_only_ever_raises_call_syntax_error(body: str) -> None:
    try:
        parsed = parse_call(body)
    except CallSyntaxError as exc:
        assert str(exc)
    else:
        assert parsed.name


# -- hostile bodies: a CallSyntaxError and nothing else, quickly ------------------------------

HOSTILE_BODIES = {
    "int_past_digit_limit": "f(x=" + "1" * 5000 + ")",
    "json_int_past_digit_limit": '{"name": "f", "arguments": {"x": ' + "9" * 5000 + "}}",
    "unary_minus_chain": "f(x=" + "-" * 1000 + "1)",
    "deep_list": "f(x=" + "[" * 1000 + "]" * 1000 + ")",
    "deep_json": '{"name": "f", "arguments": {"x": ' + "[" * 5000 + "]" * 5000 + "}}",
    "deep_dict": "f(x=" + "{1: " * 300 + "1" + "}" * 300 + ")",
    "unclosed_parens": "(" * 50_000,
    "huge_body": "f(x=" + "1" * 10_000_000 + ")",
    "lambda": "f(x=lambda: __import__('os'))",
    "attribute_call": "f(x=__import__('os').system('true'))",
    "fstring": "f(x=f'{__import__(\"os\")}')",
    "walrus": "f(x=(y := 1))",
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_a_hostile_body_is_a_call_syntax_error(name: str) -> None:
    with pytest.raises(CallSyntaxError):
        parse_call(HOSTILE_BODIES[name])


def test_a_body_past_the_limit_is_refused_unread_and_names_the_limit() -> None:
    with pytest.raises(CallSyntaxError, match="over the limit of 100") as caught:
        parse_call("f(x='" + "a" * 200 + "')", max_chars=100)
    assert "max_call_chars" in str(caught.value)
    assert parse_call("f(x=1)", max_chars=6).arguments == {"x": 1}
