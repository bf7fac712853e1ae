"""Simulated tools for BFCL cases: each function doc becomes a tool that takes a deterministic
latency and returns a deterministic JSON result.

BFCL only ships function *docs*; to run a case end to end, each doc becomes a
:class:`~counterpoint.tools.tool.Tool` (through :meth:`Tool.from_schema`, so the model's arguments
are validated against the doc) whose execution sleeps :func:`simulated_latency` — drawn
deterministically from 30–500 ms by the function's name, as AsyncLM's evaluation does — and returns
:func:`simulated_result`, derived from a hash of the name and the arguments. The same call therefore
takes the same time and gives the same answer in every mode and every run. The tools' estimated
latency is set to that same value, so the system prompt tells the model which calls are slow (the
LPT rule: start the slowest first).

``latency_scale`` multiplies every latency (``0.05`` turns 30–500 ms into 1.5–25 ms for fast tests).

Example::

    from counterpoint.evals.datasets import load_category
    from counterpoint.evals.simulate import case_toolset

    case = load_category("parallel", limit=1)[0]
    tools = case_toolset(case, latency_scale=0.1)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from counterpoint.errors import ConfigError
from counterpoint.evals.datasets import BFCLCase, tool_spec
from counterpoint.testing.workloads import function_latency
from counterpoint.tools.tool import SchemaTool, Tool
from counterpoint.tools.toolset import Toolset

__all__ = ["case_toolset", "simulated_latency", "simulated_result", "simulated_tool"]


def simulated_latency(name: str, scale: float = 1.0) -> float:
    """Seconds a call of function ``name`` takes: 30–500 ms by name (mean near 110 ms), x ``scale``.

    The draw is keyed on the function's name as BFCL writes it (``math.factorial``), so the
    underscore spelling an OpenAI-style API needs takes the same time.
    """
    if not scale >= 0:
        raise ConfigError(f"latency scale must be 0 or more, got {scale}")
    return function_latency(name) * scale


def simulated_result(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The deterministic result of calling ``name`` with ``arguments``.

    A small JSON object derived from a SHA-256 of the name and the canonical JSON of the
    arguments: equal calls give equal results in every process; different calls (almost surely)
    differ. Keys: ``function``, ``status`` (always ``"ok"``), ``result`` (a number with two
    decimals) and ``ref`` (a short hex reference).
    """
    canonical = json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=repr)
    digest = hashlib.sha256(f"{name}\0{canonical}".encode()).digest()
    value = int.from_bytes(digest[:4], "big") % 100_000 / 100
    return {"function": name, "status": "ok", "result": value, "ref": digest[4:8].hex()}


def simulated_tool(
    function: Mapping[str, Any], *, latency_scale: float = 1.0, flat_name: bool = False
) -> SchemaTool:
    """A tool for one BFCL function doc.

    Its arguments are validated against the doc (converted by
    :func:`~counterpoint.evals.datasets.tool_spec`); a call sleeps :func:`simulated_latency` and
    returns :func:`simulated_result`. With ``flat_name`` the tool is named with dots replaced by
    underscores (for OpenAI-style APIs), but latency and result still key on the doc's own name.
    """
    spec = tool_spec(dict(function), flat_name=flat_name)
    name = str(function["name"])
    latency = simulated_latency(name, latency_scale)

    async def run(**arguments: Any) -> dict[str, Any]:
        await asyncio.sleep(latency)
        return simulated_result(name, arguments)

    return Tool.from_schema(spec, run, estimated_latency_s=latency)


def case_toolset(
    case: BFCLCase, *, latency_scale: float = 1.0, flat_names: bool = False
) -> Toolset:
    """The simulated tools of every function a case offers, in the case's order.

    Raises :class:`ConfigError` when ``flat_names`` would give two functions the same name.
    """
    tools = [
        simulated_tool(doc, latency_scale=latency_scale, flat_name=flat_names)
        for doc in case.functions
    ]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"case {case.id!r}: two offered functions share the name "
            f"{next(n for n in names if names.count(n) > 1)!r} once dots become underscores; "
            "run this case on a model that accepts dotted names"
        )
    return Toolset(tools)
