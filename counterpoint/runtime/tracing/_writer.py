"""The background writer: a thread that turns queued events into rows and commits them in batches.

Producers (the event loop, other threads) only put items on a bounded queue. When the queue is
full, ``put`` blocks the producer until the writer catches up: back-pressure, never a silent drop.

The thread takes whatever is queued (up to ``max_batch`` items), waiting up to ``linger_s`` after
the first item so that a trickle of events still makes few transactions, derives rows
(``_derive.SpanDeriver``) and upserts them in ONE ``BEGIN IMMEDIATE`` transaction. A flush request
cuts the wait short; it is answered once everything queued before it has been committed.

A batch that cannot be committed (disk full, a locked file past the busy timeout) is rolled back,
counted in ``failed`` and reported by the next ``flush``/``close`` as a :class:`TraceWriteError`;
the writer keeps going with the next batch.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json
from sqlalchemy import JSON, Connection, Table, select

from counterpoint.runtime.events import Done, Event
from counterpoint.runtime.tracing._derive import Changes, SpanDeriver, TokenTally
from counterpoint.runtime.tracing.errors import TraceWriteError
from counterpoint.runtime.tracing.models import (
    EvalResultRecord,
    EvalRunRecord,
    RunRecord,
    SpanRecord,
)
from counterpoint.runtime.tracing.store import TraceStore

__all__ = ["BackgroundWriter", "CommitReport", "DoneItem", "RecordItem", "SpanItem"]

_log = logging.getLogger("counterpoint.tracing")

_RUNS: Table = RunRecord.__table__  # type: ignore[attr-defined]
_SPANS: Table = SpanRecord.__table__  # type: ignore[attr-defined]
_EVAL_RUNS: Table = EvalRunRecord.__table__  # type: ignore[attr-defined]
_EVAL_RESULTS: Table = EvalResultRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CommitReport:
    """What one committed batch made durable."""

    items: int
    """Events and records in the batch (token events count when their run's total is written)."""
    total: int
    """Events and records committed since the tracer started."""
    span_ids: tuple[str, ...]
    """Spans whose complete row (with its end) is now durable."""
    run_ids: tuple[str, ...]
    """Runs whose final row is now durable."""


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Stop:
    tallies: dict[str, TokenTally]


@dataclass(frozen=True)
class DoneItem:
    """A ``Done`` event with the run's token events counted upstream."""

    event: Done
    tally: TokenTally | None


@dataclass(frozen=True)
class SpanItem:
    """A span row written directly (``tracer.span``/``start_span``)."""

    row: dict[str, Any]


@dataclass(frozen=True)
class RecordItem:
    """An eval run (upserted) or eval result (inserted) row."""

    table: str
    row: dict[str, Any]


Item = Event | DoneItem | SpanItem | RecordItem | _Flush | _Stop


class _RowWriter:
    """Writes row dicts of one table with the driver's ``executemany``.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself at these
    rates, so rows go to the driver as plain sequences, JSON columns serialised here with
    pydantic-core's serializer (standard JSON, which SQLAlchemy's JSON type reads back; values
    JSON lacks become lists, base64 or their repr, never an error).
    """

    def __init__(self, table: Table, *, upsert: bool) -> None:
        names = [c.name for c in table.columns]
        self._get = operator.itemgetter(*names)
        self._json = [i for i, c in enumerate(table.columns) if isinstance(c.type, JSON)]
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        )
        if upsert:
            updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "id")
            sql += f" ON CONFLICT (id) DO UPDATE SET {updates}"
        self.sql = sql

    def write(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        params = []
        for row in rows:
            values = list(self._get(row))
            for i in self._json:
                values[i] = to_json(values[i], fallback=repr, bytes_mode="base64").decode()
            params.append(tuple(values))
        conn.exec_driver_sql(self.sql, params)


_UPSERT_RUNS = _RowWriter(_RUNS, upsert=True)
_UPSERT_SPANS = _RowWriter(_SPANS, upsert=True)
_UPSERT_EVAL_RUNS = _RowWriter(_EVAL_RUNS, upsert=True)
_INSERT_EVAL_RESULTS = _RowWriter(_EVAL_RESULTS, upsert=False)


class _Buffer:
    """A bounded FIFO: ``put`` blocks while full; the consumer takes many items per lock."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Item] = deque()
        self._max = maxsize
        lock = threading.Lock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)
        self._consumer_waiting = False
        self._producers_waiting = 0

    def put(self, item: Item) -> None:
        with self._not_full:
            while len(self._items) >= self._max:
                self._producers_waiting += 1
                try:
                    self._not_full.wait()
                finally:
                    self._producers_waiting -= 1
            self._items.append(item)
            if self._consumer_waiting:
                self._not_empty.notify()

    def wait(self) -> None:
        """Block until there is at least one item."""
        with self._not_empty:
            while not self._items:
                self._consumer_waiting = True
                try:
                    self._not_empty.wait()
                finally:
                    self._consumer_waiting = False

    def take(self, limit: int) -> list[Item]:
        """Up to ``limit`` items, oldest first (possibly none)."""
        with self._not_full:
            items = self._items
            if len(items) <= limit:
                batch = list(items)
                items.clear()
            else:
                batch = [items.popleft() for _ in range(limit)]
            if self._producers_waiting:
                self._not_full.notify_all()
        return batch

    def __len__(self) -> int:
        return len(self._items)


class BackgroundWriter:
    """Owns the writer thread, its queue and its counters."""

    def __init__(
        self,
        store: TraceStore,
        *,
        max_queue: int = 10_000,
        max_batch: int = 5_000,
        linger_s: float = 0.05,
        on_commit: Callable[[CommitReport], None] | None = None,
    ) -> None:
        self._store = store
        self._queue = _Buffer(max_queue)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._on_commit = on_commit
        self._wake = threading.Event()
        self._urgent = 0
        self._urgent_lock = threading.Lock()
        self._deriver = SpanDeriver(self._run_start)
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self.committed = 0
        self.spans_committed = 0
        self.failed = 0
        self._thread = threading.Thread(
            target=self._loop, name="counterpoint-trace-writer", daemon=True
        )
        self._thread.start()

    # -- producer side -------------------------------------------------------------------------

    def put(self, item: Event | DoneItem | SpanItem | RecordItem) -> None:
        """Queue an item; blocks while the queue is full."""
        self._queue.put(item)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued before this call is committed (or failed)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() called from the trace writer thread (e.g. in on_commit)")
        marker = _Flush()
        self._request(marker)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not marker.done.wait(0.25):
            if not self._thread.is_alive():  # stopped meanwhile: what preceded the stop is in
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TraceWriteError(
                    f"The trace writer did not commit within {timeout} s "
                    f"({len(self._queue)} items still queued for {self._store.path})."
                )
        self._raise_error()

    def stop(self, tallies: dict[str, TokenTally] | None = None) -> None:
        """Commit what is queued, end open runs as incomplete, stop the thread."""
        if self._thread.is_alive():
            self._request(_Stop(dict(tallies or {})))
            self._thread.join()
        self._raise_error()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _request(self, marker: _Flush | _Stop) -> None:
        with self._urgent_lock:
            self._urgent += 1
        self._queue.put(marker)
        self._wake.set()

    def _raise_error(self) -> None:
        with self._error_lock:
            error, self._error = self._error, None
        if error is not None:
            raise TraceWriteError(
                f"Some trace records could not be written to {self._store.path} ({error}); "
                f"{self.failed} records lost so far. Check the disk and the file's permissions."
            ) from error

    # -- writer thread -------------------------------------------------------------------------

    def _loop(self) -> None:
        stop = False
        while not stop:
            self._queue.wait()
            self._wake.clear()
            if self._linger_s > 0 and self._urgent == 0 and len(self._queue) < self._max_batch:
                self._wake.wait(self._linger_s)
            stop = self._process(self._queue.take(self._max_batch))

    def _process(self, batch: list[Item]) -> bool:
        flushes: list[_Flush] = []
        stop: _Stop | None = None
        items = 0
        eval_runs: dict[str, dict[str, Any]] = {}
        eval_results: list[dict[str, Any]] = []
        for item in batch:
            if isinstance(item, _Flush):
                flushes.append(item)
                continue
            if isinstance(item, _Stop):
                stop = item
                items += sum(t.count - 1 for t in item.tallies.values())
                continue
            items += 1
            try:
                if isinstance(item, SpanItem):
                    self._deriver.add_span(item.row)
                elif isinstance(item, DoneItem):
                    self._deriver.apply(item.event, item.tally)
                    if item.tally is not None:  # the token events counted upstream
                        items += item.tally.count - 1
                elif isinstance(item, RecordItem):
                    if item.table == "eval_runs":
                        eval_runs[item.row["id"]] = item.row
                    else:
                        eval_results.append(item.row)
                else:
                    self._deriver.apply(item)
            except Exception as e:  # a bug in derivation must not stop the writer
                _log.exception("could not derive trace rows from %r", item)
                self._fail(e, 1)
                items -= 1
        if stop is not None:
            self._deriver.close_all(stop.tallies)
        changes = self._deriver.take()
        try:
            self._write(changes, list(eval_runs.values()), eval_results)
        except Exception as e:
            _log.exception("could not commit a batch of %d trace records", items)
            self._fail(e, items)
        else:
            self._committed(items, changes)
        finally:
            with self._urgent_lock:
                self._urgent -= len(flushes) + int(stop is not None)
            for marker in flushes:
                marker.done.set()
        return stop is not None

    def _write(
        self,
        changes: Changes,
        eval_runs: list[dict[str, Any]],
        eval_results: list[dict[str, Any]],
    ) -> None:
        if not (changes.runs or changes.spans or eval_runs or eval_results):
            return
        with self._store.connect(immediate=True) as conn, conn.begin():
            if changes.runs:
                _UPSERT_RUNS.write(conn, changes.runs)
            if changes.spans:
                _UPSERT_SPANS.write(conn, changes.spans)
            if eval_runs:
                _UPSERT_EVAL_RUNS.write(conn, eval_runs)
            if eval_results:
                _INSERT_EVAL_RESULTS.write(conn, eval_results)

    def _committed(self, items: int, changes: Changes) -> None:
        span_ids = tuple(dict.fromkeys(changes.finished_spans))
        self.committed += items
        self.spans_committed += len(span_ids)
        if self._on_commit is None or not (items or span_ids):
            return
        report = CommitReport(
            items=items,
            total=self.committed,
            span_ids=span_ids,
            run_ids=tuple(changes.finished_runs),
        )
        try:
            self._on_commit(report)
        except Exception:
            _log.exception("the tracer's on_commit callback failed")

    def _fail(self, error: BaseException, items: int) -> None:
        self.failed += items
        with self._error_lock:
            if self._error is None:
                self._error = error

    def _run_start(self, run_id: str) -> float | None:
        try:
            with self._store.connect() as conn:
                value = conn.execute(
                    select(_RUNS.c.started_at).where(_RUNS.c.id == run_id)
                ).scalar_one_or_none()
                conn.rollback()
        except Exception:
            _log.exception("could not look up the start of run %s", run_id)
            return None
        return None if value is None else float(value)
