"""Reading what a model wrote in one eval run, from the run's events.

:class:`CallCollector` is an event subscriber for one agent run. The session publishes a
``call_written`` event for *every* well-formed call the model wrote — including calls the executor
rejected (unknown tool, bad arguments), calls a ``parallel`` turn never got to run because the
token limit ended it, and calls still in flight when the run ended — and a ``protocol_error``
event for every block it could not use; the call events say which calls ran and how they ended.
Nothing is parsed again here. It also counts the tokens spent on the protocol's markup (see
:func:`protocol_tokens`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from counterpoint.core.calls import Call
from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallStarted,
    CallWritten,
    ProtocolViolation,
    TokenEvent,
)

__all__ = ["CallCollector", "WrittenCall", "protocol_tokens"]

_PROTOCOL = re.compile(r"\[CALL\][^\[\]]{0,64}?\[HEAD\]|\[(?:CALL|HEAD|END|TRAP|INTR)\]")
"""CML markup: the markers, and a call's id between ``[CALL]`` and ``[HEAD]``."""


@dataclass
class WrittenCall:
    """A call block the model wrote: the call, and what became of it."""

    call: Call
    ran: bool = False
    ok: bool | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-able record (for the eval results table)."""
        out: dict[str, Any] = {
            "id": self.call.id,
            "name": self.call.name,
            "arguments": self.call.arguments,
        }
        if self.call.positional:
            out["positional"] = list(self.call.positional)
        out["ran"] = self.ran
        out["ok"] = self.ok
        if self.error is not None:
            out["error"] = self.error
        return out


class CallCollector:
    """Collects the calls of one run from its events (give it every event of that run)."""

    def __init__(self) -> None:
        self._calls: list[WrittenCall] = []
        self._by_id: dict[str, WrittenCall] = {}
        self._rejected: list[str] = []
        self._violations = 0
        self._pieces: list[str] = []

    def emit(self, event: BaseEvent) -> None:
        if isinstance(event, TokenEvent):
            self._pieces.append(event.text)
        elif isinstance(event, CallWritten):
            call = Call(
                id=event.call_id,
                name=event.name,
                arguments=dict(event.arguments),
                positional=tuple(event.positional),
                raw=event.raw,
            )
            written = WrittenCall(call)
            self._calls.append(written)
            self._by_id[call.id] = written
        elif isinstance(event, ProtocolViolation):
            self._violations += 1
            if event.raw.lstrip().startswith("[CALL]") or event.call_id is not None:
                label = f"{event.call_id}: " if event.call_id else ""
                self._rejected.append(f"{label}{event.message}")
        elif isinstance(event, CallStarted):
            started = self._by_id.get(event.call_id)
            if started is not None:
                started.ran = True
        elif isinstance(event, CallFinished):
            finished = self._by_id.get(event.call_id)
            if finished is not None:
                finished.ran = event.attempts > 0
                finished.ok = event.ok
                finished.error = event.error

    @property
    def calls(self) -> list[WrittenCall]:
        """Every well-formed call the model wrote, in the order written."""
        return list(self._calls)

    @property
    def rejected_blocks(self) -> list[str]:
        """Why each call block that was not a usable call was refused (bad syntax, bad markup)."""
        return list(self._rejected)

    @property
    def protocol_errors(self) -> int:
        """How many protocol errors the run had (every ``protocol_error`` event)."""
        return self._violations

    @property
    def generated(self) -> list[str]:
        """The generated tokens' texts, in order."""
        return list(self._pieces)


def protocol_tokens(pieces: Sequence[str]) -> float:
    """How many of the generated tokens ``pieces`` are CML markup (markers and call ids).

    A token counts for the share of its characters that fall inside markup, so a token such as
    ``"]["`` counts 1 and ``")["`` one half. Call bodies and free text are not markup.
    """
    text = "".join(pieces)
    inside = bytearray(len(text))
    for match in _PROTOCOL.finditer(text):
        inside[match.start() : match.end()] = b"\x01" * (match.end() - match.start())
    total = 0.0
    pos = 0
    for piece in pieces:
        if piece:
            total += sum(inside[pos : pos + len(piece)]) / len(piece)
        pos += len(piece)
    return total
