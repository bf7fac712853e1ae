"""@tool: schemas from type hints and docstrings, validation, invocation."""

from __future__ import annotations

import asyncio
import enum
import functools
import threading
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.tools.tool import (
    FunctionTool,
    Progress,
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
    tool,
)

# -- module-level types and tools (string annotations resolve against module globals) ---------


class Address(BaseModel):
    street: str
    zip_code: int | None = None


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Node(BaseModel):
    value: int
    children: list[Node] = []


@tool
def google_style(city: str, days: int = 3, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
    """Forecast the weather.

    Uses a made-up service.

    Args:
        city: The city's name,
            e.g. "Paris".
        days: How many days to forecast.
        unit: Temperature unit.

    Returns:
        The forecast.
    """
    return {"city": city, "days": days, "unit": unit}


@tool
def numpy_style(city: str, days: int = 3) -> str:
    """Forecast the weather.

    Parameters
    ----------
    city : str
        The city's name.
    days : int
        How many days to forecast.
    """
    return city


@tool
def sphinx_style(city: str, days: int = 3) -> str:
    """Forecast the weather.

    :param city: The city's name.
    :param int days: How many days to forecast.
    :returns: the forecast.
    """
    return city


@tool
def nested(
    addresses: list[Address],
    scores: dict[str, float],
    tags: list[str] | None = None,
    owner: Address | None = None,
    color: Color = Color.RED,
    point: tuple[float, float] = (0.0, 0.0),
) -> dict[str, Any]:
    """Take nested types."""
    return {"n": len(addresses), "first": addresses[0], "owner": owner, "point": point}


@tool
def tree_size(tree: Node) -> int:
    """Count the nodes of a tree."""
    return 1 + sum(tree_size(child) for child in tree.children)


# -- schema and descriptions ------------------------------------------------------------------


@pytest.mark.parametrize("fn", [google_style, numpy_style, sphinx_style])
def test_docstring_styles_give_descriptions(fn: FunctionTool[..., Any]) -> None:
    assert fn.description.startswith("Forecast the weather.")
    props = fn.parameters["properties"]
    assert props["city"]["description"].startswith("The city's name")
    assert props["days"]["description"] == "How many days to forecast."
    assert fn.parameters["required"] == ["city"]
    assert props["days"] == {
        "type": "integer",
        "default": 3,
        "description": "How many days to forecast.",
    }


def test_google_docstring_keeps_long_description_and_folds_lines() -> None:
    assert google_style.description == "Forecast the weather.\n\nUses a made-up service."
    assert google_style.parameters["properties"]["city"]["description"] == (
        'The city\'s name, e.g. "Paris".'
    )
    assert google_style.parameters["properties"]["unit"]["enum"] == ["c", "f"]


def test_schema_is_clean_json_schema_without_titles_or_refs() -> None:
    schema = nested.parameters
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert "title" not in schema and "$defs" not in schema
    addresses = schema["properties"]["addresses"]
    assert addresses["type"] == "array"
    item = addresses["items"]
    assert item["type"] == "object" and "title" not in item
    assert item["required"] == ["street"]
    assert set(item["properties"]) == {"street", "zip_code"}
    assert schema["properties"]["scores"] == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    assert schema["properties"]["color"]["enum"] == ["red", "blue"]
    assert schema["properties"]["point"]["prefixItems"] == [{"type": "number"}] * 2
    assert sorted(schema["required"]) == ["addresses", "scores"]


def test_a_property_named_title_survives_title_removal() -> None:
    @tool
    def book(title: str, year: int) -> str:
        """Find a book."""
        return title

    assert set(book.parameters["properties"]) == {"title", "year"}
    assert book.parameters["properties"]["title"] == {"type": "string"}


def test_recursive_model_keeps_defs_and_validates() -> None:
    assert "$defs" in tree_size.parameters
    args = tree_size.validate({"tree": {"value": 1, "children": [{"value": 2}, {"value": 3}]}})
    assert isinstance(args["tree"], Node)
    assert tree_size(**args) == 3


def test_annotated_field_description_wins_over_docstring() -> None:
    @tool
    def f(n: Annotated[int, Field(ge=1, description="From Field.")] = 1) -> int:
        """Do it.

        Args:
            n: From the docstring.
        """
        return n

    prop = f.parameters["properties"]["n"]
    assert prop["description"] == "From Field."
    assert prop["minimum"] == 1
    with pytest.raises(ToolArgumentError, match="greater than or equal to 1"):
        f.validate({"n": 0})


def test_names_that_shadow_pydantic_attributes_work() -> None:
    @tool
    def odd(json: str, schema: int, model_config: bool = False, _private: str = "") -> str:
        """Awkward parameter names."""
        return f"{json}{schema}{model_config}{_private}"

    assert list(odd.parameters["properties"]) == ["json", "schema", "model_config", "_private"]
    args = odd.validate({"json": "a", "schema": 1, "_private": "z"})
    assert args == {"json": "a", "schema": 1, "model_config": False, "_private": "z"}


def test_signature_and_openai_schema() -> None:
    assert google_style.signature() == (
        'google_style(city: str, days: int = 3, unit: Literal["c", "f"] = "c")'
        " - Forecast the weather."
    )
    sig = nested.signature()
    assert sig.startswith("nested(addresses: list[{street: str, zip_code: int | None}], ")
    assert 'color: Literal["red", "blue"] = "red"' in sig
    assert "point: tuple[float, float] = [0.0, 0.0]" in sig
    schema = google_style.openai_schema()
    assert schema["type"] == "function"
    assert schema["function"]["name"] == "google_style"
    assert schema["function"]["parameters"] is google_style.parameters


def test_rewrapping_a_tool_wraps_its_function() -> None:
    renamed = tool(google_style, name="forecast", retries=1)
    assert renamed.name == "forecast" and renamed.retries == 1
    assert renamed.fn is google_style.fn
    assert renamed.parameters == google_style.parameters


def test_decorator_options() -> None:
    @tool(
        name="weather.get",
        description="Custom.",
        timeout=2.0,
        retries=2,
        retry_backoff=0.5,
        max_concurrency=3,
        estimated_latency=0.25,
    )
    async def get(city: str) -> str:
        return city

    assert isinstance(get, Tool)
    assert (get.name, get.description) == ("weather.get", "Custom.")
    assert (get.timeout_s, get.retries, get.retry_backoff_s) == (2.0, 2, 0.5)
    assert (get.max_concurrency, get.estimated_latency_s) == (3, 0.25)


# -- validation -------------------------------------------------------------------------------


def test_valid_arguments_are_coerced_by_pydantic() -> None:
    args = nested.validate(
        {"addresses": [{"street": "Main St", "zip_code": "75001"}], "scores": {"a": 1}},
    )
    assert isinstance(args["addresses"][0], Address)
    assert args["addresses"][0].zip_code == 75001
    assert args["scores"] == {"a": 1.0}
    assert args["color"] is Color.RED  # defaults are filled in
    assert args["point"] == (0.0, 0.0)


def test_positional_arguments_map_in_order() -> None:
    assert google_style.validate({"unit": "f"}, ("Paris", 5)) == {
        "city": "Paris",
        "days": 5,
        "unit": "f",
    }


def test_positional_errors() -> None:
    with pytest.raises(ToolArgumentError, match="takes 3 positional arguments but 4 were given"):
        google_style.validate({}, ("Paris", 1, "c", "x"))
    with pytest.raises(ToolArgumentError, match="multiple values for argument 'city'"):
        google_style.validate({"city": "Rome"}, ("Paris",))


def test_keyword_only_parameters_cannot_be_positional() -> None:
    @tool
    def f(a: int, *, b: int = 0) -> int:
        return a + b

    assert f.validate({"b": 2}, (1,)) == {"a": 1, "b": 2}
    with pytest.raises(ToolArgumentError, match="takes 1 positional argument but 2"):
        f.validate({}, (1, 2))


def test_error_messages_name_the_argument_and_expectation() -> None:
    with pytest.raises(ToolArgumentError) as info:
        google_style.validate({"days": "many", "unit": "kelvin", "colour": 1})
    message = str(info.value)
    assert message.startswith("invalid arguments for google_style: ")
    assert "missing required argument 'city'" in message
    assert "argument 'days': Input should be a valid integer" in message
    assert "(got 'many')" in message
    assert "argument 'unit': Input should be 'c' or 'f'" in message
    assert "unexpected argument 'colour'" in message
    assert message.endswith(
        'Expected: google_style(city: str, days: int = 3, unit: Literal["c", "f"] = "c")'
    )
    assert "Traceback" not in message and "errors.pydantic.dev" not in message


def test_nested_error_location() -> None:
    with pytest.raises(ToolArgumentError, match=r"argument 'addresses\[1\]\.street'"):
        nested.validate({"addresses": [{"street": "a"}, {"street": 5}], "scores": {}})
    with pytest.raises(ToolArgumentError, match=r"argument 'point\[1\]'"):
        nested.validate({"addresses": [], "scores": {}, "point": [1.0]})


def test_long_inputs_are_shortened_in_messages() -> None:
    with pytest.raises(ToolArgumentError) as info:
        google_style.validate({"city": "x", "days": "y" * 5000})
    assert len(str(info.value)) < 400


def test_tool_argument_error_is_a_value_error() -> None:
    assert issubclass(ToolArgumentError, ValueError)
    assert issubclass(ToolDefinitionError, ConfigError)
    assert issubclass(ToolDefinitionError, CounterpointError)


# -- invocation -------------------------------------------------------------------------------


def test_decorated_functions_stay_callable() -> None:
    assert google_style("Paris", days=1) == {"city": "Paris", "days": 1, "unit": "c"}
    assert google_style.__name__ == "google_style"
    assert google_style.__doc__ is not None and "Forecast" in google_style.__doc__
    assert google_style.fn.__name__ == "google_style"


async def test_decorated_async_function_stays_awaitable() -> None:
    @tool
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert await double(4) == 8
    assert await double.invoke({"x": "5"}) == 10


async def test_sync_tools_run_in_a_worker_thread() -> None:
    @tool
    def where() -> str:
        return threading.current_thread().name

    name = await where.invoke({})
    assert name != threading.current_thread().name
    assert name.startswith("counterpoint-tool")


async def test_invoke_validates() -> None:
    with pytest.raises(ToolArgumentError, match="missing required argument 'city'"):
        await google_style.invoke({})


async def test_progress_parameter_is_injected_and_hidden() -> None:
    seen: list[tuple[str, float | None]] = []

    @tool
    async def slow(n: int, progress: Progress) -> int:
        for i in range(n):
            progress(f"step {i}", (i + 1) / n)
        return n

    @tool
    def slow_sync(report: Progress | None = None, n: int = 2) -> int:
        assert report is not None
        report("sync step")
        return n

    assert list(slow.parameters["properties"]) == ["n"]
    assert slow.signature() == "slow(n: int)"
    assert list(slow_sync.parameters["properties"]) == ["n"]
    with pytest.raises(ToolArgumentError, match="unexpected argument 'progress'"):
        slow.validate({"n": 1, "progress": 1})
    assert slow_sync.validate({}, (5,)) == {"n": 5}  # positional skips the Progress parameter

    assert await slow.invoke({"n": 2}, Progress(lambda m, f: seen.append((m, f)))) == 2
    assert seen == [("step 0", 0.5), ("step 1", 1.0)]
    assert await slow.invoke({"n": 1}) == 1  # without a sink, progress is a no-op
    assert await slow_sync.invoke({}, Progress(lambda m, f: seen.append((m, f)))) == 2
    assert seen[-1] == ("sync step", None)


def test_progress_rejects_bad_fractions() -> None:
    progress = Progress()
    progress("fine", 0.0)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="between 0 and 1"):
            progress("bad", bad)


async def test_positional_only_parameters_are_passed_positionally() -> None:
    @tool
    def power(base: float, exp: int = 2, /) -> float:
        return base**exp

    assert await power.invoke({"base": 3}) == 9
    assert await power.invoke({"base": 2, "exp": 3}) == 8


async def test_partials_and_callable_objects() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    add_one = tool(functools.partial(add, b=1), name="add_one")
    assert await add_one.invoke({"a": 2}) == 3

    class Counter:
        async def __call__(self, step: int) -> int:
            return step

    counter = tool(Counter(), name="counter")
    assert await counter.invoke({"step": 4}) == 4


# -- definition errors ------------------------------------------------------------------------


def test_definition_errors_say_what_to_do() -> None:
    with pytest.raises(ToolDefinitionError, match=r"\*args"):

        @tool
        def star(*args: int) -> None: ...

    with pytest.raises(ToolDefinitionError, match="pass name="):
        tool(lambda x: x)
    with pytest.raises(ToolDefinitionError, match="invalid tool name"):
        tool(name="1abc")(google_style.fn)
    with pytest.raises(ToolDefinitionError, match="retries"):
        tool(retries=-1)(google_style.fn)
    with pytest.raises(ToolDefinitionError, match="timeout"):
        tool(timeout=0)(google_style.fn)
    with pytest.raises(ToolDefinitionError, match="max_concurrency"):
        tool(max_concurrency=0)(google_style.fn)

    class Opaque:
        pass

    with pytest.raises(ToolDefinitionError, match="JSON"):

        @tool
        def opaque(x: Opaque) -> None: ...


async def test_types_local_to_the_defining_function_resolve() -> None:
    class Local(BaseModel):
        a: int

    @tool
    def f(x: Local) -> int:
        return x.a

    assert f.parameters["properties"]["x"]["properties"] == {"a": {"type": "integer"}}
    assert await f.invoke({"x": {"a": 3}}) == 3


def test_unresolvable_annotation_gives_clear_error() -> None:
    with pytest.raises(ToolDefinitionError, match="module level"):

        @tool
        def f(x: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821
