"""The event bus: one per run tree (an agent run, a workflow run and its agents' runs).

Producers (the session, the executor, a KV-reuse decoder, a workflow scheduler) :meth:`publish`
events; subscribers (the tracer, the eval runner, the terminal UI, a stream consumer) receive them
in order. Subscribers are plain callables run on the publisher's thread (the event loop), so they
must only record or enqueue; one that needs to do slow work hands it to a queue of its own, as the
SQLite tracer does. A subscriber that raises is logged once and detached: the run goes on.

Example::

    bus = EventBus()
    bus.subscribe(tracer)                       # anything with emit(event), or a callable
    async with bus.stream() as events:          # an async iterator over what is published next
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

from counterpoint.core.events import BaseEvent, EventSink

__all__ = ["EventBus", "EventStream", "RunScope", "Subscription"]

_log = logging.getLogger(__name__)

Subscriber = Callable[[BaseEvent], None] | EventSink


@dataclass(eq=False)
class Subscription:
    """One subscriber on a bus; :meth:`close` detaches it."""

    bus: EventBus
    callback: Callable[[BaseEvent], None]
    name: str
    kinds: frozenset[str] | None = None
    active: bool = field(default=True)

    def close(self) -> None:
        """Stop receiving events. Idempotent."""
        self.bus._detach(self)


class EventBus:
    """Delivers every published event to every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.detached: list[tuple[str, str]] = []
        """(subscriber, error) for each subscriber detached because it raised."""

    def subscribe(
        self, subscriber: Subscriber, *, kinds: Iterable[str] | None = None, name: str = ""
    ) -> Subscription:
        """Add ``subscriber`` (a callable, or anything with ``emit(event)``).

        ``kinds`` limits it to those event kinds. Returns the subscription (close it to leave).
        """
        callback = subscriber if callable(subscriber) else getattr(subscriber, "emit", None)
        if not callable(callback):
            raise TypeError("a subscriber is a callable taking an event, or has emit(event)")
        label = name or getattr(subscriber, "__qualname__", None) or type(subscriber).__name__
        sub = Subscription(self, callback, label, frozenset(kinds) if kinds is not None else None)
        self._subs.append(sub)
        return sub

    def publish(self, event: BaseEvent) -> None:
        """Hand ``event`` to every subscriber; a subscriber that raises is detached."""
        for sub in tuple(self._subs):
            if not sub.active or (sub.kinds is not None and event.kind not in sub.kinds):
                continue
            try:
                sub.callback(event)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                _log.warning(
                    "event subscriber %s raised on a %s event and was detached: %s",
                    sub.name,
                    event.kind,
                    error,
                )
                self.detached.append((sub.name, error))
                self._detach(sub)

    emit = publish
    """A bus is itself an event sink: ``parent.subscribe(child)`` forwards events."""

    def stream(self, *, kinds: Iterable[str] | None = None) -> EventStream:
        """A subscription that queues events for ``async for`` (unbounded: never blocks)."""
        return EventStream(self, kinds)

    @property
    def subscribers(self) -> int:
        """Active subscribers."""
        return len(self._subs)

    def _detach(self, sub: Subscription) -> None:
        sub.active = False
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)


class EventStream:
    """Events published on a bus from now on, as an async iterator (see :meth:`EventBus.stream`).

    Iteration waits for the next event; it ends after :meth:`close` once the queue is empty.
    """

    def __init__(self, bus: EventBus, kinds: Iterable[str] | None = None) -> None:
        self._queue: asyncio.Queue[BaseEvent | None] = asyncio.Queue()
        self._sub = bus.subscribe(self._queue.put_nowait, kinds=kinds, name="stream")

    def close(self) -> None:
        """Stop listening; iteration ends after the events already queued."""
        if self._sub.active:
            self._sub.close()
            self._queue.put_nowait(None)

    def get_nowait(self) -> BaseEvent | None:
        """The next queued event, or None when none is queued."""
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._queue.get_nowait()
        return None

    async def get(self) -> BaseEvent | None:
        """The next event (None once closed and drained)."""
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[BaseEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[BaseEvent]:
        while (event := await self._queue.get()) is not None:
            yield event

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class RunScope:
    """The run a piece of work serves: its id, its clock and its bus.

    A session hands one to :meth:`Model.start <counterpoint.runtime.backends.base.Model.start>`
    so that a backend with something to report (KV reuse) publishes events on the run's bus.
    """

    run_id: str
    t0: float
    """``time.perf_counter()`` at the start of the run."""
    bus: EventBus

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0

    def at(self, perf_counter: float) -> float:
        """A ``time.perf_counter()`` reading as seconds since the run started."""
        return perf_counter - self.t0
