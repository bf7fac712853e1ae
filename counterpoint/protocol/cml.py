"""The CML protocol: an incremental, streaming parser for the markers a model writes.

CML ("context markup language", after AsyncLM, arXiv 2412.07017) uses plain-text markers so that
any model can take part::

    [CALL] c1 [HEAD] get_weather(city="Paris") [END]    a call with the id c1
    [CALL] get_weather(city="Paris") [END]              a call without an id (one is generated)
    [INTR] c1 [HEAD] {"temp_c": 17} [END]               a result, injected by the runtime only
    [TRAP][END]                                         the model waits for results

:class:`CMLParser` is fed the model's output one token's text at a time, however the markers are
split across tokens (``[``, ``C``, ``ALL``, ``]``) or merged with their neighbours (``][``,
``]\\n``, ``word[CALL]``, ``[END][CALL]``), and returns :data:`ParseEvent` values as soon as they
are known. Text outside markers comes out at once; only a possible marker prefix (``[CA``) is held
back. :attr:`CMLParser.in_critical_section` says whether an interrupt may be injected now.

Rules the parser applies (and the session relies on):

- Markers are case-sensitive and exact: ``[call]`` or ``[ CALL ]`` is text.
- A call block is ``[CALL] id [HEAD] body [END]`` or ``[CALL] body [END]``; the body may span lines.
  Whitespace around the id and the body is stripped. A block without ``[HEAD]`` (or with an empty
  id before it) gets a generated id: ``c1``, ``c2``, ... skipping every id already used or reserved.
- An explicit id must be a Python identifier and unused, otherwise the block becomes a
  :class:`MarkupError` (for a duplicate, with ``call_id`` set to the duplicated id). A block with an
  empty body or with more than one ``[HEAD]`` is a :class:`MarkupError` too. Ids of blocks that
  became errors are not registered: the model may reuse them.
- ``[CALL]``, ``[INTR]`` or ``[TRAP]`` inside an open call block ends it with a :class:`MarkupError`
  ("was not closed with [END]") and is then handled as usual.
- ``[INTR]`` written by the model is a protocol error: everything up to its ``[END]`` is skipped and
  reported as one :class:`MarkupError` when the ``[END]`` arrives (or a ``[CALL]``/``[INTR]``
  starts, or the stream ends).
- ``[TRAP]`` followed by ``[END]`` (whitespace allowed between them) is a :class:`TrapMarker`.
  ``[TRAP]`` followed by anything else is a :class:`MarkupError`; what follows is handled as usual.
  At the end of the stream a ``[TRAP]`` still waiting for its ``[END]`` counts as a trap (a stop
  sequence may have cut the ``[END]`` off).
- A stray ``[END]`` or ``[HEAD]`` outside a block is a :class:`MarkupError` and is dropped from the
  text (the session may ignore such errors or tell the model).
- The body text is opaque here: :mod:`counterpoint.protocol.callsyntax` parses it. A string
  argument that itself contains a marker such as ``"[END]"`` ends the block early: the protocol
  is plain text.
"""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from counterpoint.core.calls import Interrupt, UserInterrupt
from counterpoint.protocol.escape import neutralise
from counterpoint.protocol.prompt import USER_ID

__all__ = [
    "MARKERS",
    "TRAP",
    "CMLParser",
    "CallBlock",
    "MarkupError",
    "ParseEvent",
    "TextPiece",
    "TrapMarker",
    "format_call",
    "format_interrupt",
    "format_interrupts",
]

_CALL = "[CALL]"
_HEAD = "[HEAD]"
_END = "[END]"
_INTR = "[INTR]"
_TRAP = "[TRAP]"

MARKERS: tuple[str, ...] = (_CALL, _HEAD, _END, _INTR, _TRAP)
"""Every CML marker, exactly as written."""

TRAP: str = _TRAP + _END
"""The complete trap, as a model should write it."""

_LONGEST_MARKER = max(len(m) for m in MARKERS)
_MARKER_RE = re.compile("|".join(re.escape(m) for m in MARKERS))


@dataclass(frozen=True)
class TextPiece:
    """Plain text outside any marker, exactly as the model wrote it."""

    text: str


@dataclass(frozen=True)
class CallBlock:
    """A complete call block.

    ``body`` is the call with surrounding whitespace stripped (not yet parsed), ``raw`` the whole
    block from ``[CALL]`` to ``[END]`` as written, and ``generated_id`` says whether the parser
    chose ``call_id`` because the model gave none.
    """

    call_id: str
    body: str
    raw: str
    generated_id: bool


@dataclass(frozen=True)
class TrapMarker:
    """The model wrote ``[TRAP][END]``: it has nothing to do until a result arrives."""

    raw: str = TRAP


@dataclass(frozen=True)
class MarkupError:
    """The model broke the protocol; ``message`` is written for the model.

    ``raw`` is the offending text. ``call_id`` is the id the model wrote for the block, when it
    wrote a valid identifier (for a duplicate id, the duplicated id).
    """

    message: str
    raw: str
    call_id: str | None = None


ParseEvent = TextPiece | CallBlock | TrapMarker | MarkupError
"""What :meth:`CMLParser.feed` and :meth:`CMLParser.finish` return."""

_HOW_TO_CALL = "Write each call as [CALL] id [HEAD] name(arg=value) [END]."


class _State(enum.Enum):
    TEXT = "text"  # outside any block
    CALL = "call"  # inside [CALL] ... [END]
    INTR = "intr"  # skipping an [INTR] ... [END] the model wrote
    TRAP = "trap"  # after [TRAP], waiting for [END]


class CMLParser:
    """Incremental CML parser. Feed it text in pieces of any size; read events back.

    One parser may serve several turns: :meth:`finish` resets the state but remembers the ids
    already used, so generated ids never repeat. Use :meth:`reserve_id` for ids used elsewhere.
    """

    def __init__(self, id_prefix: str = "c") -> None:
        if not id_prefix.isidentifier():
            raise ValueError(f"id_prefix must be a Python identifier, got {id_prefix!r}")
        self._prefix = id_prefix
        self._used: set[str] = {USER_ID}
        self._next_id = 1
        self._state = _State.TEXT
        self._buf = ""  # unconsumed input: empty, or a possible marker prefix
        self._text: list[str] = []  # text not yet emitted as a TextPiece
        self._events: list[ParseEvent] = []
        self._raw: list[str] = []  # the current block, as written
        self._parts: list[list[str]] = []  # call block: [before [HEAD]] or [id, body]
        self._extra_head = False

    @property
    def in_critical_section(self) -> bool:
        """True inside a block (call, model-written interrupt, trap) or a partly matched marker."""
        return self._state is not _State.TEXT or bool(self._buf)

    @property
    def in_block(self) -> bool:
        """True inside a call block, a model-written interrupt or a trap (not merely after a
        partly matched marker)."""
        return self._state is not _State.TEXT

    def copy(self) -> CMLParser:
        """An independent parser in the same state (the same ids used, the same input held)."""
        return copy.deepcopy(self)

    def reserve_id(self, call_id: str) -> None:
        """Mark ``call_id`` as used: a block that reuses it is an error; it is never generated."""
        self._used.add(call_id)

    def feed(self, text: str) -> list[ParseEvent]:
        """Consume the next piece of model output and return the events it completes."""
        if text:
            self._buf += text
            self._scan()
        return self._drain()

    def finish(self) -> list[ParseEvent]:
        """End of stream: flush held text and report any block left open. Resets the state."""
        buf, self._buf = self._buf, ""
        state, self._state = self._state, _State.TEXT
        if state is _State.TEXT:
            self._text.append(buf)
        elif state is _State.CALL:
            self._raw.append(buf)
            self._emit(self._unterminated_call())
        elif state is _State.INTR:
            self._raw.append(buf)
            self._emit(self._model_interrupt(closed=False))
        elif not buf or _END.startswith(buf):
            self._emit(TrapMarker(raw="".join(self._raw) + buf))
        else:
            self._emit(self._bad_trap())
            self._text.append(buf)
        self._reset_block()
        return self._drain()

    # -- scanning ------------------------------------------------------------------------------

    def _scan(self) -> None:
        buf = self._buf
        pos = 0
        for match in _MARKER_RE.finditer(buf):
            self._sink(buf[pos : match.start()])
            self._on_marker(match.group(0))
            pos = match.end()
        rest = buf[pos:]
        # Markers hold one "[": only the last "[" near the end can start a marker still to come.
        k = rest.rfind("[", max(0, len(rest) - _LONGEST_MARKER + 1))
        if k >= 0 and any(m.startswith(rest[k:]) for m in MARKERS):
            self._sink(rest[:k])
            self._buf = rest[k:]  # a possible marker prefix: wait for more input
        else:
            self._sink(rest)
            self._buf = ""

    def _sink(self, text: str) -> None:
        """Route text that is not a marker according to the state."""
        if not text:
            return
        state = self._state
        if state is _State.TEXT:
            self._text.append(text)
        elif state is _State.CALL:
            self._raw.append(text)
            self._parts[-1].append(text)
        elif state is _State.INTR:
            self._raw.append(text)
        else:  # after [TRAP]: only whitespace may come before [END]
            stripped = text.lstrip()
            self._raw.append(text[: len(text) - len(stripped)])
            if stripped:
                self._emit(self._bad_trap())
                self._state = _State.TEXT
                self._reset_block()
                self._text.append(stripped)

    def _on_marker(self, marker: str) -> None:
        state = self._state
        if state is _State.TEXT:
            if marker == _CALL:
                self._open(_State.CALL, marker)
                self._parts = [[]]
            elif marker == _INTR:
                self._open(_State.INTR, marker)
            elif marker == _TRAP:
                self._open(_State.TRAP, marker)
            else:
                self._emit(
                    MarkupError(
                        f"{marker} outside a call block was ignored. {_HOW_TO_CALL}", raw=marker
                    )
                )
            return
        if state is _State.CALL:
            if marker == _HEAD:
                self._raw.append(marker)
                if len(self._parts) == 1:
                    self._parts.append([])
                else:
                    self._extra_head = True
                    self._parts[-1].append(marker)
                return
            if marker == _END:
                self._raw.append(marker)
                self._emit(self._close_call())
                self._to_text()
                return
            self._emit(self._unterminated_call())
        elif state is _State.INTR:
            if marker in (_HEAD, _TRAP):
                self._raw.append(marker)
                return
            if marker == _END:
                self._raw.append(marker)
                self._emit(self._model_interrupt(closed=True))
                self._to_text()
                return
            self._emit(self._model_interrupt(closed=False))
        else:  # _State.TRAP
            if marker == _END:
                self._raw.append(marker)
                self._emit(TrapMarker(raw="".join(self._raw)))
                self._to_text()
                return
            self._emit(self._bad_trap())
        # The open block ended with an error; handle the marker as if outside any block.
        self._to_text()
        self._on_marker(marker)

    # -- blocks --------------------------------------------------------------------------------

    def _open(self, state: _State, marker: str) -> None:
        self._state = state
        self._reset_block()
        self._raw.append(marker)

    def _to_text(self) -> None:
        self._state = _State.TEXT
        self._reset_block()

    def _reset_block(self) -> None:
        self._raw = []
        self._parts = []
        self._extra_head = False

    def _explicit_id(self) -> str | None:
        """The id written before ``[HEAD]``, if there is one (may be empty or invalid)."""
        if len(self._parts) < 2:
            return None
        return "".join(self._parts[0]).strip()

    def _close_call(self) -> CallBlock | MarkupError:
        raw = "".join(self._raw)
        call_id = self._explicit_id()
        body = "".join(self._parts[-1]).strip()
        if call_id and not call_id.isidentifier():
            return MarkupError(
                f"call id {call_id!r} is not valid: use a short identifier such as c1 "
                f"(letters, digits, underscores). {_HOW_TO_CALL}",
                raw=raw,
            )
        if call_id and call_id in self._used:
            return MarkupError(
                f"call id {call_id} is already used: give each call a new id. "
                "The call was not run.",
                raw=raw,
                call_id=call_id,
            )
        if self._extra_head:
            return MarkupError(
                f"{_call_name(call_id)} has more than one [HEAD]; it was not run. {_HOW_TO_CALL}",
                raw=raw,
                call_id=call_id or None,
            )
        if not body:
            return MarkupError(
                f"{_call_name(call_id)} has an empty body; it was not run. {_HOW_TO_CALL}",
                raw=raw,
                call_id=call_id or None,
            )
        generated = not call_id
        if not call_id:
            call_id = self._generate_id()
        self._used.add(call_id)
        return CallBlock(call_id=call_id, body=body, raw=raw, generated_id=generated)

    def _unterminated_call(self) -> MarkupError:
        call_id = self._explicit_id()
        valid = call_id if call_id and call_id.isidentifier() else None
        what = f"call {valid}" if valid else "a [CALL] block"
        return MarkupError(
            f"{what} was not closed with [END]; it was not run. {_HOW_TO_CALL}",
            raw="".join(self._raw),
            call_id=valid,
        )

    def _model_interrupt(self, *, closed: bool) -> MarkupError:
        raw = "".join(self._raw)
        return MarkupError(
            "only the runtime writes [INTR] blocks: wait for results instead of writing them "
            "(write [TRAP][END] when you have nothing else to do)"
            + ("" if closed else "; this [INTR] block was also not closed with [END]"),
            raw=raw,
        )

    def _bad_trap(self) -> MarkupError:
        return MarkupError(
            "[TRAP] must be followed directly by [END]: write [TRAP][END] to wait for results.",
            raw="".join(self._raw),
        )

    def _generate_id(self) -> str:
        while f"{self._prefix}{self._next_id}" in self._used:
            self._next_id += 1
        call_id = f"{self._prefix}{self._next_id}"
        self._next_id += 1
        return call_id

    # -- output --------------------------------------------------------------------------------

    def _flush_text(self) -> None:
        if self._text:
            text = "".join(self._text)
            self._text = []
            if text:
                self._events.append(TextPiece(text))

    def _emit(self, event: ParseEvent) -> None:
        self._flush_text()
        self._events.append(event)

    def _drain(self) -> list[ParseEvent]:
        self._flush_text()
        events, self._events = self._events, []
        return events


def _call_name(call_id: str | None) -> str:
    return f"call {call_id}" if call_id else "a [CALL] block"


def _check_id(call_id: str) -> None:
    if not call_id.isidentifier():
        raise ValueError(f"a call id must be a Python identifier, got {call_id!r}")


def format_interrupt(call_id: str, text: str, special_tokens: Iterable[str] = ()) -> str:
    """The interrupt the runtime injects for a result: ``[INTR] c1 [HEAD] {text} [END]\\n``.

    ``text`` is neutralised (:func:`~counterpoint.protocol.escape.neutralise`): it can never close
    its own block, pose as another result, or carry a control token.
    """
    _check_id(call_id)
    return f"{_INTR} {call_id} {_HEAD} {neutralise(text, special_tokens)} {_END}\n"


def format_interrupts(items: Iterable[Interrupt], special_tokens: Iterable[str] = ()) -> str:
    """Every call result and user message in ``items`` as CML interrupts, in order.

    A user message is ``[INTR] user [HEAD] message [END]`` (the id ``user`` is reserved).
    """
    specials = tuple(special_tokens)
    parts = []
    for item in items:
        if isinstance(item, UserInterrupt):
            parts.append(format_interrupt(USER_ID, item.text, specials))
        else:
            parts.append(format_interrupt(item.call.id, item.text, specials))
    return "".join(parts)


def format_call(call_id: str, body: str) -> str:
    """A call block as a model should write it: ``[CALL] c1 [HEAD] body [END]``."""
    _check_id(call_id)
    return f"{_CALL} {call_id} {_HEAD} {body} {_END}"
