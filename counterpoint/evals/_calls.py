"""Reading what a model wrote in one eval run, from the run's events.

:class:`CallCollector` is an event sink for one agent run. It re-parses the generated tokens with
the same CML parser the session uses, so it sees *every* call block the model wrote — including
calls the executor rejected (unknown tool, bad arguments), calls a ``parallel`` turn never got to
run because the token limit ended it, and calls still in flight when the run ended — and it knows
which of them ran and how they ended from the call events. It also counts the tokens spent on the
protocol's markup (see :func:`protocol_tokens`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from counterpoint.runtime.calls import Call
from counterpoint.runtime.callsyntax import CallSyntaxError, parse_call
from counterpoint.runtime.cml import CallBlock, CMLParser, MarkupError, ParseEvent
from counterpoint.runtime.events import (
    CallFinished,
    CallStarted,
    Event,
    EventSink,
    InterruptInjected,
    TokenEvent,
    TrapEvent,
)

__all__ = ["CallCollector", "Tee", "WrittenCall", "protocol_tokens"]

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
    """Collects the calls of one run from its events (give it every event of that run).

    The parser is fed the generated tokens and closed where the session closes its own: at the end
    of a stream. A session only injects results or waits outside a critical section, except after
    the end of a stream; so an interrupt or a wait that arrives while this parser is inside a block
    marks an end of stream, and the open block is closed there as the session closed it.
    """

    def __init__(self) -> None:
        self._parser = CMLParser()
        self._calls: list[WrittenCall] = []
        self._by_id: dict[str, WrittenCall] = {}
        self._syntax_errors: list[str] = []
        self._pieces: list[str] = []
        self._finished = False

    def emit(self, event: Event) -> None:
        if isinstance(event, TokenEvent):
            self._pieces.append(event.text)
            self._absorb(self._parser.feed(event.text))
        elif isinstance(event, InterruptInjected | TrapEvent):
            if self._parser.in_critical_section:
                self._absorb(self._parser.finish())
        elif isinstance(event, CallStarted):
            written = self._by_id.get(event.call_id)
            if written is not None:
                written.ran = True
        elif isinstance(event, CallFinished):
            written = self._by_id.get(event.call_id)
            if written is not None:
                written.ran = True
                written.ok = event.ok
                written.error = event.error
        elif event.kind == "done":
            self._finish()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._absorb(self._parser.finish())

    def _absorb(self, events: Iterable[ParseEvent]) -> None:
        for ev in events:
            if isinstance(ev, CallBlock):
                try:
                    parsed = parse_call(ev.body)
                except CallSyntaxError as exc:
                    self._syntax_errors.append(f"{ev.call_id}: {exc}")
                    continue
                call = Call(
                    id=ev.call_id,
                    name=parsed.name,
                    arguments=dict(parsed.arguments),
                    positional=tuple(parsed.positional),
                    raw=ev.body,
                )
                written = WrittenCall(call)
                self._calls.append(written)
                self._by_id[call.id] = written
            elif isinstance(ev, MarkupError) and ev.raw.strip().startswith("[CALL]"):
                self._syntax_errors.append(ev.message)

    @property
    def calls(self) -> list[WrittenCall]:
        """Every well-formed call the model wrote, in the order written."""
        self._finish()
        return list(self._calls)

    @property
    def rejected_blocks(self) -> list[str]:
        """Why each call block that was not a usable call was refused (bad syntax, bad markup)."""
        self._finish()
        return list(self._syntax_errors)

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


class Tee:
    """An event sink that hands every event to several sinks, in order."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)
