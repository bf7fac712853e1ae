"""Opening a traces file: schema, migrations, pragmas, and refusing files that are not ours."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from counterpoint.errors import CounterpointError
from counterpoint.runtime.tracing import _migrations
from counterpoint.runtime.tracing._migrations import APPLICATION_ID, CURRENT_VERSION, Migration
from counterpoint.runtime.tracing.errors import TraceStoreError
from counterpoint.runtime.tracing.models import TraceBase
from counterpoint.runtime.tracing.store import ENV_VAR, TraceStore, default_db_path, resolve_db_path


def _schema(engine_url: str) -> dict[str, object]:
    """Tables -> (columns with type/nullability/pk, indexes) as SQLAlchemy's inspector sees them."""
    insp = inspect(create_engine(engine_url))
    out: dict[str, object] = {}
    for table in sorted(insp.get_table_names()):
        if table == "schema_version":
            continue
        cols = [
            (c["name"], str(c["type"]), c["nullable"], c.get("primary_key", 0))
            for c in insp.get_columns(table)
        ]
        pk = insp.get_pk_constraint(table)["constrained_columns"]
        idx = sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in insp.get_indexes(table)
        )
        out[table] = (cols, pk, idx)
    return out


def _snapshot(path: Path) -> dict[str, bytes]:
    """The bytes of a file and of any -wal/-shm/-journal beside it."""
    return {
        p.name: p.read_bytes()
        for p in path.parent.iterdir()
        if p.name == path.name or p.name.startswith(path.name + "-")
    }


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    TraceStore(migrated).close()
    reference = tmp_path / "reference.db"
    TraceBase.metadata.create_all(create_engine(f"sqlite:///{reference}"))
    assert _schema(f"sqlite:///{migrated}") == _schema(f"sqlite:///{reference}")
    assert set(TraceBase.metadata.tables) == {
        "runs",
        "spans",
        "eval_runs",
        "eval_results",
        "workflow_runs",
        "workflow_tasks",
        "workflow_cache",
    }


def test_new_file_is_stamped_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "traces.db"
    with TraceStore(path) as store:
        assert store.schema_version == CURRENT_VERSION
        with store.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    with TraceStore(path, synchronous="NORMAL") as store, store.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    conn2 = sqlite3.connect(path)
    assert conn2.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    rows = conn2.execute("SELECT version, description FROM schema_version").fetchall()
    conn2.close()
    assert [r[0] for r in rows] == [m.version for m in _migrations.MIGRATIONS]


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    TraceStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute(
            "INSERT INTO runs (id, name, model, mode, status, prompt, started_at, input_tokens, "
            "output_tokens, calls, interrupts, attributes) VALUES "
            "('r1', 'n', '', '', 'ok', '', 1.0, 0, 0, 0, 0, '{}')"
        )
    c.close()
    with TraceStore(path) as store, store.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM runs").scalars().all() == ["r1"]
        assert conn.exec_driver_sql("SELECT count(*) FROM schema_version").scalar() == len(
            _migrations.MIGRATIONS
        )


def test_an_older_file_is_upgraded_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.db"
    TraceStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute(
            "INSERT INTO spans (id, run_id, kind, name, status, start_s, attributes) "
            "VALUES ('s1', 'r1', 'tool_call', 'x', 'ok', 0.5, '{}')"
        )
    c.close()
    nxt = CURRENT_VERSION + 1
    v2 = Migration(nxt, "spans get a note", ("ALTER TABLE spans ADD COLUMN note VARCHAR",))
    monkeypatch.setattr(_migrations, "MIGRATIONS", (*_migrations.MIGRATIONS, v2))
    with TraceStore(path) as store:
        assert store.schema_version == nxt
        with store.connect() as conn:
            row = conn.exec_driver_sql("SELECT id, start_s, note FROM spans").one()
            assert tuple(row) == ("s1", 0.5, None)
            versions = conn.exec_driver_sql("SELECT version FROM schema_version").scalars().all()
            assert versions == list(range(1, nxt + 1))


def test_a_failing_step_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.db"
    TraceStore(path).close()
    bad = Migration(
        CURRENT_VERSION + 1, "half done", ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL")
    )
    monkeypatch.setattr(_migrations, "MIGRATIONS", (*_migrations.MIGRATIONS, bad))
    with pytest.raises(CounterpointError):
        TraceStore(path)
    with sqlite3.connect(path) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "extra" not in tables
        assert c.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
            CURRENT_VERSION
        )
    c.close()


def test_a_newer_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    TraceStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    c.close()
    before = _snapshot(path)
    with pytest.raises(TraceStoreError, match="newer counterpoint"):
        TraceStore(path)
    assert _snapshot(path) == before


@pytest.mark.parametrize(
    "content",
    [
        b"hello, I am a text file\n" * 20,
        os.urandom(8192),
        b"SQLite format 3\x00" + b"\xff" * 4080,  # right magic, garbage header and pages
    ],
    ids=["text", "random", "garbage-after-magic"],
)
def test_a_corrupt_file_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "traces.db"
    path.write_bytes(content)
    with pytest.raises(TraceStoreError) as info:
        TraceStore(path)
    message = str(info.value)
    assert str(path) in message and "--db" in message and "not modified" in message
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traces.db"]


def test_a_damaged_traces_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    with TraceStore(path) as store, store.connect() as conn, conn.begin():
        for i in range(300):
            conn.exec_driver_sql(
                "INSERT INTO spans (id, run_id, kind, name, status, start_s, attributes) "
                f"VALUES ('s{i}', 'r', 'tool_call', '{'x' * 200}', 'ok', 0, '{{}}')"
            )
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[2 * page : 6 * page] = os.urandom(4 * page)  # smash pages in the middle
    path.write_bytes(bytes(data))
    before = _snapshot(path)
    with pytest.raises(TraceStoreError, match="damaged"):
        TraceStore(path)
    assert _snapshot(path) == before


def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, owner TEXT)")
        c.execute("INSERT INTO runs VALUES ('a', 'someone else')")
    c.close()
    before = _snapshot(path)
    with pytest.raises(TraceStoreError) as info:
        TraceStore(path)
    message = str(info.value)
    assert "did not create" in message and "runs" in message and str(path) in message
    assert _snapshot(path) == before


def test_an_empty_file_or_empty_database_becomes_a_traces_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with TraceStore(empty) as store:
        assert store.schema_version == CURRENT_VERSION
    blank = tmp_path / "blank.db"
    sqlite3.connect(blank).close()
    with TraceStore(blank) as store:
        assert store.schema_version == CURRENT_VERSION


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceStoreError, match="not a regular file"):
        TraceStore(tmp_path)


def test_memory_store() -> None:
    with TraceStore(":memory:") as store:
        assert store.is_memory and store.schema_version == CURRENT_VERSION
        with store.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA application_id").scalar() == APPLICATION_ID


def test_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_db_path() == Path.home() / ".local/share/counterpoint/traces.db"
    assert resolve_db_path() == str(default_db_path())
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_db_path() == str(tmp_path / "xdg/counterpoint/traces.db")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.db"))
    assert resolve_db_path() == str(tmp_path / "env.db")
    assert resolve_db_path(tmp_path / "arg.db") == str(tmp_path / "arg.db")
    assert resolve_db_path(":memory:") == ":memory:"
    monkeypatch.setenv(ENV_VAR, ":memory:")
    assert resolve_db_path() == ":memory:"


def test_opening_a_second_store_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    """Opening another store on a file this process already writes must not drop the first
    store's POSIX locks (closing any descriptor of the file would): else another process that
    opens and closes the file believes itself the last user, resets the WAL, and the first
    store's next write fails with "disk I/O error"."""
    import subprocess
    import sys

    path = tmp_path / "traces.db"
    first = TraceStore(path)
    with first.connect() as conn, conn.begin():
        conn.exec_driver_sql("CREATE TABLE probe (n INTEGER)")
    code = (
        "import sys; from counterpoint.runtime.tracing.store import TraceStore\n"
        "for _ in range(5):\n"
        "    with TraceStore(sys.argv[1]) as s, s.connect() as c:\n"
        "        c.exec_driver_sql('SELECT count(*) FROM probe').scalar_one()\n"
    )
    try:
        with first.connect() as held:  # a connection the first store keeps open
            for n in range(5):
                TraceStore(path).close()  # a second store, opened and closed in this process
                subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
                with held.begin():
                    held.exec_driver_sql(f"INSERT INTO probe VALUES ({n})")
            assert held.exec_driver_sql("SELECT count(*) FROM probe").scalar_one() == 5
    finally:
        first.close()
