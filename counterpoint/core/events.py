"""Typed runtime events.

Events are the single source of truth for the terminal UI, traces and evals: each is a pydantic
model with a ``kind`` discriminator. ``t`` is seconds since the run started (monotonic clock);
``run_id`` ties an event to its run.

The runtime's own kinds form the :data:`Event` union. Other packages add kinds of their own
(workflow tasks, patches...) by subclassing :class:`BaseEvent` with a ``kind`` literal and
decorating the class with :func:`register_event`; :func:`parse_event` reads any registered kind
back from its JSON (the traces database stores every event it is given).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "BaseEvent",
    "CallFinished",
    "CallProgress",
    "CallStarted",
    "CallWritten",
    "Done",
    "Event",
    "EventSink",
    "InterruptInjected",
    "KVReuse",
    "ProtocolViolation",
    "RunStarted",
    "TokenEvent",
    "TrapEvent",
    "Usage",
    "UserMessage",
    "event_adapter",
    "event_kinds",
    "parse_event",
    "register_event",
]


class BaseEvent(BaseModel):
    """What every event has: its ``kind``, its run, and when it happened in that run."""

    model_config = ConfigDict(frozen=True)

    kind: str
    run_id: str
    t: float = Field(description="Seconds since the run started (monotonic).")


_Event = BaseEvent


class RunStarted(_Event):
    kind: Literal["run_started"] = "run_started"
    name: str
    model: str
    mode: str
    prompt: str
    parent_run_id: str | None = None
    wall_time: float = Field(description="Unix time at the start of the run.")


class TokenEvent(_Event):
    kind: Literal["token"] = "token"
    text: str
    token_id: int
    index: int


class CallWritten(_Event):
    """The model finished writing a call (a CML block closed, or a native tool call arrived).

    Emitted for every well-formed call, before limits and validation: it records what the model
    wrote, whether or not it runs. ``offset`` is where the block ends in the generated text (in
    characters), ``token_index`` the index of the token that closed it.
    """

    kind: Literal["call_written"] = "call_written"
    call_id: str
    name: str
    arguments: dict[str, Any]
    positional: list[Any] = Field(default_factory=list)
    raw: str = ""
    offset: int = 0
    token_index: int = 0
    native: bool = False


class ProtocolViolation(_Event):
    """The model broke the protocol (an unparsable call, a model-written ``[INTR]``...).

    ``message`` is what the model is told (as an error interrupt), ``raw`` what it wrote.
    """

    kind: Literal["protocol_error"] = "protocol_error"
    call_id: str | None = None
    message: str
    raw: str = ""


class UserMessage(_Event):
    """The caller sent a message while the run was going (a user interrupt; see ``interrupt``)."""

    kind: Literal["user_interrupt"] = "user_interrupt"
    text: str


class CallStarted(_Event):
    kind: Literal["call_started"] = "call_started"
    call_id: str
    name: str
    arguments: dict[str, Any]


class CallProgress(_Event):
    kind: Literal["call_progress"] = "call_progress"
    call_id: str
    name: str
    message: str
    fraction: float | None = None


class CallFinished(_Event):
    kind: Literal["call_finished"] = "call_finished"
    call_id: str
    name: str
    ok: bool
    result: str = Field(description="The text injected into the model's context.")
    error: str | None = None
    started: float
    duration_s: float
    attempts: int = 1


class InterruptInjected(_Event):
    kind: Literal["interrupt"] = "interrupt"
    call_ids: list[str]
    text: str
    tokens: int
    duration_s: float = Field(description="Time spent prefilling the interrupt text.")


class TrapEvent(_Event):
    kind: Literal["trap"] = "trap"
    phase: Literal["enter", "exit"]
    pending: list[str]
    reason: Literal["trap", "eos", "turn_end", "sync_call"] = "trap"


class KVReuse(_Event):
    """How one prefill was served on a KV-reuse backend (``t`` is when the prefill began)."""

    kind: Literal["kv_reuse"] = "kv_reuse"
    policy: str
    mode: str = Field(description="'reuse' when cached KV served part of it, else 'dense'.")
    prompt_tokens: int
    reused_tokens: int
    computed_tokens: int
    ttft_s: float
    attributes: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    interrupts: int = 0


class Done(_Event):
    kind: Literal["done"] = "done"
    status: Literal["ok", "error", "cancelled", "limit"]
    text: str
    error: str | None = None
    usage: Usage = Usage()
    first_token_t: float | None = None
    last_token_t: float | None = None


Event = Annotated[
    RunStarted
    | TokenEvent
    | CallWritten
    | ProtocolViolation
    | UserMessage
    | CallStarted
    | CallProgress
    | CallFinished
    | InterruptInjected
    | TrapEvent
    | KVReuse
    | Done,
    Field(discriminator="kind"),
]
"""The runtime's own event kinds (a discriminated union)."""

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)

_E = TypeVar("_E", bound=type[BaseEvent])
_REGISTRY: dict[str, type[BaseEvent]] = {}


def _kind_of(cls: type[BaseEvent]) -> str:
    field = cls.model_fields.get("kind")
    values = get_args(field.annotation) if field is not None else ()
    if len(values) != 1 or not isinstance(values[0], str):
        raise TypeError(f"{cls.__name__} must declare kind: Literal['its_kind'] = 'its_kind'")
    return values[0]


def register_event(cls: _E) -> _E:
    """Register an event class of another package so traces and UIs can read it back.

    The class subclasses :class:`BaseEvent` and declares ``kind: Literal["name"] = "name"``; a
    kind registered twice by different classes is an error.
    """
    kind = _kind_of(cls)
    known = _REGISTRY.get(kind)
    if known is not None and known is not cls:
        raise TypeError(f"event kind {kind!r} is already registered by {known.__name__}")
    _REGISTRY[kind] = cls
    return cls


for _cls in get_args(get_args(Event)[0]):
    register_event(_cls)


def event_kinds() -> dict[str, type[BaseEvent]]:
    """Every registered event kind and its class."""
    return dict(_REGISTRY)


def parse_event(data: Mapping[str, Any] | str | bytes) -> BaseEvent:
    """An event of any registered kind from its dict or JSON (``ValueError`` if unknown)."""
    if isinstance(data, str | bytes):
        import json

        data = json.loads(data)
    if not isinstance(data, Mapping):
        raise ValueError("an event is a JSON object")
    cls = _REGISTRY.get(str(data.get("kind")))
    if cls is None:
        raise ValueError(f"unknown event kind {data.get('kind')!r}: register it first")
    return cls.model_validate(data)


class EventSink(Protocol):
    """Anything that receives events: a tracer, the TUI, a test's list."""

    def emit(self, event: BaseEvent) -> None: ...


EventCallback = Callable[[BaseEvent], None]
