"""Function calls, their results, user interrupts and tool specs: the data every layer exchanges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Call", "CallResult", "Interrupt", "ToolSpec", "UserInterrupt"]


@dataclass(frozen=True)
class Call:
    """A function call the model wrote.

    ``arguments`` holds keyword arguments; ``positional`` holds positional ones in order (the
    executor maps them onto the tool's parameters). ``raw`` is the body as the model wrote it
    (for a native tool call, the arguments' JSON text).
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    positional: tuple[Any, ...] = ()
    raw: str = ""


@dataclass(frozen=True)
class CallResult:
    """The outcome of one call.

    ``text`` is the result as the model will read it: the JSON of the value when ``ok``,
    otherwise a short error message written for the model (never a traceback). It is data: each
    backend renders it (a CML interrupt, a ``role: "tool"`` message) and neutralises any marker
    or control token inside it. ``started``/``finished`` are seconds since the run started.
    """

    call: Call
    ok: bool
    text: str
    value: Any = None
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    attempts: int = 1

    @property
    def duration_s(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True)
class UserInterrupt:
    """A message from the user that arrives while the model is still writing (AsyncLM §6).

    ``t`` is when the caller sent it, in seconds since the run started.
    """

    text: str
    t: float = 0.0


Interrupt = CallResult | UserInterrupt
"""What a session injects into a live generation: call results and user messages."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model backend sees it: enough to describe it, nothing to run it.

    ``parameters`` is the JSON schema of the arguments (``{"type": "object", ...}``).
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    estimated_latency_s: float | None = None
    signature: str = ""
    """A one-line Python-style signature (``get_weather(city: str)``), for prompts."""

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}
