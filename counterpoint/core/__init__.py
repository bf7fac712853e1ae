"""What every layer shares: calls and their results, tool specs, events and the event bus."""

from counterpoint.core.bus import EventBus, EventStream, RunScope, Subscription
from counterpoint.core.calls import Call, CallResult, Interrupt, ToolSpec, UserInterrupt
from counterpoint.core.events import BaseEvent, Event, EventSink, parse_event, register_event

__all__ = [
    "BaseEvent",
    "Call",
    "CallResult",
    "Event",
    "EventBus",
    "EventSink",
    "EventStream",
    "Interrupt",
    "RunScope",
    "Subscription",
    "ToolSpec",
    "UserInterrupt",
    "parse_event",
    "register_event",
]
