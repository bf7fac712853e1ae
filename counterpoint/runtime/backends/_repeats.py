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

import copy
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from counterpoint.protocol.callsyntax import CallSyntaxError, parse_call
from counterpoint.protocol.cml import CallBlock, CMLParser, MarkupError

__all__ = [
    "CALL_MARKER",
    "CallLedger",
    "MarkerOdds",
    "call_key",
    "marker_odds",
    "marker_start",
    "opener_mask",
]

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


def marker_start(text: str, marker: str = CALL_MARKER) -> int | None:
    """Where in ``text`` a ``marker`` begins that runs to its end (``text[i:]`` is a non-empty
    beginning of ``marker``, or all of it); ``None`` when the text does not end inside one."""
    for i in range(max(0, len(text) - len(marker)), len(text)):
        if marker.startswith(text[i:]):
            return i
    return None


def opener_mask(texts: Sequence[str], marker: str = CALL_MARKER) -> torch.Tensor:
    """A bool mask over the vocabulary: the tokens whose text ends inside (or at the end of) a
    beginning of ``marker`` (``[``, ``.[``, ``[CALL``...), the tokens that can open a block."""
    return torch.tensor([bool(t) and marker_start(t, marker) is not None for t in texts])


@dataclass(frozen=True)
class MarkerOdds:
    """How likely a marker is at one step (see :func:`marker_odds`)."""

    opened: float
    """The mass of the tokens that can open it."""
    completes: float
    """The probability that the opening goes on to the whole marker (a ``[`` also begins
    other markers, such as ``[TRAP]``)."""
    others: float
    """The mass of the tokens that cannot open it."""

    @property
    def marker(self) -> float:
        """The probability that the marker is written next."""
        return self.opened * self.completes

    @property
    def opened_otherwise(self) -> float:
        """The probability that an opening token goes on to something else."""
        return self.opened * (1.0 - self.completes)


def marker_odds(
    logits: torch.Tensor,
    openers: torch.Tensor,
    *,
    lead: str,
    after: Sequence[tuple[str, float]],
    marker: str = CALL_MARKER,
) -> MarkerOdds:
    """The odds of ``marker`` at a step whose scores are ``logits`` (bans applied: ``-inf``):
    the mass of the opening tokens (``openers``), and the probability of the tokens that
    completed the marker on the path one of them took (``lead``: that token's text from the
    marker's start; ``after``: the (text, logprob) of the tokens written after it).

    An estimate: every opening token is taken to go on as that one did (a `` [`` or ``.[`` in
    prose less often does), and only that path's spelling of the rest of the marker counts."""
    mass = torch.softmax(logits.float(), dim=-1)
    chosen = openers[: mass.numel()]
    opened = float(mass[chosen].sum())
    others = float(mass[~chosen].sum())
    written, logprob = lead, 0.0
    for text, step in after:
        if written.startswith(marker):
            break
        logprob += step
        written += text
    return MarkerOdds(opened, math.exp(logprob), others)


class CallLedger:
    """The calls one generation has written: fed every piece of text the model writes."""

    def __init__(self) -> None:
        self._parser = CMLParser()
        self._keys: dict[str, str] = {}  # call id -> key
        self.blocks = 0
        """Call blocks written so far (parsed or not)."""
        self.ended = 0
        """Blocks that ended so far, as a call or as a protocol error."""
        self.closed = False
        """True after a refused repeat, until something new is injected: no block may open."""
        self.refused = 0
        """Blocks refused so far."""
        self.last_key: str | None = None
        """The key of the last block written (``None`` when it did not parse)."""
        self._waiting: set[str] = set()  # ids of calls written whose results have not come

    @property
    def in_flight(self) -> int:
        """Calls written whose results have not been injected yet."""
        return len(self._waiting)

    @property
    def in_block(self) -> bool:
        """True while the text written so far is inside a block (or a trap)."""
        return self._parser.in_block

    def feed(self, piece: str) -> None:
        """Record ``piece`` (every call block it closes joins the ledger)."""
        for event in self._parser.feed(piece):
            if isinstance(event, CallBlock):
                key = call_key(event.body)
                if key is not None:
                    self._keys[event.call_id] = key
                self._waiting.add(event.call_id)
                self.blocks += 1
                self.ended += 1
                self.last_key = key
            elif isinstance(event, MarkupError):
                self.ended += 1
                self.last_key = None

    def interrupted(self, failed: Iterable[str] = (), answered: Iterable[str] = ()) -> None:
        """Text was injected: new information, so blocks may open again. The calls whose ids
        are in ``answered`` have their results now; those in ``failed`` came back as errors:
        writing them again is a retry, not a repeat."""
        self.closed = False
        for call_id in failed:
            self._keys.pop(call_id, None)
            self._waiting.discard(call_id)
        self._waiting.difference_update(answered)

    def holds(self, key: str) -> bool:
        """True when a block with this key was written already (and did not fail)."""
        return key in self._keys.values()

    def fork(self) -> CallLedger:
        """An independent copy (for a look-ahead that may be thrown away)."""
        twin = copy.copy(self)
        twin._parser = self._parser.copy()
        twin._keys = dict(self._keys)
        twin._waiting = set(self._waiting)
        return twin
