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
- ``busy_timeout``: 10 s by default, so several processes can share one file.
- Transactions are begun explicitly (pysqlite's own implicit ``BEGIN`` is switched off, as
  SQLAlchemy recommends); writers ask for ``BEGIN IMMEDIATE`` with the execution option
  ``counterpoint_begin="IMMEDIATE"``, readers get a plain deferred ``BEGIN``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from counterpoint.errors import ConfigError
from counterpoint.runtime.tracing._migrations import check_file, current_version, migrate
from counterpoint.runtime.tracing.errors import TraceStoreError

__all__ = ["ENV_VAR", "MEMORY", "Synchronous", "TraceStore", "default_db_path", "resolve_db_path"]

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


class TraceStore:
    """An opened, checked and up-to-date traces database.

    Opening never modifies a file it refuses: a damaged file, another application's SQLite
    database, or a file from a newer counterpoint raises :class:`TraceStoreError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 10.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}.")
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
        try:
            if version < current_version():  # only then take the write lock
                with self.connect(immediate=True) as conn:
                    self.schema_version = migrate(conn)
            else:
                with self.connect() as conn:  # open it now: WAL mode, and errors surface here
                    conn.exec_driver_sql("SELECT 1").close()
        except (sqlite3.DatabaseError, DBAPIError) as e:
            self.engine.dispose()
            detail = getattr(e, "orig", None) or e
            raise TraceStoreError(
                f"Cannot prepare the traces database {self.path} ({detail}). "
                f"Pass another path with --db or {ENV_VAR}."
            ) from e
        except BaseException:
            self.engine.dispose()
            raise

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

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceStore({self.path!r}, schema_version={self.schema_version})"
