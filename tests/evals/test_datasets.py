"""Tests for counterpoint.evals.datasets: finding the BFCL data and loading categories.

The real data comes from the installed ``bfcl-eval`` package; malformed files are written to a
temporary folder. Only the development categories are loaded here (``live_*`` is held back).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.evals.datasets import (
    DEVELOPMENT_CATEGORIES,
    BFCLCase,
    DatasetError,
    case_prompt,
    categories,
    data_dir,
    is_held_back,
    load_category,
    tool_spec,
)
from counterpoint.runtime.backends.base import Message
from counterpoint.tools.tool import Tool

EXPECTED_SIZES = {"simple_python": 400, "multiple": 200, "parallel": 200, "parallel_multiple": 200}


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COUNTERPOINT_BFCL_DIR", raising=False)


def _case_line(case_id: str, name: str = "get_weather", **extra: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": case_id,
        "question": [[{"role": "user", "content": "Weather in Paris?"}]],
        "function": [
            {
                "name": name,
                "description": "Current weather.",
                "parameters": {
                    "type": "dict",
                    "properties": {"city": {"type": "string", "description": "City."}},
                    "required": ["city"],
                },
            }
        ],
    }
    line.update(extra)
    return line


def _answer_line(case_id: str, name: str = "get_weather") -> dict[str, Any]:
    return {"id": case_id, "ground_truth": [{name: {"city": ["Paris"]}}]}


def _write(folder: Path, category: str, cases: list[Any], answers: list[Any] | None) -> None:
    """Write JSON lines; a str item is written verbatim (to make malformed lines)."""

    def dump(items: list[Any]) -> str:
        return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items)

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"BFCL_v4_{category}.json").write_text(dump(cases), encoding="utf-8")
    if answers is not None:
        (folder / "possible_answer").mkdir(exist_ok=True)
        (folder / "possible_answer" / f"BFCL_v4_{category}.json").write_text(
            dump(answers), encoding="utf-8"
        )


# -- finding the data ------------------------------------------------------------------------


def test_data_dir_is_the_installed_package_data_folder() -> None:
    root = data_dir()
    assert root.name == "data"
    assert root.parent.name == "bfcl_eval"
    assert (root / "BFCL_v4_simple_python.json").is_file()
    assert (root / "possible_answer" / "BFCL_v4_simple_python.json").is_file()


def test_env_var_and_override_choose_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_dir, arg_dir = tmp_path / "env", tmp_path / "arg"
    _write(env_dir, "simple_python", [_case_line("simple_python_0")], [_answer_line("x")])
    _write(arg_dir, "parallel", [_case_line("parallel_0")], [_answer_line("parallel_0")])
    monkeypatch.setenv("COUNTERPOINT_BFCL_DIR", str(env_dir))
    assert data_dir() == env_dir
    assert data_dir(arg_dir) == arg_dir
    assert categories() == ["simple_python"]
    assert categories(data_dir=arg_dir) == ["parallel"]


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError) as info:
        data_dir()
    message = str(info.value)
    assert "pip install --no-deps bfcl-eval==2026.3.23" in message
    assert "--data-dir" in message
    assert isinstance(info.value, CounterpointError)


def test_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist.*--data-dir"):
        data_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"holds no BFCL_v\*_<category>\.json"):
        load_category("simple_python", data_dir=tmp_path / "empty")


def test_newest_file_version_wins(tmp_path: Path) -> None:
    _write(tmp_path, "simple_python", [_case_line("v4")], [_answer_line("v4")])
    (tmp_path / "BFCL_v3_simple_python.json").write_text(json.dumps(_case_line("v3")) + "\n")
    (tmp_path / "BFCL_v4_live_simple_python.json").write_text("not json\n")
    [case] = load_category("simple_python", data_dir=tmp_path)
    assert case.id == "v4"


def test_categories_lists_development_first() -> None:
    found = categories()
    assert found[: len(DEVELOPMENT_CATEGORIES)] == list(DEVELOPMENT_CATEGORIES)
    assert all(not is_held_back(c) for c in DEVELOPMENT_CATEGORIES)
    assert is_held_back("live_simple")


# -- loading the real data -------------------------------------------------------------------


@pytest.mark.parametrize("category", DEVELOPMENT_CATEGORIES)
def test_development_categories_load_whole(category: str) -> None:
    cases = load_category(category)
    assert len(cases) == EXPECTED_SIZES[category]
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert case.category == category
        assert case.id.startswith(category + "_")
        assert case.expected_calls, case.id
        for name, allowed in case.expected_calls:
            assert case.function(name) is not None
            assert all(isinstance(v, list) for v in allowed.values())
        assert case_prompt(case)[-1].role == "user"
    if category.startswith("parallel"):
        assert any(len(c.possible_answer) > 1 for c in cases)
    if category.endswith("multiple"):
        assert any(len(c.functions) > 1 for c in cases)


def test_parsed_case_matches_the_file() -> None:
    [case] = [c for c in load_category("simple_python", limit=3) if c.id == "simple_python_2"]
    assert case.functions[0]["name"] == "math.hypot"
    assert case.possible_answer == [{"math.hypot": {"x": [4], "y": [5], "z": ["", 0]}}]
    assert case.expected_calls == [("math.hypot", {"x": [4], "y": [5], "z": ["", 0]})]
    assert case.function("math_hypot") is case.functions[0]
    assert case.function("math.floor") is None
    [message] = case_prompt(case)
    assert isinstance(message, Message)
    assert "hypotenuse" in message.content


def test_limit_keeps_the_first_cases() -> None:
    cases = load_category("parallel", limit=5)
    assert [c.id for c in cases] == [f"parallel_{i}" for i in range(5)]
    assert load_category("parallel", limit=0) == []


def test_irrelevance_expects_no_call() -> None:
    cases = load_category("irrelevance", limit=3)
    assert len(cases) == 3
    assert all(c.possible_answer == [] and c.functions for c in cases)


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown BFCL category 'simple'.*simple_python"):
        load_category("simple")
    with pytest.raises(ConfigError, match="limit"):
        load_category("simple_python", limit=-1)


# -- malformed files ---------------------------------------------------------------------------


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path, "multiple", [_case_line("multiple_0"), '{"id": "multiple_1", '], [])
    with pytest.raises(DatasetError) as info:
        load_category("multiple", data_dir=tmp_path)
    assert "BFCL_v4_multiple.json line 2: not valid JSON" in str(info.value)


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    bad = _case_line("multiple_1")
    del bad["function"]
    _write(
        tmp_path,
        "multiple",
        [_case_line("multiple_0"), "", bad],
        [_answer_line("multiple_0"), _answer_line("multiple_1")],
    )
    with pytest.raises(DatasetError, match=r"BFCL_v4_multiple\.json line 3: .*'function'"):
        load_category("multiple", data_dir=tmp_path)


def test_malformed_field_names_where(tmp_path: Path) -> None:
    bad = _case_line("multiple_0", question=[[{"role": "user"}]])
    _write(tmp_path, "multiple", [bad], [_answer_line("multiple_0")])
    with pytest.raises(DatasetError, match=r"line 1: .*question\.0\.0\.content"):
        load_category("multiple", data_dir=tmp_path)


def test_missing_answer_names_the_id(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "parallel",
        [_case_line("parallel_0"), _case_line("parallel_1")],
        [_answer_line("parallel_0")],
    )
    with pytest.raises(DatasetError) as info:
        load_category("parallel", data_dir=tmp_path)
    message = str(info.value)
    assert "line 2" in message and "'parallel_1'" in message
    assert "possible_answer" in message and "ground_truth" in message


def test_missing_answer_file(tmp_path: Path) -> None:
    _write(tmp_path, "parallel", [_case_line("parallel_0")], None)
    with pytest.raises(DatasetError, match=r"no possible answers for BFCL_v4_parallel\.json"):
        load_category("parallel", data_dir=tmp_path)


def test_malformed_answer_names_the_answer_line(tmp_path: Path) -> None:
    answers = [
        _answer_line("parallel_0"),
        {"id": "parallel_1", "ground_truth": [{"get_weather": {"city": "Paris"}}]},
    ]
    _write(tmp_path, "parallel", [_case_line("parallel_0"), _case_line("parallel_1")], answers)
    with pytest.raises(DatasetError) as info:
        load_category("parallel", data_dir=tmp_path)
    message = str(info.value)
    assert "possible_answer/BFCL_v4_parallel.json line 2" in message
    assert "ground_truth.0.get_weather.city" in message


def test_answer_without_ground_truth(tmp_path: Path) -> None:
    _write(tmp_path, "parallel", [_case_line("parallel_0")], [{"id": "parallel_0"}])
    with pytest.raises(DatasetError, match=r"line 1: .*'ground_truth'"):
        load_category("parallel", data_dir=tmp_path)


def test_answer_naming_a_function_not_offered(tmp_path: Path) -> None:
    _write(tmp_path, "simple_python", [_case_line("s_0")], [_answer_line("s_0", name="get_time")])
    with pytest.raises(DatasetError, match=r"line 1: .*'get_time' is not among the offered"):
        load_category("simple_python", data_dir=tmp_path)


def test_repeated_ids_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "simple_python", [_case_line("s_0"), _case_line("s_0")], [_answer_line("s_0")])
    with pytest.raises(DatasetError, match=r"line 2: id 's_0' repeats line 1"):
        load_category("simple_python", data_dir=tmp_path)


def test_a_case_needs_one_function_per_expected_call() -> None:
    with pytest.raises(ValueError, match="exactly one function name"):
        BFCLCase(
            id="x",
            category="simple_python",
            question=[],
            functions=_case_line("x")["function"],
            possible_answer=[{"get_weather": {}, "other": {}}],
        )


# -- tools and prompts -------------------------------------------------------------------------


def test_tool_spec_is_json_schema() -> None:
    doc: dict[str, Any] = {
        "name": "geo.distance",
        "description": "Distance between points.",
        "parameters": {
            "type": "dict",
            "properties": {
                "a": {"type": "tuple", "items": {"type": "float"}, "description": "Point a."},
                "opts": {
                    "type": "dict",
                    "properties": {"unit": {"type": "string", "enum": ["km", "mi"]}},
                },
                "rows": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                "data": {"type": "any", "description": "Anything."},
                "fast": {"type": "boolean", "default": False},
            },
            "required": ["a"],
        },
    }
    spec = tool_spec(doc)
    params = spec["parameters"]
    assert spec["name"] == "geo.distance" and spec["description"] == "Distance between points."
    assert params["type"] == "object" and params["required"] == ["a"]
    props = params["properties"]
    assert props["a"] == {"type": "array", "items": {"type": "number"}, "description": "Point a."}
    assert props["opts"]["type"] == "object"
    assert props["opts"]["properties"]["unit"] == {"type": "string", "enum": ["km", "mi"]}
    assert props["rows"]["items"] == {"type": "array", "items": {"type": "integer"}}
    assert props["data"] == {"description": "Anything."}
    assert props["fast"] == {"type": "boolean", "default": False}
    assert doc["parameters"]["type"] == "dict"  # the input is left untouched
    assert tool_spec(doc, flat_name=True)["name"] == "geo_distance"


def test_tool_specs_of_real_cases_use_standard_types() -> None:
    standard = {"string", "integer", "number", "boolean", "array", "object"}

    def types(schema: dict[str, Any]) -> set[str]:
        found = {schema["type"]} if "type" in schema else set()
        for sub in schema.get("properties", {}).values():
            found |= types(sub)
        if isinstance(schema.get("items"), dict):
            found |= types(schema["items"])
        return found

    for category in DEVELOPMENT_CATEGORIES:
        for case in load_category(category):
            for doc in case.functions:
                assert types(tool_spec(doc)["parameters"]) <= standard, case.id


def test_tool_specs_are_normalised_as_tools_normalise_them() -> None:
    # one BFCL -> JSON Schema translation: the spec offered to a model is the schema the tool
    # built from it validates with
    doc: dict[str, Any] = {
        "name": "inventory.check",
        "description": "Stock of items.",
        "parameters": {
            "type": "dict",
            "properties": {
                "items": {"type": "ArrayList", "items": {"type": "String"}},
                "pair": {"type": "tuple", "items": [{"type": "float"}, {"type": "str"}]},
            },
            "required": ["items", "warehouse"],  # "warehouse" is not a property
        },
    }
    params = tool_spec(doc)["parameters"]
    assert params["required"] == ["items"]
    assert params["properties"]["items"] == {"type": "array", "items": {"type": "string"}}
    assert params["properties"]["pair"] == {
        "type": "array",
        "prefixItems": [{"type": "number"}, {"type": "string"}],
    }
    assert params == Tool.from_schema(doc).parameters
    for category in DEVELOPMENT_CATEGORIES:
        for case in load_category(category, limit=40):
            for function in case.functions:
                assert tool_spec(function)["parameters"] == Tool.from_schema(function).parameters
