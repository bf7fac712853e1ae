"""What a local generation has called so far, so that it does not write the same call twice.

A small model that has a call's result in front of it often writes the very same call again
(and again, until its token budget runs out) instead of answering. The local decoder therefore
looks ahead at every call block the model starts once it has written one (see
:meth:`~counterpoint.runtime.backends.transformers.TransformersDecoder`): it writes the block on
the side, and if it is a repeat (the same function with the same arguments as a block already
written) it masks the token that opened it and lets the model choose again. Until something new
is injected (a result, a user message) the model may then open no block at all.

:class:`CallLedger` is the bookkeeping: a streaming CML parse of the generation's own text, the
calls it holds (by :func:`call_key`), and whether calls are closed for now.
"""

from __future__ import annotations

import json

from counterpoint.protocol.callsyntax import CallSyntaxError, parse_call
from counterpoint.protocol.cml import CallBlock, CMLParser

__all__ = ["CALL_MARKER", "CallLedger", "call_key", "opens_marker"]

CALL_MARKER = "[CALL]"


def call_key(body: str) -> str | None:
    """The identity of a call body: its function and arguments, whatever their spelling (the
    order of keyword arguments, quotes, spaces); ``None`` when the body does not parse."""
    try:
        parsed = parse_call(body)
    except CallSyntaxError:
        return None
    return json.dumps(
        [parsed.name, parsed.arguments, list(parsed.positional)], sort_keys=True, default=repr
    )


def opens_marker(text: str, marker: str = CALL_MARKER) -> bool:
    """True when ``text`` (what the model wrote from some token on) holds ``marker`` or ends with
    a beginning of it: from that token on, the model may be opening a block."""
    return marker in text or any(text.endswith(marker[:k]) for k in range(1, len(marker)))


class CallLedger:
    """The calls one generation has written: fed every piece of text the model writes."""

    def __init__(self) -> None:
        self._parser = CMLParser()
        self._keys: set[str] = set()
        self.blocks = 0
        """Call blocks written so far (parsed or not)."""
        self.closed = False
        """True after a refused repeat, until something new is injected: no block may open."""
        self.refused = 0
        """Repeats refused so far."""
        self.last_key: str | None = None
        """The key of the last block written (``None`` when it did not parse)."""

    def feed(self, piece: str) -> None:
        """Record ``piece`` (every block it closes joins the ledger)."""
        for event in self._parser.feed(piece):
            if isinstance(event, CallBlock):
                key = call_key(event.body)
                if key is not None:
                    self._keys.add(key)
                self.blocks += 1
                self.last_key = key

    def interrupted(self) -> None:
        """Text was injected: new information, so blocks may open again."""
        self.closed = False

    def holds(self, key: str) -> bool:
        """True when a block with this key was written already."""
        return key in self._keys

    def fork(self) -> CallLedger:
        """An independent copy (for a look-ahead that may be thrown away)."""
        twin = CallLedger.__new__(CallLedger)
        twin._parser = self._parser.copy()
        twin._keys = set(self._keys)
        twin.blocks = self.blocks
        twin.closed = self.closed
        twin.refused = self.refused
        twin.last_key = self.last_key
        return twin
