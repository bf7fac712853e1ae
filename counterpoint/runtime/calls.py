"""Function calls and their results, as the runtime and the tool executor exchange them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Call", "CallResult"]


@dataclass(frozen=True)
class Call:
    """A function call the model wrote.

    ``arguments`` holds keyword arguments; ``positional`` holds positional ones in order (the
    executor maps them onto the tool's parameters). ``raw`` is the body as the model wrote it.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    positional: tuple[Any, ...] = ()
    raw: str = ""


@dataclass(frozen=True)
class CallResult:
    """The outcome of one call.

    ``text`` is exactly what is injected into the model's context: the JSON of the value when
    ``ok``, otherwise a short error message written for the model (never a traceback).
    ``started``/``finished`` are seconds since the run started.
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
