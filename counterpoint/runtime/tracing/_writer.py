"""The background writer: a thread that turns queued events into rows and commits them in batches.

Producers (the event loop, other threads) only put items on a bounded queue. When the queue is
full, ``put`` blocks a producer thread until the writer catches up: back-pressure, never a silent
drop. The event loop is never blocked: its puts (``block=False``) go past the bound instead, and
the overshoot is counted in ``overflowed`` (memory grows for a while; nothing is lost).

The thread takes whatever is queued (up to ``max_batch`` items), waiting up to ``linger_s`` after
the first item so that a trickle of events still makes few transactions, derives rows
(``_derive.SpanDeriver``) and upserts them in ONE ``BEGIN IMMEDIATE`` transaction. A flush request
cuts the wait short; it is answered once everything queued before it has been committed.

Every value is made writable: lone surrogates (what ``os.listdir`` and ``surrogateescape``
decoding give for bytes that are not UTF-8) cannot be encoded, so they become U+FFFD in text
columns, JSON values and JSON keys alike (:func:`safe_text`); a surrogate pair becomes the
character it encodes. (JSON values are serialised again only when the fast serialiser fails on
one; text columns are scrubbed only when the driver fails to encode one: the batch is then
written again, scrubbed. The usual batch pays nothing.)

Each run row is stamped with its owner process
(:func:`~counterpoint.runtime.tracing.store.process_owner`), so that a run left ``running`` by a
killed process can be told from a live one.

A batch that fails because another connection holds the lock past the busy timeout (a transient
``database is locked``/``busy`` error) keeps its rows and is retried, with a growing pause
(:func:`~counterpoint.runtime.tracing.store.is_transient_lock_error`); later items queue behind
it (the event loop still never waits), and ``flush`` waits for it. Only ``close`` gives up on it:
after ``close_timeout_s`` (plus the busy timeout of the try under way) the batch, and whatever is
still queued behind it, is counted in ``failed`` and reported as a :class:`TraceWriteError` that
names the limit.

A batch that fails otherwise is written again row by row in one transaction, each row in its own
savepoint: a row that cannot be written (a value SQLite refuses, such as an integer past 64 bits)
is left out and counted in ``failed``, the others commit. If that fails too (disk full, a file that
is read-only or damaged), the batch is rolled back and counted in ``failed``. Either way the error
is reported by the next ``flush``/``close`` as a :class:`TraceWriteError`, and the writer keeps
going with the next batch. Spans and runs left out are never reported committed.
"""

from __future__ import annotations

import logging
import operator
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python
from sqlalchemy import JSON, Connection, Table, select

from counterpoint.core.events import BaseEvent, Done
from counterpoint.runtime.tracing._derive import Changes, SpanDeriver, TokenTally
from counterpoint.runtime.tracing.errors import TraceWriteError
from counterpoint.runtime.tracing.models import (
    EvalResultRecord,
    EvalRunRecord,
    RunRecord,
    SpanRecord,
)
from counterpoint.runtime.tracing.store import (
    OWNER_PID,
    TraceStore,
    _backoff,
    is_transient_lock_error,
    process_owner,
)

__all__ = ["BackgroundWriter", "CommitReport", "DoneItem", "RecordItem", "SpanItem", "safe_text"]

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


Item = BaseEvent | DoneItem | SpanItem | RecordItem | _Flush | _Stop

_SURROGATE = re.compile("[\ud800-\udfff]")

_RETRY_LOG_S = 30.0
"""While a batch waits for the lock, a warning is logged at most this often."""


def safe_text(text: str) -> str:
    """``text`` as it can be stored: each lone surrogate replaced by U+FFFD (a surrogate pair
    becomes the character it encodes); ``text`` itself when it has none (the usual case)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _scrub(value: Any) -> Any:
    """``value`` with :func:`safe_text` applied to every string in it, keys included."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, BaseModel):
        return _scrub(value.model_dump())
    try:  # anything else (models, dataclasses...): its JSON form, which fails on surrogates
        return to_jsonable_python(value, fallback=repr, bytes_mode="base64")
    except (PydanticSerializationError, UnicodeError):
        return safe_text(repr(value))


def _json_text(value: Any) -> str:
    try:
        return to_json(value, fallback=repr, bytes_mode="base64").decode()
    except (PydanticSerializationError, UnicodeError):  # lone surrogates somewhere in it
        return to_json(_scrub(value), fallback=repr, bytes_mode="base64").decode()


def _encoding_failed(error: BaseException) -> bool:
    """Whether ``error`` (or an error it wraps) is the driver failing to encode some text."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UnicodeError) or isinstance(
            getattr(current, "orig", None), UnicodeError
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_row_error(error: BaseException) -> bool:
    """Whether ``error`` concerns one row's values (so the other rows may still be written)
    rather than the database (locked, full, read-only, damaged)."""
    orig = getattr(error, "orig", None)
    e = orig if isinstance(orig, BaseException) else error
    if isinstance(e, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.ProgrammingError):
        return True
    if isinstance(e, sqlite3.Error):
        return False
    return isinstance(e, ValueError | TypeError | OverflowError)


class _RowWriter:
    """Writes row dicts of one table with the driver's ``executemany``.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself at these
    rates, so rows go to the driver as plain sequences, JSON columns serialised here with
    pydantic-core's serializer (standard JSON, which SQLAlchemy's JSON type reads back; values
    JSON lacks become lists, base64 or their repr, never an error). With ``clean``, text goes
    through :func:`safe_text` (the driver could not encode some).
    """

    def __init__(self, table: Table, *, upsert: bool) -> None:
        names = [c.name for c in table.columns]
        self.table = table.name
        self._get = operator.itemgetter(*names)
        self._json = [i for i, c in enumerate(table.columns) if isinstance(c.type, JSON)]
        self._text = [i for i, c in enumerate(table.columns) if not isinstance(c.type, JSON)]
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        )
        if upsert:
            updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "id")
            sql += f" ON CONFLICT (id) DO UPDATE SET {updates}"
        self.sql = sql

    def write(self, conn: Connection, rows: list[dict[str, Any]], *, clean: bool = False) -> None:
        params = []
        for row in rows:
            values = list(self._get(row))
            for i in self._json:
                values[i] = _json_text(values[i])
            if clean:
                for i in self._text:
                    value = values[i]
                    if isinstance(value, str):
                        values[i] = safe_text(value)
            params.append(tuple(values))
        conn.exec_driver_sql(self.sql, params)

    def write_each(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], BaseException]]:
        """Write ``rows`` one by one (scrubbed), each in a savepoint; returns the rows left out
        (with their error) because of their values. An error of the database itself is raised."""
        left_out: list[tuple[dict[str, Any], BaseException]] = []
        for row in rows:
            conn.exec_driver_sql("SAVEPOINT counterpoint_row")
            try:
                self.write(conn, [row], clean=True)
            except Exception as e:
                if not _is_row_error(e):
                    raise
                conn.exec_driver_sql("ROLLBACK TO counterpoint_row")
                left_out.append((row, e))
            conn.exec_driver_sql("RELEASE counterpoint_row")
        return left_out


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

    def put(self, item: Item, *, block: bool = True) -> bool:
        """Append ``item``; blocks while full unless ``block`` is False. Returns whether the
        item went past the bound."""
        over = False
        with self._not_full:
            if not block:
                over = len(self._items) >= self._max
            while block and len(self._items) >= self._max:
                self._producers_waiting += 1
                try:
                    self._not_full.wait()
                finally:
                    self._producers_waiting -= 1
            self._items.append(item)
            if self._consumer_waiting:
                self._not_empty.notify()
        return over

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
        close_timeout_s: float = 60.0,
        on_commit: Callable[[CommitReport], None] | None = None,
    ) -> None:
        self._store = store
        self._queue = _Buffer(max_queue)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._close_timeout_s = close_timeout_s
        self._on_commit = on_commit
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._abandoned: TraceWriteError | None = None
        self._lock_logged_at = 0.0
        self._wake = threading.Event()
        self._urgent = 0
        self._urgent_lock = threading.Lock()
        self._deriver = SpanDeriver(self._run_start)
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self.committed = 0
        self.spans_committed = 0
        self.failed = 0
        self.overflowed = 0
        """Items queued past the bound by producers that must not block (the event loop)."""
        self.retries = 0
        """Tries of a batch that found the database locked (each one retried, or given up at
        close)."""
        self._thread = threading.Thread(
            target=self._loop, name="counterpoint-trace-writer", daemon=True
        )
        self._thread.start()

    # -- producer side -------------------------------------------------------------------------

    def put(
        self, item: BaseEvent | DoneItem | SpanItem | RecordItem, *, block: bool = True
    ) -> None:
        """Queue an item; blocks while the queue is full, unless ``block`` is False (then the
        item is queued past the bound and counted in :attr:`overflowed`)."""
        if self._queue.put(item, block=block):
            self.overflowed += 1

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
        """Commit what is queued, end open runs as incomplete, stop the thread.

        A batch waiting for a locked database is retried for up to ``close_timeout_s`` more (plus
        the busy timeout of the try under way); then it and what is queued behind it are lost
        (counted in :attr:`failed`, raised as a :class:`TraceWriteError`).
        """
        if self._thread.is_alive():
            self._stop_deadline = time.monotonic() + self._close_timeout_s
            self._stopping.set()
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
        if error is None:
            return
        if isinstance(error, TraceWriteError):  # gave up at close: its message says why
            raise TraceWriteError(f"{error} {self.failed} records lost so far.") from error
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
                    self._apply(item)
            except Exception as e:  # a bug in derivation must not stop the writer
                _log.exception("could not derive trace rows from %r", item)
                self._fail(e, 1)
                items -= 1
        if stop is not None:
            self._deriver.close_all(stop.tallies)
        changes = self._deriver.take()
        try:
            self._commit(items, changes, list(eval_runs.values()), eval_results)
        finally:
            with self._urgent_lock:
                self._urgent -= len(flushes) + int(stop is not None)
            for marker in flushes:
                marker.done.set()
        return stop is not None

    def _apply(self, event: BaseEvent) -> None:
        try:
            self._deriver.apply(event)
        except UnicodeError:  # lone surrogates in a value the deriver serialises (arguments...)
            # the deriver fails before it changes anything; derive a scrubbed copy instead
            self._deriver.apply(type(event).model_validate(_scrub(event.model_dump())))

    def _commit(
        self,
        items: int,
        changes: Changes,
        eval_runs: list[dict[str, Any]],
        eval_results: list[dict[str, Any]],
    ) -> None:
        """Write one batch: retried while the database is locked, row by row if it fails
        otherwise (see the module's docstring)."""
        owner = process_owner()
        for row in changes.runs:
            attributes = row["attributes"]
            if isinstance(attributes, dict) and OWNER_PID not in attributes:
                attributes.update(owner)
        each = clean = False
        row_error: BaseException | None = None
        attempt = 0
        while True:
            if self._abandoned is not None:  # close gave up on the lock: no more tries
                if items or changes.runs or changes.spans or eval_runs or eval_results:
                    self._fail(self._abandoned, items)
                return
            try:
                left_out = self._write(changes, eval_runs, eval_results, clean=clean, each=each)
            except Exception as e:
                if is_transient_lock_error(e):
                    attempt += 1
                    self._locked(e, items, attempt)
                    continue
                if not clean and _encoding_failed(e):  # lone surrogates: scrub, write it again
                    clean = True
                    continue
                if not each:
                    _log.warning(
                        "could not commit a batch of %d trace records (%s); writing it row by row",
                        items,
                        e,
                    )
                    each, row_error = True, e
                    continue
                _log.exception("could not commit a batch of %d trace records", items)
                self._fail(e, items)
                return
            if left_out:
                changes = self._leave_out(changes, left_out)
                lost = len(left_out)
                items = max(0, items - lost)
                self._fail(row_error or left_out[0][2], lost)
            self._committed(items, changes)
            return

    def _locked(self, error: BaseException, items: int, attempt: int) -> None:
        """A try found the database locked: wait before the next, or give up at close (then
        :attr:`_abandoned` is set)."""
        self.retries += 1
        now = time.monotonic()
        if self._stopping.is_set() and now >= self._stop_deadline:
            self._abandoned = TraceWriteError(
                f"The traces database {self._store.path} stayed locked by another connection "
                f"past close_timeout_s={self._close_timeout_s:g} s (error: {error}); "
                f"gave up on the last {items}+ trace records. Raise close_timeout_s "
                "(SQLiteTracer(close_timeout_s=...)) or find what holds the lock."
            )
            self._abandoned.__cause__ = error
            _log.error("%s", self._abandoned)
            return
        if attempt == 1 or now - self._lock_logged_at >= _RETRY_LOG_S:
            self._lock_logged_at = now
            _log.warning(
                "the traces database %s is locked (%s); retrying a batch of %d records "
                "(try %d; the next ones wait)",
                self._store.path,
                error,
                items,
                attempt,
            )
        delay = _backoff(attempt)
        if self._stopping.is_set():
            time.sleep(max(0.0, min(delay, self._stop_deadline - now)))
        else:
            self._stopping.wait(delay)  # close() cuts the pause short

    @staticmethod
    def _leave_out(
        changes: Changes, left_out: list[tuple[str, dict[str, Any], BaseException]]
    ) -> Changes:
        """``changes`` without the spans and runs that could not be written (never reported)."""
        runs = {str(row.get("id")) for table, row, _e in left_out if table == "runs"}
        spans = {str(row.get("id")) for table, row, _e in left_out if table == "spans"}
        for table, row, e in left_out:
            _log.error("left out a %s row that cannot be written (%s): %.300r", table, e, row)
        return Changes(
            runs=changes.runs,
            spans=changes.spans,
            finished_spans=[i for i in changes.finished_spans if i not in spans],
            finished_runs=[i for i in changes.finished_runs if i not in runs],
        )

    def _write(
        self,
        changes: Changes,
        eval_runs: list[dict[str, Any]],
        eval_results: list[dict[str, Any]],
        *,
        clean: bool = False,
        each: bool = False,
    ) -> list[tuple[str, dict[str, Any], BaseException]]:
        """Upsert the batch in one transaction (its text scrubbed with ``clean``); with ``each``,
        row by row and scrubbed, returning the rows left out because of their values."""
        if not (changes.runs or changes.spans or eval_runs or eval_results):
            return []
        left_out: list[tuple[str, dict[str, Any], BaseException]] = []
        with self._store.connect(immediate=True) as conn, conn.begin():
            for writer, rows in (
                (_UPSERT_RUNS, changes.runs),
                (_UPSERT_SPANS, changes.spans),
                (_UPSERT_EVAL_RUNS, eval_runs),
                (_INSERT_EVAL_RESULTS, eval_results),
            ):
                if not rows:
                    continue
                if each:
                    left_out += [(writer.table, r, e) for r, e in writer.write_each(conn, rows)]
                else:
                    writer.write(conn, rows, clean=clean)
        return left_out

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
                    select(_RUNS.c.started_at).where(_RUNS.c.id == safe_text(run_id))
                ).scalar_one_or_none()
                conn.rollback()
        except Exception:
            _log.exception("could not look up the start of run %s", run_id)
            return None
        return None if value is None else float(value)
