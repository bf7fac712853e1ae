"""The model an eval case runs on: a loaded model, an OpenAI-compatible server or a script.

- ``scripted-oracle``: a :class:`ScriptedModel` per case that writes the case's oracle calls in CML
  (slowest first, as LPT asks), waits for their results and answers. It must score 100%.
- ``scripted-perturbed``: the same, with one argument value changed (or, for a call without
  arguments, the function misnamed). It must fail every case, each with a reason.
- ``openai:NAME``: a server model; ``sync`` and ``parallel`` use its native tool calls, ``async``
  raw completions with CML (see :mod:`counterpoint.runtime.backends.openai`).
- anything else: :func:`~counterpoint.runtime.backends.registry.resolve_model` (the embedded model,
  a local path, a cached hub id), loaded once and shared by every case.

Scripted models emit 5 ms per token (the paper's cloud emulation) times the latency scale, so the
ratio of generation to tool time stays the one of the paper at any scale.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

from counterpoint.evals.checker import oracle_calls
from counterpoint.evals.datasets import BFCLCase
from counterpoint.evals.simulate import simulated_latency
from counterpoint.protocol.callsyntax import format_call_body
from counterpoint.protocol.cml import TRAP, format_call
from counterpoint.runtime.backends.base import Model
from counterpoint.runtime.backends.registry import resolve_model
from counterpoint.runtime.session import Mode
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools.toolset import Toolset

__all__ = [
    "ORACLE",
    "PERTURBED",
    "SCRIPTED_MODELS",
    "CaseModels",
    "OraclePolicy",
    "case_models",
    "oracle_script",
    "perturb",
]

ORACLE = "scripted-oracle"
PERTURBED = "scripted-perturbed"
SCRIPTED_MODELS = (ORACLE, PERTURBED)
SCRIPTED_TOKEN_TIME_S = 0.005
FINAL_ANSWER = "Done: every requested call was made."
_INTR_ID = re.compile(r"\[INTR\]\s*(\w+)\s*\[HEAD\]")

ExpectedCalls = list[tuple[str, dict[str, Any]]]


class CaseModels(Protocol):
    """Gives the model to run one case in one mode on."""

    @property
    def name(self) -> str:
        """The model's name for records and reports."""
        ...

    @property
    def flat_names(self) -> bool:
        """Whether tool names must not contain dots (OpenAI-style APIs)."""
        ...

    def for_case(self, case: BFCLCase, mode: Mode, tools: Toolset) -> Model: ...

    async def aclose(self) -> None: ...


def _body(name: str, arguments: dict[str, Any]) -> str:
    try:
        return format_call_body(name, arguments)
    except (TypeError, ValueError):  # argument names that are not identifiers: the JSON form
        return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def oracle_script(calls: ExpectedCalls) -> str:
    """The CML the oracle writes: each call in its own block, slowest first, then a trap."""
    order = sorted(range(len(calls)), key=lambda i: -simulated_latency(calls[i][0]))
    blocks = [format_call(f"c{i + 1}", _body(*calls[i])) + "\n" for i in order]
    return "".join(blocks) + TRAP + "\n"


class OraclePolicy:
    """A ScriptedModel policy: write the calls, wait until every result is in, answer, stop."""

    def __init__(self, calls: ExpectedCalls) -> None:
        self._ids = {f"c{i + 1}" for i in range(len(calls))}
        self._script = oracle_script(calls) if calls else ""
        self._stage = 0

    def __call__(self, extensions: Sequence[str]) -> str | None:
        if self._stage == 0:
            self._stage = 1
            if self._script:
                return self._script
        if self._stage == 1:
            seen = {m for text in extensions for m in _INTR_ID.findall(text)}
            if not self._ids <= seen:
                return ""  # wait for the next result
            self._stage = 2
            return FINAL_ANSWER
        return None


def _changed(value: Any) -> Any:
    """A value of the same type that no sane possible answer allows."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7919
    if isinstance(value, float):
        return value + 7919.5
    if isinstance(value, str):
        return f"zz_not_{value}"
    if isinstance(value, list):
        return [*value, *value, "zz_extra"] if value else ["zz_extra"]
    if isinstance(value, dict):
        return {**value, "zz_extra": 1}
    return "zz_changed"


def perturb(calls: ExpectedCalls) -> ExpectedCalls:
    """The calls with one mistake: the first argument of the first call with arguments changed,
    or, when no call has arguments, the first function misnamed. No calls: one bogus call."""
    out = [(name, dict(arguments)) for name, arguments in calls]
    for _, arguments in out:
        if arguments:
            key = next(iter(arguments))
            arguments[key] = _changed(arguments[key])
            return out
    if out:
        out[0] = (out[0][0] + "_zz", out[0][1])
        return out
    return [("zz_no_such_function", {})]


class _Scripted:
    """A scripted oracle (or perturbed oracle) per case."""

    flat_names = False

    def __init__(self, name: str, *, latency_scale: float) -> None:
        self._name = name
        self._scale = latency_scale

    @property
    def name(self) -> str:
        return self._name

    def for_case(self, case: BFCLCase, mode: Mode, tools: Toolset) -> Model:
        calls: ExpectedCalls = oracle_calls(case)
        if self._name == PERTURBED:
            calls = perturb(calls)
        return ScriptedModel(
            OraclePolicy(calls),
            token_time_s=SCRIPTED_TOKEN_TIME_S * self._scale,
            name=self._name,
        )

    async def aclose(self) -> None:
        pass


class _Shared:
    """One loaded model for every case (local backends render CML prompts themselves)."""

    flat_names = False

    def __init__(self, model: Model) -> None:
        self._model = model

    @property
    def model(self) -> Model:
        """The model every case runs on."""
        return self._model

    @property
    def name(self) -> str:
        return self._model.name

    def for_case(self, case: BFCLCase, mode: Mode, tools: Toolset) -> Model:
        return self._model

    async def aclose(self) -> None:
        pass


class _OpenAI:
    """A server model: native tool calls in sync/parallel, CML in async (the model decides)."""

    flat_names = True

    def __init__(self, model: Any) -> None:
        self._model = model

    @property
    def name(self) -> str:
        return str(self._model.name)

    def for_case(self, case: BFCLCase, mode: Mode, tools: Toolset) -> Model:
        # The session hands the case's tools to the model and says whether results arrive
        # mid-stream (async): the model picks native tool calls or CML itself.
        model: Model = self._model
        return model

    async def aclose(self) -> None:
        await self._model.aclose()


def case_models(
    spec: str,
    *,
    base_url: str | None = None,
    latency_scale: float = 1.0,
    constrained: bool = True,
    adapter: str | None = None,
) -> CaseModels:
    """The model source for a ``--model`` spec (see the module docstring); ``constrained``
    switches the local backend's grammar-constrained call blocks on or off."""
    if spec in SCRIPTED_MODELS:
        return _Scripted(spec, latency_scale=latency_scale)
    model = resolve_model(spec, base_url=base_url, adapter=adapter)
    if hasattr(model, "constrained"):
        model.constrained = constrained
    if spec.startswith("openai:"):
        return _OpenAI(model)
    return _Shared(model)
