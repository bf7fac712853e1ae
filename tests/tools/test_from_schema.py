"""Tool.from_schema: BFCL and OpenAI function descriptions, normalised and validated."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from counterpoint.tools.tool import (
    Progress,
    SchemaTool,
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
)

BFCL_SPEC: dict[str, Any] = {
    "name": "travel.plan",
    "description": "Plan a trip.\n\nLonger explanation.",
    "parameters": {
        "type": "dict",
        "properties": {
            "city": {"type": "string", "description": "Destination."},
            "coords": {"type": "tuple", "items": {"type": "float"}, "description": "Lat, lon."},
            "budget": {"type": "float", "description": "In euros.", "default": 1000.0},
            "nights": {"type": "integer"},
            "mode": {"type": "string", "enum": ["train", "plane"], "default": "train"},
            "options": {
                "type": "dict",
                "properties": {
                    "hotel": {"type": "boolean"},
                    "stops": {"type": "array", "items": {"type": "String"}},
                },
                "required": ["hotel"],
            },
            "extra": {"type": "any", "description": "Anything."},
            "note": {"type": "string"},
        },
        "required": ["city", "nights", "ghost"],
    },
}

OPENAI_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_bfcl_types_are_normalised_to_json_schema() -> None:
    original = copy.deepcopy(BFCL_SPEC)
    t = Tool.from_schema(BFCL_SPEC)
    assert original == BFCL_SPEC  # the input is not modified
    assert isinstance(t, SchemaTool)
    assert t.name == "travel.plan"
    props = t.parameters["properties"]
    assert t.parameters["type"] == "object"
    assert props["coords"] == {
        "type": "array",
        "items": {"type": "number"},
        "description": "Lat, lon.",
    }
    assert props["budget"]["type"] == "number"
    assert props["options"]["type"] == "object"
    assert props["options"]["properties"]["stops"]["items"] == {"type": "string"}
    assert "type" not in props["extra"]
    assert t.parameters["required"] == ["city", "nights"]  # 'ghost' is not a property


def test_bfcl_signature() -> None:
    t = Tool.from_schema(BFCL_SPEC)
    assert t.signature() == (
        "travel.plan(city: str, coords: list[float] = None, budget: float = 1000.0, nights: int, "
        'mode: Literal["train", "plane"] = "train", options: {hotel: bool, stops: list[str]} = '
        "None, extra: Any = None, note: str = None) - Plan a trip."
    )
    assert t.description == "Plan a trip.\n\nLonger explanation."


def test_valid_bfcl_arguments() -> None:
    t = Tool.from_schema(BFCL_SPEC)
    args = {
        "city": "Rome",
        "coords": (41.9, 12),  # a tuple, and an int where a float is expected
        "budget": 500,
        "nights": 3,
        "options": {"hotel": True, "stops": ["Pisa"]},
        "extra": {"anything": [1, None]},
    }
    assert t.validate(args) == args


def test_positional_arguments_follow_property_order() -> None:
    t = Tool.from_schema(BFCL_SPEC)
    assert t.validate({"nights": 2}, ("Rome", [1.0, 2.0])) == {
        "city": "Rome",
        "coords": [1.0, 2.0],
        "nights": 2,
    }


def test_none_for_an_optional_parameter_means_left_out() -> None:
    t = Tool.from_schema(BFCL_SPEC)
    assert t.validate({"city": "Rome", "nights": 1, "note": None}) == {"city": "Rome", "nights": 1}
    with pytest.raises(ToolArgumentError, match="argument 'city': None is not of type 'string'"):
        t.validate({"city": None, "nights": 1})


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"nights": 1}, "missing required argument 'city'"),
        ({"city": "Rome", "nights": True}, "argument 'nights': True is not of type 'integer'"),
        ({"city": "Rome", "nights": 1.5}, "argument 'nights': 1.5 is not of type 'integer'"),
        ({"city": "Rome", "nights": 1, "mode": "car"}, "'car' is not one of ['train', 'plane']"),
        ({"city": "Rome", "nights": 1, "coords": ["a"]}, "argument 'coords[0]': 'a' is not"),
        ({"city": "Rome", "nights": 1, "options": {}}, "argument 'options': 'hotel' is a required"),
        ({"city": "Rome", "nights": 1, "days": 2}, "unexpected argument 'days' (accepted: city,"),
    ],
)
def test_invalid_arguments(arguments: dict[str, Any], expected: str) -> None:
    t = Tool.from_schema(BFCL_SPEC)
    with pytest.raises(ToolArgumentError) as info:
        t.validate(arguments)
    message = str(info.value)
    assert expected in message
    assert message.startswith("invalid arguments for travel.plan: ")
    assert "Expected: travel.plan(city: str, " in message


def test_openai_format() -> None:
    t = Tool.from_schema(OPENAI_SPEC)
    assert (t.name, t.description) == ("get_weather", "Current weather.")
    assert t.openai_schema() == OPENAI_SPEC
    assert t.validate({"city": "Oslo"}) == {"city": "Oslo"}
    bare = Tool.from_schema(OPENAI_SPEC["function"])
    assert bare.parameters == t.parameters


def test_anthropic_input_schema_and_missing_parameters() -> None:
    t = Tool.from_schema(
        {
            "name": "ping",
            "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        }
    )
    assert t.validate({"n": 1}) == {"n": 1}
    empty = Tool.from_schema({"name": "now"})
    assert empty.parameters == {"type": "object", "properties": {}}
    assert empty.signature() == "now()"
    with pytest.raises(ToolArgumentError, match="unexpected argument 'x' \\(accepted: none\\)"):
        empty.validate({"x": 1})


def test_additional_properties_allowed_when_the_schema_says_so() -> None:
    t = Tool.from_schema(
        {
            "name": "f",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": True},
        }
    )
    assert t.validate({"anything": 1}) == {"anything": 1}


def test_bad_specs_raise_definition_errors() -> None:
    with pytest.raises(ToolDefinitionError, match="'name'"):
        Tool.from_schema({"description": "no name"})
    with pytest.raises(ToolDefinitionError, match="must describe an object"):
        Tool.from_schema({"name": "f", "parameters": {"type": "string"}})
    with pytest.raises(ToolDefinitionError, match="invalid parameters schema"):
        Tool.from_schema({"name": "f", "parameters": {"type": "dict", "required": "city"}})
    with pytest.raises(ToolDefinitionError, match="invalid tool name"):
        Tool.from_schema({"name": "my tool"})
    with pytest.raises(ToolDefinitionError, match="JSON object"):
        Tool.from_schema([])  # type: ignore[arg-type]


async def test_impl_sync_and_async() -> None:
    calls: list[dict[str, Any]] = []

    def sync_impl(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"ok": True}

    async def async_impl(city: str, unit: str = "c") -> str:
        await asyncio.sleep(0)
        return f"{city}/{unit}"

    t1 = Tool.from_schema(OPENAI_SPEC, sync_impl)
    assert await t1.invoke({"city": "Oslo"}) == {"ok": True}
    assert calls == [{"city": "Oslo"}]
    t2 = Tool.from_schema(OPENAI_SPEC, async_impl, timeout_s=1.0, estimated_latency_s=0.2)
    assert await t2.invoke({"city": "Oslo", "unit": "f"}) == "Oslo/f"
    assert (t2.timeout_s, t2.estimated_latency_s) == (1.0, 0.2)
    with pytest.raises(ToolArgumentError):
        await t2.invoke({"unit": "f"})


async def test_impl_gets_progress_when_it_asks_for_it() -> None:
    seen: list[str] = []

    async def impl(city: str, progress: Progress) -> str:
        progress("looking")
        return city

    t = Tool.from_schema(OPENAI_SPEC, impl)
    assert await t.invoke({"city": "Oslo"}, Progress(lambda m, f: seen.append(m))) == "Oslo"
    assert seen == ["looking"]
    assert "progress" not in t.parameters["properties"]


async def test_invoking_without_impl_is_a_clear_error() -> None:
    t = Tool.from_schema(OPENAI_SPEC)
    assert t.validate({"city": "Oslo"}) == {"city": "Oslo"}
    with pytest.raises(ToolDefinitionError, match="no implementation; pass impl="):
        await t.invoke({"city": "Oslo"})


# -- real BFCL data ---------------------------------------------------------------------------


def _bfcl_data() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or spec.origin is None:
        pytest.skip("bfcl-eval is not installed (pip install --no-deps bfcl-eval)")
    return Path(spec.origin).parent / "data"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _first_choice(options: list[Any]) -> tuple[bool, Any]:
    """BFCL possible answers list acceptable values; "" means the argument may be left out."""
    for value in options:
        if value != "":
            if isinstance(value, dict):
                value = {
                    k: _first_choice(v)[1] if isinstance(v, list) else v for k, v in value.items()
                }
            return True, value
    return False, None


@pytest.mark.parametrize("category", ["simple_python", "multiple", "parallel", "parallel_multiple"])
def test_bfcl_functions_build_and_accept_their_possible_answers(category: str) -> None:
    data = _bfcl_data()
    cases = _jsonl(data / f"BFCL_v4_{category}.json")
    answers = {
        a["id"]: a["ground_truth"]
        for a in _jsonl(data / "possible_answer" / f"BFCL_v4_{category}.json")
    }
    checked = rejected = 0
    for case in cases[::3]:  # a third of the cases keeps this to well under a second each
        tools = {f["name"]: Tool.from_schema(f) for f in case["function"]}
        for call in answers[case["id"]]:
            for name, params in call.items():
                args = {}
                for key, options in params.items():
                    given, value = _first_choice(options)
                    if given:
                        args[key] = value
                checked += 1
                try:
                    tools[name].validate(args)
                except ToolArgumentError:
                    rejected += 1
                # Leaving out every required argument is always rejected.
                if tools[name].parameters.get("required"):
                    with pytest.raises(ToolArgumentError, match="missing required argument"):
                        tools[name].validate({})
    assert checked >= 60
    # A handful of BFCL answers contradict their own schema (a bool for a string, a key not in
    # the schema); everything else must pass.
    assert rejected <= max(2, checked // 100), f"{rejected} of {checked} answers rejected"
