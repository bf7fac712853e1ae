"""EventBus: delivery order, kinds, failing subscribers, subscriptions, streams, forwarding."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from counterpoint.core.bus import EventBus, RunScope, Subscription
from counterpoint.core.events import BaseEvent, CallWritten, TokenEvent, UserMessage


def _token(i: int, run_id: str = "r1") -> TokenEvent:
    return TokenEvent(run_id=run_id, t=i / 10, text=f" w{i}", token_id=i, index=i)


def _message(text: str, run_id: str = "r1") -> UserMessage:
    return UserMessage(run_id=run_id, t=1.0, text=text)


class ListSink:
    """A sink object with ``emit`` (not callable itself)."""

    def __init__(self) -> None:
        self.events: list[BaseEvent] = []

    def emit(self, event: BaseEvent) -> None:
        self.events.append(event)


def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    calls: list[tuple[str, int]] = []
    bus.subscribe(lambda e: calls.append(("first", e.token_id)))  # type: ignore[attr-defined]
    sink = ListSink()
    bus.subscribe(sink)
    bus.subscribe(lambda e: calls.append(("third", e.token_id)))  # type: ignore[attr-defined]
    events = [_token(i) for i in range(3)]
    for e in events:
        bus.publish(e)
    # per event, subscribers in subscription order; events in publication order
    assert calls == [
        ("first", 0),
        ("third", 0),
        ("first", 1),
        ("third", 1),
        ("first", 2),
        ("third", 2),
    ]
    assert sink.events == events
    assert sink.events[0] is events[0]  # the same object, not a copy
    assert bus.subscribers == 3
    assert bus.detached == []


def test_kinds_filter_limits_a_subscriber_to_those_kinds() -> None:
    bus = EventBus()
    messages: list[BaseEvent] = []
    everything: list[BaseEvent] = []
    bus.subscribe(messages.append, kinds=["user_interrupt"])
    bus.subscribe(everything.append)
    tok, msg = _token(0), _message("hi")
    bus.publish(tok)
    bus.publish(msg)
    bus.publish(_token(1))
    assert messages == [msg]
    assert len(everything) == 3 and everything[1] is msg
    none: list[BaseEvent] = []
    bus.subscribe(none.append, kinds=[])  # an empty filter receives nothing
    bus.publish(msg)
    assert none == []


def test_a_raising_subscriber_is_detached_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    before: list[BaseEvent] = []
    after: list[BaseEvent] = []
    bad_calls: list[BaseEvent] = []

    def bad(event: BaseEvent) -> None:
        bad_calls.append(event)
        raise RuntimeError("boom")

    bus.subscribe(before.append)
    sub = bus.subscribe(bad, name="bad one")
    bus.subscribe(after.append)
    first, second = _token(0), _token(1)
    with caplog.at_level(logging.WARNING, logger="counterpoint.core.bus"):
        bus.publish(first)
    # the subscribers after the failing one still got the event
    assert before == [first] and after == [first]
    assert bus.detached == [("bad one", "RuntimeError: boom")]
    assert not sub.active and bus.subscribers == 2
    assert any("bad one" in r.getMessage() and "token" in r.getMessage() for r in caplog.records)
    bus.publish(second)
    assert bad_calls == [first]  # detached: never called again
    assert before == [first, second] and after == [first, second]
    assert bus.detached == [("bad one", "RuntimeError: boom")]  # logged once


def test_a_subscribers_default_name_is_its_qualname_or_type() -> None:
    bus = EventBus()

    def explode(event: BaseEvent) -> None:
        raise ValueError("x")

    class Exploding:
        def emit(self, event: BaseEvent) -> None:
            raise KeyError("y")

    bus.subscribe(explode)
    bus.subscribe(Exploding())
    bus.publish(_token(0))
    names = [name for name, _ in bus.detached]
    assert names[0].endswith("explode")
    assert names[1] == "Exploding"
    assert bus.detached[1][1] == "KeyError: 'y'"


def test_subscribing_something_that_is_not_a_sink_is_a_type_error() -> None:
    bus = EventBus()

    class NotCallable:
        emit = 3

    with pytest.raises(TypeError):
        bus.subscribe(NotCallable())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.subscribe(object())  # type: ignore[arg-type]
    assert bus.subscribers == 0


def test_subscription_close_stops_delivery_and_is_idempotent() -> None:
    bus = EventBus()
    got: list[BaseEvent] = []
    other: list[BaseEvent] = []
    sub = bus.subscribe(got.append)
    bus.subscribe(other.append)
    first = _token(0)
    bus.publish(first)
    sub.close()
    sub.close()
    assert not sub.active and bus.subscribers == 1
    bus.publish(_token(1))
    assert got == [first]
    assert len(other) == 2
    assert bus.detached == []  # closing is not a failure


def test_a_subscriber_closing_another_during_publish() -> None:
    bus = EventBus()
    late: list[BaseEvent] = []
    subs: list[Subscription] = []

    def closer(event: BaseEvent) -> None:
        subs[1].close()

    subs.append(bus.subscribe(closer))
    subs.append(bus.subscribe(late.append))
    bus.publish(_token(0))
    assert late == []  # closed before its turn: not delivered
    assert bus.subscribers == 1


async def test_stream_iterates_what_is_published_then_ends_after_close() -> None:
    bus = EventBus()
    early = _token(0)
    bus.publish(early)  # before the stream existed: not in it
    stream = bus.stream()
    events = [_token(i) for i in range(1, 4)]
    for e in events:
        bus.publish(e)
    stream.close()
    bus.publish(_token(9))  # after close: not in it
    got = [e async for e in stream]
    assert got == events
    assert bus.subscribers == 0
    stream.close()  # idempotent
    assert stream.get_nowait() is None


async def test_stream_waits_for_events_published_later() -> None:
    bus = EventBus()
    got: list[BaseEvent] = []

    async def consume() -> None:
        async with bus.stream(kinds={"user_interrupt"}) as stream:
            async for event in stream:
                got.append(event)
                if len(got) == 2:
                    break

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # the consumer subscribes and waits
    assert bus.subscribers == 1
    first, second = _message("a"), _message("b")
    bus.publish(first)
    bus.publish(_token(0))  # filtered out
    await asyncio.sleep(0)
    bus.publish(second)
    bus.publish(_message("c"))
    await asyncio.wait_for(task, timeout=5)
    assert got == [first, second]
    assert bus.subscribers == 0  # leaving the async with closed it


async def test_stream_get_and_get_nowait() -> None:
    bus = EventBus()
    stream = bus.stream()
    assert stream.get_nowait() is None
    event = _message("x")
    bus.publish(event)
    assert stream.get_nowait() is event
    bus.publish(event)
    assert await stream.get() is event
    stream.close()
    assert await stream.get() is None


def test_a_bus_is_a_sink_of_another_bus() -> None:
    parent = EventBus()
    child = EventBus()
    parent_seen: list[BaseEvent] = []
    child_seen: list[BaseEvent] = []
    parent.subscribe(parent_seen.append)
    parent.subscribe(child, kinds=["call_written"])
    child.subscribe(child_seen.append)
    written = CallWritten(run_id="r1", t=0.5, call_id="c1", name="f", arguments={"x": 1})
    parent.publish(_token(0))
    parent.publish(written)
    assert child_seen == [written]
    assert len(parent_seen) == 2
    child.publish(_message("only the child"))  # forwarding goes one way
    assert len(parent_seen) == 2 and len(child_seen) == 2


def test_a_failing_subscriber_of_a_child_bus_does_not_detach_the_child() -> None:
    parent = EventBus()
    child = EventBus()
    child_seen: list[BaseEvent] = []
    parent.subscribe(child)

    def bad(event: BaseEvent) -> None:
        raise RuntimeError("child subscriber")

    child.subscribe(bad, name="bad")
    child.subscribe(child_seen.append)
    parent.publish(_token(0))
    parent.publish(_token(1))
    assert len(child_seen) == 2
    assert parent.detached == [] and child.detached == [("bad", "RuntimeError: child subscriber")]


def test_run_scope_clock() -> None:
    bus = EventBus()
    t0 = time.perf_counter()
    scope = RunScope("r1", t0, bus)
    assert scope.at(t0 + 2.5) == pytest.approx(2.5)
    assert scope.at(t0) == 0.0
    assert scope.now() >= 0.0
    assert scope.bus is bus and scope.run_id == "r1"
