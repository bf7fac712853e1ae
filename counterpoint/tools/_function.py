"""The arguments model of a Python function: a pydantic model built from its signature, type hints
and docstring, and the JSON schema the model sees."""

from __future__ import annotations

import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from counterpoint.tools._docstring import DocInfo, parse_docstring
from counterpoint.tools._errors import ToolDefinitionError
from counterpoint.tools._progress import Progress
from counterpoint.tools._schema import clean_pydantic_schema

__all__ = ["FunctionSpec", "build_function_spec", "is_async_callable", "progress_parameter"]


@dataclass(frozen=True)
class FunctionSpec:
    """Everything a function tool needs to validate and call its function."""

    model: type[BaseModel]
    """Validates the arguments (by parameter name); fields are ``p0, p1, ...`` aliased to names."""
    schema: dict[str, Any]
    """The JSON schema of the arguments (``type: object``), tidied for prompts."""
    fields: tuple[tuple[str, str], ...]
    """``(parameter name, model field name)`` in signature order, without the Progress one."""
    positional: tuple[str, ...]
    """Parameters a call may give positionally, in order."""
    signature: inspect.Signature
    progress_param: str | None
    doc: DocInfo


def _unwrap_callable(fn: Callable[..., Any]) -> Any:
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        call = inspect.getattr_static(type(target), "__call__", None)
        if inspect.isfunction(call):
            return call
    return target


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, partials of them, objects with ``async def __call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    return inspect.iscoroutinefunction(_unwrap_callable(fn))


def _is_progress(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return len(rest) == 1 and _is_progress(rest[0])
    return isinstance(annotation, type) and issubclass(annotation, Progress)


def _has_field_description(annotation: Any) -> bool:
    if get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in get_args(annotation)[1:])


def _caller_locals() -> dict[str, Any]:
    """The local variables of the nearest frame outside this package: where ``@tool`` was
    applied, so that string annotations can name types local to that function."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(__package__ or "-"):
        frame = frame.f_back  # type: ignore[assignment]
    return dict(frame.f_locals) if frame is not None else {}


def _type_hints(fn: Callable[..., Any], tool_name: str) -> dict[str, Any]:
    target = _unwrap_callable(fn)
    try:
        try:
            return typing.get_type_hints(target, include_extras=True)
        except NameError:
            return typing.get_type_hints(target, localns=_caller_locals(), include_extras=True)
    except NameError as exc:
        raise ToolDefinitionError(
            f"cannot resolve the type hints of tool {tool_name!r} ({exc}); define the types its "
            "parameters use at module level, or avoid string annotations for local types"
        ) from exc
    except TypeError:  # a builtin or an object get_type_hints does not understand
        return {}


def progress_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of ``fn``'s parameter annotated :class:`Progress`, if it has one."""
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(_unwrap_callable(fn), include_extras=True)
    except (TypeError, ValueError, NameError):
        return None
    for name, param in sig.parameters.items():
        if _is_progress(hints.get(name, param.annotation)):
            return name
    return None


def build_function_spec(fn: Callable[..., Any], tool_name: str) -> FunctionSpec:
    """Build the arguments model and schema of ``fn`` (raises :class:`ToolDefinitionError`)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(
            f"cannot read the signature of tool {tool_name!r}: {exc}"
        ) from exc
    hints = _type_hints(fn, tool_name)
    doc = parse_docstring(fn)

    definitions: dict[str, Any] = {}
    fields: list[tuple[str, str]] = []
    positional: list[str] = []
    progress_param: str | None = None
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {tool_name!r} has a *{pname} or **{pname} parameter, which a JSON schema "
                "cannot describe; list the parameters explicitly"
            )
        annotation = hints.get(pname, param.annotation)
        if annotation is inspect.Parameter.empty or isinstance(annotation, str):
            annotation = Any
        if _is_progress(annotation):
            if progress_param is not None:
                raise ToolDefinitionError(
                    f"tool {tool_name!r} has two Progress parameters ({progress_param!r} and "
                    f"{pname!r}); keep one"
                )
            progress_param = pname
            continue
        field_name = f"p{len(fields)}"
        default = ... if param.default is inspect.Parameter.empty else param.default
        description = None if _has_field_description(annotation) else doc.params.get(pname)
        # description=None would override one given in Annotated[..., Field(description=...)]
        info = (
            Field(default, alias=pname)
            if description is None
            else Field(default, alias=pname, description=description)
        )
        definitions[field_name] = (annotation, info)
        fields.append((pname, field_name))
        if param.kind is not param.KEYWORD_ONLY:
            positional.append(pname)

    try:
        model: type[BaseModel] = create_model(
            "Arguments",
            __config__=ConfigDict(extra="forbid", populate_by_name=False),
            **definitions,
        )
        schema = clean_pydantic_schema(model.model_json_schema())
    except Exception as exc:  # pydantic raises several error types for unusable annotations
        raise ToolDefinitionError(
            f"tool {tool_name!r} has a parameter type pydantic cannot describe as JSON ({exc}); "
            "use JSON-compatible types (str, int, float, bool, list, dict, Literal, a BaseModel)"
        ) from exc
    schema.setdefault("properties", {})
    return FunctionSpec(
        model=model,
        schema=schema,
        fields=tuple(fields),
        positional=tuple(positional),
        signature=sig,
        progress_param=progress_param,
        doc=doc,
    )
