"""The traces database: where it lives, how it is opened, checked, migrated and connected to.

Path: the ``path`` argument, else the ``COUNTERPOINT_TRACES_DB`` environment variable, else
``$XDG_DATA_HOME/counterpoint/traces.db`` (``~/.local/share/counterpoint/traces.db``).
``":memory:"`` gives a private in-memory database on a single shared connection (for tests),
whose users take :attr:`TraceStore.lock` in turn.

Connection settings (every connection):

- ``journal_mode=WAL``: readers (the CLI, the TUI, queries) never block the writer, nor it them.
- ``synchronous=FULL`` by default: in WAL mode ``NORMAL`` already survives a killed process, but a
  power loss or OS crash may undo the last commits; ``FULL`` syncs the WAL at every commit so a span
  reported committed survives those too. The tracer commits a batch at a time (one sync for hundreds
  of spans), so the cost is small; pass ``synchronous="NORMAL"`` to trade it away.
- ``busy_timeout``: 10 s by default (``busy_timeout_s``), so several processes can share one file.
  A statement still locked out after that fails with a *transient* error
  (:func:`is_transient_lock_error`): the tracer's writer then retries its batch (see
  ``_writer.py``), and opening retries for up to ``open_timeout_s``.
- Transactions are begun explicitly (pysqlite's own implicit ``BEGIN`` is switched off, as
  SQLAlchemy recommends); writers ask for ``BEGIN IMMEDIATE`` with the execution option
  ``counterpoint_begin="IMMEDIATE"``, readers get a plain deferred ``BEGIN``.

Interrupted runs: the writer stamps every run row with its owner (:func:`process_owner`: the
attributes ``counterpoint.pid``, ``counterpoint.host`` and, on Linux, ``counterpoint.pid_ns``).
Opening a file (``recover=True``, the default) marks the runs still ``running`` whose owner was a
process of this host (same host name and PID namespace) that no longer exists as ``interrupted``,
and their spans still ``running`` as ``unfinished``, in one transaction
(:meth:`TraceStore.recover_interrupted`). Runs of live processes, of other hosts, and runs without
an owner are never touched; a PID reused by a new process keeps its old runs ``running`` (wrongly,
but safely) until that process exits too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from counterpoint.errors import ConfigError
from counterpoint.runtime.tracing._migrations import check_file, current_version, migrate
from counterpoint.runtime.tracing.errors import TraceStoreError
from counterpoint.runtime.tracing.models import RunStatus, SpanStatus

__all__ = [
    "ENV_VAR",
    "MEMORY",
    "Synchronous",
    "TraceStore",
    "default_db_path",
    "is_transient_lock_error",
    "process_owner",
    "resolve_db_path",
]

_log = logging.getLogger("counterpoint.tracing")

ENV_VAR = "COUNTERPOINT_TRACES_DB"
MEMORY = ":memory:"

Synchronous = Literal["NORMAL", "FULL"]


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/counterpoint/traces.db``, else ``~/.local/share/counterpoint/traces.db``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "counterpoint" / "traces.db"


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> str:
    """The database: ``path``, else ``$COUNTERPOINT_TRACES_DB``, else :func:`default_db_path`.

    Returns ``":memory:"`` unchanged, otherwise an absolute path with ``~`` expanded.
    """
    chosen = os.fspath(path) if path is not None else os.environ.get(ENV_VAR) or None
    if chosen == MEMORY:
        return MEMORY
    if chosen is None:
        return str(default_db_path())
    if not chosen.strip():
        raise ConfigError(f"The traces database path is empty; set {ENV_VAR} or --db to a file.")
    return str(Path(chosen).expanduser().absolute())


def is_transient_lock_error(error: BaseException) -> bool:
    """Whether ``error`` (an sqlite3 error, or SQLAlchemy's wrapper of one, anywhere in its chain
    of causes) says the database was locked or busy (``SQLITE_BUSY``/``SQLITE_LOCKED``): another
    connection held the lock past the busy timeout. Retrying later may succeed."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        candidates = (current, orig) if isinstance(orig, BaseException) else (current,)
        for e in candidates:
            if isinstance(e, sqlite3.OperationalError):
                code = getattr(e, "sqlite_errorcode", None)
                if isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, 6):
                    return True  # 6: SQLITE_LOCKED
                message = str(e).lower()
                if "database is locked" in message or "database is busy" in message:
                    return True
                if "database table is locked" in message:
                    return True
        current = current.__cause__ or current.__context__
    return False


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


_HOST = socket.gethostname()
_PID_NS = _pid_namespace()

OWNER_PID = "counterpoint.pid"
OWNER_HOST = "counterpoint.host"
OWNER_PID_NS = "counterpoint.pid_ns"


def process_owner() -> dict[str, Any]:
    """The run attributes naming this process (read at call time: a forked child is another)."""
    owner: dict[str, Any] = {OWNER_PID: os.getpid(), OWNER_HOST: _HOST}
    if _PID_NS is not None:
        owner[OWNER_PID_NS] = _PID_NS
    return owner


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` of this host still exists (a zombie has exited: it counts as
    gone). Anything uncertain counts as alive, so that a live run is never marked."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    fields = stat.rpartition(b")")[2].split()
    return not fields or fields[0] not in (b"Z", b"X")


def _backoff(attempt: int, first_s: float = 0.02, max_s: float = 1.0) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling, capped, with jitter."""
    return min(max_s, first_s * 2.0 ** min(attempt - 1, 20)) * random.uniform(0.5, 1.0)


class TraceStore:
    """An opened, checked and up-to-date traces database.

    Opening never modifies a file it refuses: a damaged file, another application's SQLite
    database, or a file from a newer counterpoint raises :class:`TraceStoreError`.

    ``busy_timeout_s``: how long one statement waits for another connection's lock.
    ``open_timeout_s``: how long opening keeps retrying while other processes hold the lock (each
    try waiting up to ``busy_timeout_s``). ``recover``: mark the runs of dead processes of this
    host ``interrupted`` (see the module's docstring); :attr:`recovered` lists them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 10.0,
        open_timeout_s: float = 60.0,
        recover: bool = True,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}.")
        if not busy_timeout_s >= 0:
            raise ConfigError(f"busy_timeout_s must be 0 or more, not {busy_timeout_s!r}.")
        if not open_timeout_s >= 0:
            raise ConfigError(f"open_timeout_s must be 0 or more, not {open_timeout_s!r}.")
        self.busy_timeout_s: float = busy_timeout_s
        self.path: str = resolve_db_path(path)
        self.synchronous: Synchronous = synchronous
        self._busy_ms = int(busy_timeout_s * 1000)
        self._memory = self.path == MEMORY
        # One shared connection for ":memory:": its users must take turns.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._memory else contextlib.nullcontext()
        )
        version = 0
        if self._memory:
            self.engine: Engine = create_engine(
                "sqlite://",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            file = Path(self.path)
            version = check_file(file)
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TraceStoreError(
                    f"Cannot create the folder {file.parent} for the traces database ({e}). "
                    f"Pass another path with --db or {ENV_VAR}."
                ) from e
            self.engine = create_engine(
                f"sqlite:///{self.path}",
                connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
            )
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "begin", self._on_begin)
        self.schema_version: int = version
        self.recovered: list[str] = []
        """Runs marked ``interrupted`` when this store was opened."""
        deadline = time.monotonic() + open_timeout_s
        attempt = 0
        while True:
            try:
                self._prepare(version)
                break
            except (sqlite3.DatabaseError, DBAPIError) as e:
                attempt += 1
                if is_transient_lock_error(e) and time.monotonic() < deadline:
                    time.sleep(_backoff(attempt))  # another process holds the lock: try again
                    continue
                self.engine.dispose()
                detail = getattr(e, "orig", None) or e
                waited = (
                    f"; still locked after open_timeout_s={open_timeout_s:g} s"
                    if is_transient_lock_error(e)
                    else ""
                )
                raise TraceStoreError(
                    f"Cannot prepare the traces database {self.path} ({detail}{waited}). "
                    f"Pass another path with --db or {ENV_VAR}."
                ) from e
            except BaseException:
                self.engine.dispose()
                raise
        if recover and not self._memory:
            self.recovered = self.recover_interrupted()

    def _prepare(self, version: int) -> None:
        if version < current_version():  # only then take the write lock
            with self.connect(immediate=True) as conn:
                self.schema_version = migrate(conn)
        else:
            with self.connect() as conn:  # open it now: WAL mode, and errors surface here
                conn.exec_driver_sql("SELECT 1").close()

    def _on_connect(self, dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            if not self._memory:
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute(f"PRAGMA synchronous = {self.synchronous}")
        finally:
            cur.close()

    @staticmethod
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("counterpoint_begin", "")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    @property
    def is_memory(self) -> bool:
        """Whether this is a private in-memory database."""
        return self._memory

    @property
    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """Held around every use of the connection of an in-memory store (a no-op for files)."""
        return self._lock

    @contextlib.contextmanager
    def connect(self, *, immediate: bool = False) -> Iterator[Connection]:
        """A core connection; ``immediate=True`` makes its transactions ``BEGIN IMMEDIATE``."""
        with self._lock, self.engine.connect() as conn:
            if immediate:
                conn = conn.execution_options(counterpoint_begin="IMMEDIATE")
            yield conn

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session for reading (objects stay readable after it closes)."""
        with self._lock, Session(self.engine, expire_on_commit=False) as session:
            yield session

    def recover_interrupted(self) -> list[str]:
        """Mark ``interrupted`` the ``running`` runs whose owner process, on this host, is gone.

        Their spans still ``running`` become ``unfinished``; runs and spans end at the run's last
        recorded moment. One transaction; the ids of the runs marked are returned. Best effort:
        a file another process keeps locked, or a read-only one, is left as it is (a later open
        tries again). Never touches a run of a live process, of another host (or PID namespace),
        or without an owner.
        """
        if self._memory or sys.platform == "win32":  # no os.kill(pid, 0) probe on Windows
            return []
        try:
            with self.connect() as conn:
                found = self._dead_runs(conn)
                conn.rollback()
            if not found:
                return []
            with self.connect(immediate=True) as conn, conn.begin():
                found = self._dead_runs(conn)  # again, under the write lock
                if found:
                    self._mark_interrupted(conn, found)
        except (sqlite3.Error, SQLAlchemyError) as e:
            _log.warning("could not mark the runs of dead processes in %s: %s", self.path, e)
            return []
        if found:
            _log.info("marked %d runs of dead processes interrupted in %s", len(found), self.path)
        return [run_id for run_id, _pid in found]

    @staticmethod
    def _dead_runs(conn: Connection) -> list[tuple[str, int]]:
        rows = conn.exec_driver_sql(
            "SELECT id, json_extract(attributes, ?), json_extract(attributes, ?) FROM runs"
            " WHERE status = ? AND json_extract(attributes, ?) = ?",
            (
                f'$."{OWNER_PID}"',
                f'$."{OWNER_PID_NS}"',
                RunStatus.RUNNING.value,
                f'$."{OWNER_HOST}"',
                _HOST,
            ),
        ).all()
        alive: dict[int, bool] = {}
        found: list[tuple[str, int]] = []
        for run_id, pid, pid_ns in rows:
            if type(pid) is not int or pid_ns != _PID_NS:
                continue  # no usable owner, or another PID namespace: not ours to judge
            if pid not in alive:
                alive[pid] = pid == os.getpid() or _process_exists(pid)
            if not alive[pid]:
                found.append((str(run_id), pid))
        return found

    @staticmethod
    def _mark_interrupted(conn: Connection, runs: Sequence[tuple[str, int]]) -> None:
        ids = [run_id for run_id, _pid in runs]
        last: dict[str, float] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ", ".join("?" * len(part))
            for run_id, t in conn.exec_driver_sql(
                "SELECT run_id, max(coalesce(end_s, start_s)) FROM spans"
                f" WHERE run_id IN ({marks}) GROUP BY run_id",
                tuple(part),
            ).all():
                if t is not None:
                    last[str(run_id)] = float(t)
        conn.exec_driver_sql(
            "UPDATE spans SET status = ?, end_s = max(start_s, ?),"
            " duration_s = max(start_s, ?) - start_s,"
            " end_time = CASE WHEN start_time IS NULL THEN end_time"
            " ELSE start_time + max(start_s, ?) - start_s END"
            " WHERE run_id = ? AND status = ?",
            [
                (SpanStatus.UNFINISHED.value, t, t, t, run_id, SpanStatus.RUNNING.value)
                for run_id in ids
                for t in (last.get(run_id, 0.0),)
            ],
        )
        conn.exec_driver_sql(
            "UPDATE runs SET status = ?, error = coalesce(error, ?), ended_at = started_at + ?,"
            " duration_s = ? WHERE id = ? AND status = ?",
            [
                (
                    RunStatus.INTERRUPTED.value,
                    f"the process that ran it (pid {pid} on {_HOST}) exited before it finished",
                    last.get(run_id, 0.0),
                    last.get(run_id, 0.0),
                    run_id,
                    RunStatus.RUNNING.value,
                )
                for run_id, pid in runs
            ],
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceStore({self.path!r}, schema_version={self.schema_version})"
