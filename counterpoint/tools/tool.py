"""Declaring tools: :class:`Tool`, the ``@tool`` decorator and :meth:`Tool.from_schema`.

A tool is a name, a description, a JSON schema of its parameters, an execution policy (timeout,
retries, concurrency limit, estimated latency) and a way to run it. ``@tool`` builds one from a
typed Python function (sync or async): the schema comes from the type hints through pydantic, the
descriptions from the docstring (Google, NumPy or Sphinx style), and arguments are validated by
pydantic. :meth:`Tool.from_schema` builds one from a function description in BFCL or OpenAI format
and validates arguments with ``jsonschema``::

    @tool(timeout=5.0)
    async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, float]:
        \"\"\"Current weather in a city.

        Args:
            city: The city's name, e.g. "Paris".
            unit: Temperature unit.
        \"\"\"

Validation errors raise :class:`ToolArgumentError`, whose message is written for the model.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from pydantic import ValidationError

from counterpoint.core.calls import ToolSpec
from counterpoint.tools._errors import ToolArgumentError, ToolDefinitionError
from counterpoint.tools._function import (
    FunctionSpec,
    build_function_spec,
    is_async_callable,
    progress_parameter,
)
from counterpoint.tools._progress import Progress
from counterpoint.tools._render import render_signature
from counterpoint.tools._schema import ArgumentValidator, check_schema, normalise_schema
from counterpoint.tools._threads import run_in_thread
from counterpoint.tools._validation import jsonschema_problems, pydantic_problems

__all__ = [
    "FunctionTool",
    "Progress",
    "SchemaTool",
    "Tool",
    "ToolArgumentError",
    "ToolDefinitionError",
    "tool",
]

P = ParamSpec("P")
R = TypeVar("R")
_P2 = ParamSpec("_P2")
_R2 = TypeVar("_R2")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


async def _call(fn: Callable[..., Any], is_async: bool, /, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``: on the loop when async, in a tool thread when sync."""
    result = fn(*args, **kwargs) if is_async else await run_in_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):  # a sync wrapper around a coroutine function
        result = await result
    return result


class Tool(ABC):
    """A function the model can call.

    Attributes:
        name: What the model writes to call it (dots allowed: ``spotify.play``).
        description: What it does, for the model.
        parameters: JSON schema of the arguments (``{"type": "object", "properties": ...}``).
            Property order is the order positional arguments map onto.
        timeout_s: Seconds one attempt may take (``None``: the executor's default).
        retries: Extra attempts after an exception or a timeout (not after bad arguments, nor
            after a :class:`ToolDefinitionError`: a tool that cannot run, such as a
            schema-only one, fails the same way every time).
        retry_backoff_s: Wait before the first retry; doubles for each further retry.
        max_concurrency: Calls of this tool running at once, over every executor on the event
            loop (``None``: no limit). Calls over the limit wait for a slot.
        estimated_latency_s: Typical run time, shown to the model so that it can start slow
            calls first.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    timeout_s: float | None
    retries: int
    retry_backoff_s: float
    max_concurrency: int | None
    estimated_latency_s: float | None

    def __init__(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        *,
        positional: Sequence[str] | None = None,
        timeout_s: float | None = None,
        retries: int = 0,
        retry_backoff_s: float = 0.1,
        max_concurrency: int | None = None,
        estimated_latency_s: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ToolDefinitionError(
                f"invalid tool name {name!r}: use letters, digits, '_' or '-', not starting with "
                "a digit, optionally dotted ('spotify.play'); pass name= to rename it"
            )
        if timeout_s is not None and not timeout_s > 0:
            raise ToolDefinitionError(f"tool {name!r}: timeout must be > 0 s or None")
        if not isinstance(retries, int) or retries < 0:
            raise ToolDefinitionError(f"tool {name!r}: retries must be an int >= 0")
        if not retry_backoff_s >= 0:
            raise ToolDefinitionError(f"tool {name!r}: retry backoff must be >= 0 s")
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ToolDefinitionError(f"tool {name!r}: max_concurrency must be an int >= 1 or None")
        if estimated_latency_s is not None and not estimated_latency_s >= 0:
            raise ToolDefinitionError(f"tool {name!r}: estimated latency must be >= 0 s or None")
        self.name = name
        self.description = description
        self.parameters = parameters
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.max_concurrency = max_concurrency
        self.estimated_latency_s = estimated_latency_s
        props = parameters.get("properties")
        if positional is None:
            positional = list(props) if isinstance(props, Mapping) else []
        self._positional: tuple[str, ...] = tuple(positional)
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    # -- validation -------------------------------------------------------------------------

    def validate(
        self, arguments: Mapping[str, Any], positional: Sequence[Any] = ()
    ) -> dict[str, Any]:
        """Check a call's arguments; return them validated, by parameter name.

        ``positional`` values map onto the parameters in order. Raises :class:`ToolArgumentError`
        with a message for the model when the arguments do not fit.
        """
        merged = dict(arguments)
        if len(positional) > len(self._positional):
            count = len(self._positional)
            raise self._argument_error(
                [
                    f"{self.name} takes {count} positional argument{'' if count == 1 else 's'} "
                    f"but {len(positional)} were given"
                ]
            )
        for pname, value in zip(self._positional, positional, strict=False):
            if pname in merged:
                raise self._argument_error([f"got multiple values for argument '{pname}'"])
            merged[pname] = value
        return self._check(merged)

    @abstractmethod
    def _check(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate keyword arguments (raise :class:`ToolArgumentError`); return them validated."""

    def _argument_error(self, problems: Sequence[str]) -> ToolArgumentError:
        details = "; ".join(problems)
        return ToolArgumentError(
            f"invalid arguments for {self.name}: {details}. "
            f"Expected: {render_signature(self.name, self.parameters)}"
        )

    # -- execution --------------------------------------------------------------------------

    async def invoke(self, arguments: Mapping[str, Any], progress: Progress | None = None) -> Any:
        """Validate ``arguments`` and run the tool once (no timeout, no retry: the executor's job).

        Sync implementations run in a worker thread, so the event loop never blocks.
        """
        return await self._execute(self.validate(arguments), progress)

    @abstractmethod
    async def _execute(self, validated: dict[str, Any], progress: Progress | None) -> Any:
        """Run the tool on arguments returned by :meth:`validate`."""

    def _limiter(self) -> asyncio.Semaphore | None:
        """This tool's concurrency semaphore on the running loop (``None`` without a limit)."""
        if self.max_concurrency is None:
            return None
        loop = asyncio.get_running_loop()
        sem = self._limits.get(loop)
        if sem is None:
            sem = self._limits[loop] = asyncio.Semaphore(self.max_concurrency)
        return sem

    # -- descriptions -----------------------------------------------------------------------

    def signature(self) -> str:
        """One line for prompts: ``name(city: str, unit: str = "c") - description``."""
        return render_signature(self.name, self.parameters, self.description)

    def spec(self) -> ToolSpec:
        """What a model backend needs to know of this tool (its name, docs and schema)."""
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            estimated_latency_s=self.estimated_latency_s,
            signature=self.signature(),
        )

    def openai_schema(self) -> dict[str, Any]:
        """The tool in OpenAI's format: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.signature()!r}>"

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_schema(
        cls,
        spec: Mapping[str, Any],
        impl: Callable[..., Any] | None = None,
        *,
        timeout_s: float | None = None,
        retries: int = 0,
        retry_backoff_s: float = 0.1,
        max_concurrency: int | None = None,
        estimated_latency_s: float | None = None,
    ) -> SchemaTool:
        """Build a tool from a function description.

        ``spec`` is BFCL format (``{"name", "description", "parameters": {"type": "dict",
        "properties": ..., "required": [...]}}`` with BFCL type names such as ``dict``, ``float``,
        ``tuple``, ``any``), OpenAI format (``{"type": "function", "function": {...}}``, or the
        bare function object) or Anthropic's (``input_schema``). Types are normalised to JSON
        Schema. ``impl(**validated)`` runs the tool; it may be sync or async, and receives a
        :class:`Progress` if it has a parameter annotated so. Without ``impl`` the tool can be
        described and validated but invoking it raises :class:`ToolDefinitionError` (which the
        executor reports as the call's result at once, without retrying).
        """
        if not isinstance(spec, Mapping):
            raise ToolDefinitionError(
                f"a tool description must be a JSON object, got {type(spec).__name__}"
            )
        if spec.get("type") == "function" and isinstance(spec.get("function"), Mapping):
            spec = spec["function"]
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ToolDefinitionError(
                "a tool description needs a non-empty string 'name' (BFCL: {'name', "
                "'description', 'parameters'}; OpenAI: {'type': 'function', 'function': {...}})"
            )
        raw = spec.get("parameters", spec.get("input_schema"))
        if raw is None:
            raw = {"type": "object", "properties": {}}
        parameters = normalise_schema(raw)
        if parameters.get("type", "object") != "object":
            raise ToolDefinitionError(
                f"tool {name!r}: 'parameters' must describe an object (type 'object' or 'dict'), "
                f"got type {raw.get('type')!r}"
            )
        parameters["type"] = "object"
        parameters.setdefault("properties", {})
        problem = check_schema(parameters)
        if problem is not None:
            raise ToolDefinitionError(f"tool {name!r}: invalid parameters schema: {problem}")
        description = spec.get("description") or ""
        return SchemaTool(
            name,
            str(description),
            parameters,
            impl,
            timeout_s=timeout_s,
            retries=retries,
            retry_backoff_s=retry_backoff_s,
            max_concurrency=max_concurrency,
            estimated_latency_s=estimated_latency_s,
        )


class SchemaTool(Tool):
    """A tool declared by a JSON schema (see :meth:`Tool.from_schema`).

    Validation follows the schema with ``jsonschema`` (Draft 2020-12; ints pass where numbers are
    expected, tuples where arrays are). Unknown arguments are rejected unless the schema sets
    ``additionalProperties``. ``None`` given for an optional parameter whose schema does not allow
    null means "left out". The validated arguments are the given ones: defaults are not filled in.
    """

    def __init__(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        impl: Callable[..., Any] | None = None,
        **policy: Any,
    ) -> None:
        super().__init__(name, description, parameters, **policy)
        self.impl = impl
        self._validator = ArgumentValidator(parameters)
        self._impl_async = impl is not None and is_async_callable(impl)
        self._impl_progress = progress_parameter(impl) if impl is not None else None

    def _check(self, arguments: dict[str, Any]) -> dict[str, Any]:
        props: Mapping[str, Any] = self.parameters.get("properties") or {}
        required = set(self.parameters.get("required") or ())
        extra = self.parameters.get("additionalProperties", False)
        problems: list[str] = []
        if extra is False:
            accepted = ", ".join(props) or "none"
            problems.extend(
                f"unexpected argument '{key}' (accepted: {accepted})"
                for key in arguments
                if key not in props
            )
        checked = {
            key: value
            for key, value in arguments.items()
            if not (value is None and key in props and key not in required)
            or self._accepts_null(props[key])
        }
        if not problems:
            problems = jsonschema_problems(self._validator.iter_errors(checked))
        if problems:
            raise self._argument_error(problems)
        return checked

    def _accepts_null(self, schema: Any) -> bool:
        try:
            return bool(self._validator.evolve(schema=schema).is_valid(None))
        except Exception:  # e.g. a $ref that only resolves from the root schema
            return True

    async def _execute(self, validated: dict[str, Any], progress: Progress | None) -> Any:
        if self.impl is None:
            raise ToolDefinitionError(
                f"tool {self.name!r} has no implementation; pass impl= to Tool.from_schema"
            )
        kwargs = dict(validated)
        if self._impl_progress is not None:
            kwargs[self._impl_progress] = progress if progress is not None else Progress()
        return await _call(self.impl, self._impl_async, **kwargs)


class FunctionTool(Tool, Generic[P, R]):
    """A tool made from a Python function by ``@tool``; calling it calls the function.

    It carries the function's ``__name__``, ``__doc__`` and ``__wrapped__``, so ``inspect`` and
    documentation tools see the function; the function itself is :attr:`fn`.
    """

    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        retries: int = 0,
        retry_backoff_s: float = 0.1,
        max_concurrency: int | None = None,
        estimated_latency_s: float | None = None,
    ) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"@tool needs a function, got {type(fn).__name__}")
        tool_name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(tool_name, str):
            raise ToolDefinitionError(f"cannot tell the name of {fn!r}; pass name= to @tool")
        spec: FunctionSpec = build_function_spec(fn, tool_name)
        super().__init__(
            tool_name,
            description if description is not None else spec.doc.description,
            spec.schema,
            positional=spec.positional,
            timeout_s=timeout_s,
            retries=retries,
            retry_backoff_s=retry_backoff_s,
            max_concurrency=max_concurrency,
            estimated_latency_s=estimated_latency_s,
        )
        self.fn = fn
        self._spec = spec
        self._is_async = is_async_callable(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly, exactly as if it were not decorated."""
        return self.fn(*args, **kwargs)

    def _check(self, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            instance = self._spec.model.model_validate(arguments)
        except ValidationError as exc:
            raise self._argument_error(pydantic_problems(exc)) from None
        return {pname: getattr(instance, fname) for pname, fname in self._spec.fields}

    async def _execute(self, validated: dict[str, Any], progress: Progress | None) -> Any:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for pname, param in self._spec.signature.parameters.items():
            if pname == self._spec.progress_param:
                value: Any = progress if progress is not None else Progress()
            elif pname in validated:
                value = validated[pname]
            else:
                continue
            if param.kind is param.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[pname] = value
        return await _call(self.fn, self._is_async, *args, **kwargs)


class _ToolDecorator(Protocol):
    def __call__(self, fn: Callable[P, R], /) -> FunctionTool[P, R]: ...


@overload
def tool(
    fn: Callable[P, R],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_backoff: float = 0.1,
    max_concurrency: int | None = None,
    estimated_latency: float | None = None,
) -> FunctionTool[P, R]: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_backoff: float = 0.1,
    max_concurrency: int | None = None,
    estimated_latency: float | None = None,
) -> _ToolDecorator: ...


def tool(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_backoff: float = 0.1,
    max_concurrency: int | None = None,
    estimated_latency: float | None = None,
) -> FunctionTool[P, R] | _ToolDecorator:
    """Turn a typed function (sync or async) into a :class:`FunctionTool`.

    Use it bare (``@tool``), with options (``@tool(timeout=5.0)``), or as a call
    (``tool(fn, name="search")``).

    Args:
        fn: The function (given when used as a bare ``@tool``).
        name: The tool's name (default: the function's name).
        description: Overrides the description taken from the docstring.
        timeout: Seconds one attempt may take (default: the executor's).
        retries: Extra attempts after an exception or a timeout.
        retry_backoff: Seconds before the first retry, doubled for each further one.
        max_concurrency: Calls of this tool that may run at once.
        estimated_latency: Typical run time in seconds, shown to the model.
    """

    def wrap(f: Callable[_P2, _R2], /) -> FunctionTool[_P2, _R2]:
        return FunctionTool(
            f.fn if isinstance(f, FunctionTool) else f,
            name=name,
            description=description,
            timeout_s=timeout,
            retries=retries,
            retry_backoff_s=retry_backoff,
            max_concurrency=max_concurrency,
            estimated_latency_s=estimated_latency,
        )

    return wrap if fn is None else wrap(fn)
