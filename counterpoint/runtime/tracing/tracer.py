"""Tracers: event sinks that record runs as spans.

:class:`SQLiteTracer` is the default. ``emit`` is called on the event loop for every event of every
run (one tracer may serve many runs at once); it only puts the event on a bounded queue, and a
background thread derives runs and spans from the events and commits them in batches (see
``_writer.py`` and ``_derive.py``). Nothing is derived from anything but the events.

Other subsystems (workflows, KV reuse, evals) write their own spans and records through the same
writer: :meth:`SQLiteTracer.span` (a span with known times), :meth:`SQLiteTracer.start_span` (a
context manager that times a block), :meth:`SQLiteTracer.record_eval_run` and
:meth:`SQLiteTracer.record_eval_result`.

:class:`NullTracer` accepts the same calls and records nothing.

Example::

    with SQLiteTracer() as tracer:            # ~/.local/share/counterpoint/traces.db
        agent = Agent(..., tracer=tracer)
        await agent.run("...")
    # leaving the block flushes and closes; or call tracer.flush() / await tracer.aflush()
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from counterpoint.core.events import BaseEvent, Done
from counterpoint.runtime.tracing._derive import TokenTally, new_span_id, span_row
from counterpoint.runtime.tracing._writer import (
    BackgroundWriter,
    CommitReport,
    DoneItem,
    RecordItem,
    SpanItem,
)
from counterpoint.runtime.tracing.errors import TracerClosedError, UnknownRunError
from counterpoint.runtime.tracing.models import (
    EvalResultRecord,
    EvalRunRecord,
    SpanKind,
    SpanStatus,
)
from counterpoint.runtime.tracing.store import Synchronous, TraceStore

__all__ = [
    "CommitReport",
    "NullTracer",
    "SQLiteTracer",
    "SpanHandle",
    "Tracer",
    "default_tracer",
]

_RUN_CLOCKS = 10_000


@runtime_checkable
class Tracer(Protocol):
    """What the runtime needs of a tracer: an event sink that can also take direct spans."""

    def emit(self, event: BaseEvent) -> None: ...

    def span(
        self,
        run_id: str,
        kind: SpanKind,
        name: str,
        start_s: float,
        end_s: float | None,
        *,
        attributes: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
        status: SpanStatus = SpanStatus.OK,
    ) -> str: ...

    def start_span(
        self,
        run_id: str,
        kind: SpanKind,
        name: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> contextlib.AbstractContextManager[SpanHandle]: ...

    def record_eval_run(self, record: EvalRunRecord) -> None: ...

    def record_eval_result(self, record: EvalResultRecord) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


class SpanHandle:
    """The span being timed by :meth:`SQLiteTracer.start_span`: set attributes or its status."""

    def __init__(self, span_id: str, attributes: dict[str, Any]) -> None:
        self.id = span_id
        self.attributes = attributes
        self.status: SpanStatus = SpanStatus.OK

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, status: SpanStatus) -> None:
        self.status = status


class SQLiteTracer:
    """Records every event it is given into a traces database, off the event loop.

    ``path``: a file, ``":memory:"``, or None for ``$COUNTERPOINT_TRACES_DB`` or the default
    ``~/.local/share/counterpoint/traces.db``; or pass an opened ``store``. ``on_commit`` is called
    from the writer thread after each committed batch (keep it short; it must not call ``flush``).
    ``max_queue`` bounds the queue (a full queue blocks ``emit`` on threads other than the event
    loop's), ``max_batch`` bounds one transaction, ``linger_s`` is how long the writer waits to
    fill a batch. ``busy_timeout_s`` is how long one write waits for another connection's lock
    (SQLite's busy timeout); a batch that still finds the file locked is kept and retried until
    it commits, except at :meth:`close`, which gives up after ``close_timeout_s`` more seconds
    (see ``_writer.py``). ``busy_timeout_s`` and ``synchronous`` apply only when the tracer
    opens the store itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        store: TraceStore | None = None,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 10.0,
        close_timeout_s: float = 60.0,
        max_queue: int = 10_000,
        max_batch: int = 5_000,
        linger_s: float = 0.05,
        on_commit: Callable[[CommitReport], None] | None = None,
    ) -> None:
        self._owns_store = store is None
        self.store = (
            store
            if store is not None
            else TraceStore(path, synchronous=synchronous, busy_timeout_s=busy_timeout_s)
        )
        self._writer = BackgroundWriter(
            self.store,
            max_queue=max_queue,
            max_batch=max_batch,
            linger_s=linger_s,
            close_timeout_s=close_timeout_s,
            on_commit=on_commit,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        # Monotonic origin of each run seen, for start_span's clock.
        self._clocks: OrderedDict[str, float] = OrderedDict()
        self._clocks_lock = threading.Lock()
        self._tallies: dict[str, TokenTally] = {}
        _open_tracers.add(self)

    @property
    def path(self) -> str:
        """The database file (or ``":memory:"``)."""
        return self.store.path

    @property
    def committed(self) -> int:
        """Events and records committed so far."""
        return self._writer.committed

    @property
    def spans_committed(self) -> int:
        """Complete spans committed so far."""
        return self._writer.spans_committed

    @property
    def overflowed(self) -> int:
        """Events queued past ``max_queue`` because the event loop must not wait (none lost)."""
        return self._writer.overflowed

    @property
    def failed(self) -> int:
        """Events and records that could not be committed."""
        return self._writer.failed

    @property
    def retries(self) -> int:
        """Tries of a batch that found the database locked by another connection (retried)."""
        return self._writer.retries

    @property
    def closed(self) -> bool:
        return self._closed

    # -- recording -----------------------------------------------------------------------------

    def emit(self, event: BaseEvent) -> None:
        """Queue one event. Never blocks an event loop: on the loop's thread a full queue takes
        the event past its bound (see ``overflowed``); another thread waits for room.

        Token events are counted here, not queued: only a run's first one goes to the writer (it
        opens the generation span), the count travels with the run's ``Done``. The events of one
        run must therefore come from one thread at a time, as a session's do.
        """
        if self._closed:
            raise TracerClosedError(f"The tracer of {self.path} is closed; create a new one.")
        kind = event.kind
        if kind == "token":
            tally = self._tallies.get(event.run_id)
            if tally is not None:
                tally.count += 1
                tally.last_t = event.t
                return
            self._tallies[event.run_id] = TokenTally(1, event.t)
        elif kind == "done":
            assert isinstance(event, Done)
            self._writer.put(
                DoneItem(event, self._tallies.pop(event.run_id, None)), block=_may_block()
            )
            return
        elif kind == "run_started":
            with self._clocks_lock:
                self._clocks[event.run_id] = time.monotonic() - event.t
                if len(self._clocks) > _RUN_CLOCKS:
                    self._clocks.popitem(last=False)
            self._tallies.pop(event.run_id, None)
        self._writer.put(event, block=_may_block())

    def span(
        self,
        run_id: str,
        kind: SpanKind,
        name: str,
        start_s: float,
        end_s: float | None,
        *,
        attributes: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
        status: SpanStatus = SpanStatus.OK,
        span_id: str | None = None,
    ) -> str:
        """Write a span directly; returns its id.

        ``start_s``/``end_s`` are seconds since the run started (``end_s=None``: still open; write
        it again with the same ``span_id`` to close it). The run need not be known to this tracer.
        """
        if self._closed:
            raise TracerClosedError(f"The tracer of {self.path} is closed; create a new one.")
        row = span_row(
            run_id=run_id,
            kind=kind if type(kind) is SpanKind else SpanKind(kind),
            name=name,
            start_s=start_s,
            end_s=end_s,
            status=SpanStatus.RUNNING if end_s is None else status,
            parent_id=parent_id,
            attributes=dict(attributes) if attributes else {},
            span_id=span_id,
        )
        self._writer.put(SpanItem(row))
        return str(row["id"])

    def run_clock(self, run_id: str) -> float | None:
        """Seconds since ``run_id`` started, if this tracer saw its ``RunStarted``."""
        with self._clocks_lock:
            origin = self._clocks.get(run_id)
        return None if origin is None else time.monotonic() - origin

    @contextlib.contextmanager
    def start_span(
        self,
        run_id: str,
        kind: SpanKind,
        name: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> Iterator[SpanHandle]:
        """Time a block as a span of ``run_id`` (a run whose ``RunStarted`` this tracer saw).

        The span is written open on entry and complete on exit, with status ``error`` and
        ``error.type`` set if the block raised.
        """
        start = self.run_clock(run_id)
        if start is None:
            raise UnknownRunError(
                f"start_span: this tracer has not seen run {run_id!r} start; emit its RunStarted "
                "first, or write the span with tracer.span(...) and explicit times."
            )
        handle = SpanHandle(new_span_id(), dict(attributes or {}))
        self.span(
            run_id,
            kind,
            name,
            start,
            None,
            attributes=handle.attributes,
            parent_id=parent_id,
            span_id=handle.id,
        )
        try:
            yield handle
        except BaseException as e:
            handle.status = SpanStatus.ERROR
            handle.attributes.setdefault("error.type", type(e).__name__)
            raise
        finally:
            end = self.run_clock(run_id) or start
            self.span(
                run_id,
                kind,
                name,
                start,
                end,
                attributes=handle.attributes,
                parent_id=parent_id,
                status=handle.status,
                span_id=handle.id,
            )

    def record_eval_run(self, record: EvalRunRecord) -> None:
        """Insert or update (same ``id``) an eval run."""
        self._record("eval_runs", record.model_dump())

    def record_eval_result(self, record: EvalResultRecord) -> None:
        """Insert one eval result (its ``id`` is assigned by the database)."""
        row = record.model_dump()
        row["id"] = None
        if not row["created_at"]:
            row["created_at"] = time.time()
        self._record("eval_results", row)

    def _record(self, table: str, row: dict[str, Any]) -> None:
        if self._closed:
            raise TracerClosedError(f"The tracer of {self.path} is closed; create a new one.")
        self._writer.put(RecordItem(table, row))

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything emitted so far is committed.

        Raises :class:`TraceWriteError` if some records could not be written since the last flush.
        """
        if not self._closed:
            self._writer.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> None:
        """:meth:`flush` without blocking the event loop."""
        await asyncio.to_thread(self.flush, timeout)

    def close(self) -> None:
        """Commit everything, end runs still open as ``incomplete``, stop the writer. Idempotent.

        While another connection keeps the file locked, waits up to ``close_timeout_s`` (plus one
        busy timeout) for it, then raises :class:`TraceWriteError` for what could not be written.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _open_tracers.discard(self)
        try:
            self._writer.stop(self._tallies)
        finally:
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> SQLiteTracer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteTracer({self.path!r}, committed={self.committed})"


class NullTracer:
    """A tracer that records nothing."""

    def emit(self, event: BaseEvent) -> None:
        pass

    def span(
        self,
        run_id: str,
        kind: SpanKind,
        name: str,
        start_s: float,
        end_s: float | None,
        *,
        attributes: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
        status: SpanStatus = SpanStatus.OK,
    ) -> str:
        return new_span_id()

    @contextlib.contextmanager
    def start_span(
        self,
        run_id: str,
        kind: SpanKind,
        name: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> Iterator[SpanHandle]:
        yield SpanHandle(new_span_id(), dict(attributes or {}))

    def record_eval_run(self, record: EvalRunRecord) -> None:
        pass

    def record_eval_result(self, record: EvalResultRecord) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def _may_block() -> bool:
    """False on a thread running an event loop (a blocked put would freeze every run)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


_open_tracers: weakref.WeakSet[SQLiteTracer] = weakref.WeakSet()
_default: SQLiteTracer | None = None
_default_lock = threading.Lock()


def default_tracer() -> SQLiteTracer:
    """The process-wide tracer on the default database (``$COUNTERPOINT_TRACES_DB`` or
    ``~/.local/share/counterpoint/traces.db``): created on first use, shared by every agent that
    does not name its own, flushed and closed when the interpreter exits."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = SQLiteTracer()
        return _default


@atexit.register
def _close_open_tracers() -> None:
    """Commit what open tracers hold when the interpreter exits normally."""
    for tracer in list(_open_tracers):
        with contextlib.suppress(Exception):
            tracer.close()
