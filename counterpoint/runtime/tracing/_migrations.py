"""Recognising a traces file and bringing its schema up to date.

Why not Alembic: Alembic is built for server databases upgraded by an operator who runs
``alembic upgrade`` with a migrations directory, an ``env.py`` and an ini file at hand. A traces
file is a local file that a library opens on its own, possibly from several processes at the same
moment (an agent writing, ``counterpoint traces`` reading, an eval writing results); it must
upgrade itself on open, atomically, with nothing to install or configure. SQLite's DDL is
transactional, so a numbered list of SQL steps is enough: :func:`migrate` applies the steps a file
lacks in one transaction, which :class:`~counterpoint.runtime.tracing.store.TraceStore` opens with
``BEGIN IMMEDIATE`` (it takes the write lock first, and reads the file's version inside it). So the
first process to open an old file upgrades it, the others wait on the lock (up to the store's busy
timeout) and then find nothing left to apply, and a step that fails rolls every step back.
(Alembic would also need its "batch mode" to emulate most ``ALTER TABLE`` forms on SQLite;
hand-written steps face the same limits openly.)

The DDL of every version is written out below rather than generated from the models, so that an old
step never changes when a model does; ``tests/runtime/tracing/test_store.py`` checks that applying
every step yields exactly the schema that :mod:`counterpoint.runtime.tracing.models` declares.

Identity: a file is counterpoint's if its header's ``application_id`` (a field SQLite reserves for
this purpose) is :data:`APPLICATION_ID`; :func:`migrate` sets it. A file that does not exist yet,
an empty file and an empty SQLite database (no tables, no application id) are version 0 and
become traces files. ``schema_version`` records each step applied and when. :func:`check_file`
refuses, with a :class:`TraceStoreError` and before anything is written to the file, a directory,
a file that is not SQLite, an SQLite database of another application, a traces file without its
``schema_version`` table or that SQLite's ``quick_check`` finds damaged, and one written by a
newer counterpoint.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from counterpoint.runtime.tracing.errors import TraceStoreError

__all__ = [
    "APPLICATION_ID",
    "CURRENT_VERSION",
    "MIGRATIONS",
    "Migration",
    "check_file",
    "current_version",
    "migrate",
]

APPLICATION_ID = 0x43505452  # "CPTR"


@dataclass(frozen=True)
class Migration:
    """One schema step: the SQL that takes a file from ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


_V1 = Migration(
    1,
    "runs, spans, eval runs and eval results",
    (
        """CREATE TABLE schema_version (
            version INTEGER NOT NULL PRIMARY KEY,
            description VARCHAR NOT NULL,
            applied_at FLOAT NOT NULL
        )""",
        """CREATE TABLE runs (
            id VARCHAR NOT NULL PRIMARY KEY,
            name VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            prompt VARCHAR NOT NULL,
            output VARCHAR,
            error VARCHAR,
            parent_run_id VARCHAR,
            started_at FLOAT NOT NULL,
            ended_at FLOAT,
            duration_s FLOAT,
            first_token_s FLOAT,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            calls INTEGER NOT NULL,
            interrupts INTEGER NOT NULL,
            attributes JSON NOT NULL
        )""",
        "CREATE INDEX ix_runs_name ON runs (name)",
        "CREATE INDEX ix_runs_parent_run_id ON runs (parent_run_id)",
        "CREATE INDEX ix_runs_started_at ON runs (started_at)",
        "CREATE INDEX ix_runs_status ON runs (status)",
        """CREATE TABLE spans (
            id VARCHAR NOT NULL PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            parent_id VARCHAR,
            kind VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            start_s FLOAT NOT NULL,
            end_s FLOAT,
            duration_s FLOAT,
            start_time FLOAT,
            end_time FLOAT,
            attributes JSON NOT NULL
        )""",
        "CREATE INDEX ix_spans_kind_name ON spans (kind, name, status, duration_s)",
        "CREATE INDEX ix_spans_run_id_start_s ON spans (run_id, start_s)",
        """CREATE TABLE eval_runs (
            id VARCHAR NOT NULL PRIMARY KEY,
            name VARCHAR NOT NULL,
            dataset VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            categories JSON NOT NULL,
            modes JSON NOT NULL,
            status VARCHAR NOT NULL,
            n_cases INTEGER NOT NULL,
            started_at FLOAT NOT NULL,
            ended_at FLOAT,
            config JSON NOT NULL,
            attributes JSON NOT NULL
        )""",
        "CREATE INDEX ix_eval_runs_started_at ON eval_runs (started_at)",
        """CREATE TABLE eval_results (
            id INTEGER NOT NULL PRIMARY KEY,
            eval_run_id VARCHAR NOT NULL,
            case_id VARCHAR NOT NULL,
            category VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            correct BOOLEAN NOT NULL,
            failure_reason VARCHAR,
            calls JSON NOT NULL,
            latency_s FLOAT NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            run_id VARCHAR,
            created_at FLOAT NOT NULL,
            attributes JSON NOT NULL
        )""",
        "CREATE INDEX ix_eval_results_run_category_mode"
        " ON eval_results (eval_run_id, category, mode)",
        "CREATE INDEX ix_eval_results_run_id ON eval_results (run_id)",
    ),
)

_V2 = Migration(
    2,
    "workflow checkpoints: workflow runs, their tasks, and cached task results",
    (
        """CREATE TABLE workflow_runs (
            id VARCHAR NOT NULL PRIMARY KEY,
            name VARCHAR NOT NULL,
            goal VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            graph JSON NOT NULL,
            source VARCHAR,
            config JSON NOT NULL,
            started_at FLOAT NOT NULL,
            ended_at FLOAT,
            resumes INTEGER NOT NULL,
            attributes JSON NOT NULL
        )""",
        "CREATE INDEX ix_workflow_runs_started_at ON workflow_runs (started_at)",
        """CREATE TABLE workflow_tasks (
            run_id VARCHAR NOT NULL,
            task_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            result VARCHAR,
            error VARCHAR,
            attempts INTEGER NOT NULL,
            started FLOAT,
            ended FLOAT,
            agent_run_id VARCHAR,
            updated_at FLOAT NOT NULL,
            graph_version INTEGER NOT NULL,
            PRIMARY KEY (run_id, task_id)
        )""",
        """CREATE TABLE workflow_cache (
            "key" VARCHAR NOT NULL PRIMARY KEY,
            result VARCHAR NOT NULL,
            task_id VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,
            created_at FLOAT NOT NULL
        )""",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2)
"""Every schema step, in order; append, never edit a published one."""

CURRENT_VERSION = MIGRATIONS[-1].version
"""The schema version this counterpoint writes."""


def current_version() -> int:
    """The last step's version (read at call time, so tests can append steps)."""
    return MIGRATIONS[-1].version


def _advice(path: Path) -> str:
    return (
        f"Move {path} aside, or pass another file with --db or the COUNTERPOINT_TRACES_DB "
        "environment variable; counterpoint has not modified it."
    )


def check_file(path: Path) -> int:
    """Check that ``path`` may be opened as a traces file, without writing to it.

    Returns the file's schema version: 0 for a file that does not exist yet or is an empty SQLite
    database (both become traces files), otherwise the version recorded in it. Raises
    :class:`TraceStoreError` for a directory, a file that is not SQLite or is damaged, an SQLite
    database of another application, or a traces file newer than this version of counterpoint.
    """
    if not path.exists():
        return 0
    if not path.is_file():
        raise TraceStoreError(f"The traces database {path} is not a regular file. {_advice(path)}")
    size = path.stat().st_size
    if size == 0:
        return 0
    # The file is read through SQLite only, never opened and closed by hand: closing any other
    # descriptor of the file would drop the POSIX locks this process's SQLite connections hold on
    # it (see https://sqlite.org/howtocorrupt.html, 2.2), and another process could then reset
    # the WAL under them (they get "disk I/O error").
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=10.0)
    except sqlite3.Error as e:
        raise TraceStoreError(f"Cannot open the traces database {path}: {e}.") from e
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as e:
        conn.close()
        if "not a database" in str(e):
            raise TraceStoreError(
                f"The traces database {path} is not an SQLite database (its header is wrong: the "
                f"file is damaged or is something else). {_advice(path)}"
            ) from e
        raise TraceStoreError(f"Cannot open the traces database {path}: {e}.") from e
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = sorted(
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        )
        if app_id == 0 and not tables:
            return 0
        if app_id != APPLICATION_ID:
            listed = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
            raise TraceStoreError(
                f"{path} is an SQLite database that counterpoint did not create "
                f"(application id {app_id:#x}, tables: {listed or 'none'}). {_advice(path)}"
            )
        if "schema_version" not in tables:
            raise TraceStoreError(
                f"The traces database {path} has no schema_version table: it is damaged. "
                f"{_advice(path)}"
            )
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        version = int(row[0] or 0)
        check = conn.execute("PRAGMA quick_check(1)").fetchone()
        if check is None or check[0] != "ok":
            problem = " ".join(str(check[0] if check else "no answer").split())
            raise TraceStoreError(
                f"The traces database {path} is damaged ({problem}). {_advice(path)}"
            )
    except sqlite3.DatabaseError as e:
        raise TraceStoreError(
            f"The traces database {path} is damaged ({e}). {_advice(path)}"
        ) from e
    finally:
        conn.close()
    if version > current_version():
        raise TraceStoreError(
            f"The traces database {path} was written by a newer counterpoint (schema version "
            f"{version}; this one knows up to {current_version()}). Upgrade counterpoint, or pass "
            "another file with --db or COUNTERPOINT_TRACES_DB."
        )
    return version


def migrate(conn: Connection, migrations: tuple[Migration, ...] | None = None) -> int:
    """Apply the steps the database lacks, in one transaction; return the resulting version.

    ``conn`` must begin its transactions with ``BEGIN IMMEDIATE`` (see ``store.py``) so that two
    processes opening an old file at once upgrade it once. A failing step rolls everything back.
    """
    if migrations is None:
        migrations = MIGRATIONS
    target = migrations[-1].version
    with conn.begin():
        app_id = conn.exec_driver_sql("PRAGMA application_id").scalar_one()
        has_table = conn.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).scalar_one()
        current = 0
        if has_table:
            current = int(
                conn.exec_driver_sql("SELECT max(version) FROM schema_version").scalar() or 0
            )
        elif app_id not in (0, APPLICATION_ID):
            raise TraceStoreError(
                "Another application claimed the traces database while opening it."
            )
        if current > target:
            raise TraceStoreError(
                f"The traces database has schema version {current}, newer than this counterpoint "
                f"knows ({target}). Upgrade counterpoint, or pass another file with --db."
            )
        for step in migrations:
            if step.version <= current:
                continue
            for statement in step.statements:
                conn.exec_driver_sql(statement)
            conn.execute(
                text(
                    "INSERT INTO schema_version (version, description, applied_at) "
                    "VALUES (:v, :d, :t)"
                ),
                {"v": step.version, "d": step.description, "t": time.time()},
            )
            current = step.version
        if app_id != APPLICATION_ID:
            conn.exec_driver_sql(f"PRAGMA application_id = {APPLICATION_ID}")
    return current
