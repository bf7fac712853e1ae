"""``counterpoint traces`` through typer's CliRunner: list, show, export, stats and user errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from counterpoint.runtime.tracing import SQLiteTracer
from counterpoint.runtime.tracing._render import timeline_rows
from counterpoint.runtime.tracing.cli import traces_app
from counterpoint.runtime.tracing.query import span_tree, spans_of

from ._events import WALL, ToolCall, run_events

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "traces.db"
    with SQLiteTracer(path) as tracer:
        calls = (
            ToolCall("c1", "get_weather", 0.10, 0.90),
            ToolCall("c2", "get_time", 0.20, 0.30, ok=False),
        )
        for e in run_events(
            "weather-run-1", name="weather [bot]", wall_time=WALL, calls=calls, trap=(0.5, 0.9)
        ):
            tracer.emit(e)
        for e in run_events(
            "other-run-2", name="other", mode="sync", wall_time=WALL + 10, status="error"
        ):
            tracer.emit(e)
    return path


def _run(db: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(traces_app, ["--db", str(db), *args])
    return result.exit_code, result.stdout, result.stderr


def test_list(db: Path) -> None:
    code, out, _ = _run(db, "list")
    assert code == 0
    lines = out.splitlines()
    assert "started" in lines[0] and "status" in lines[0] and "calls" in lines[0]
    assert "other-run-" in lines[1] and "error" in lines[1] and "sync" in lines[1]
    assert "weather-ru" in lines[2] and "weather [" in lines[2] and "async" in lines[2]
    assert "50/20" in lines[2]  # tokens in/out
    assert "weather [bot]" not in out  # at 80 columns the name is shortened, not the numbers
    wide = runner.invoke(traces_app, ["--db", str(db), "list"], env={"COLUMNS": "120"})
    assert "weather [bot]" in wide.stdout
    code, out, _ = _run(db, "list", "--status", "error")
    assert "other-run" in out and "weather" not in out


def test_show_tree_and_timeline(db: Path) -> None:
    code, out, err = _run(db, "show", "weather", "--width", "100")
    assert code == 0, err
    assert "weather-run-1" in out and "weather [bot]" in out  # brackets are not rich markup
    assert "generation chat scripted" in out
    assert "tool_call get_weather" in out and "tool_call get_time" in out and "it broke" in out
    assert "interrupt c1" in out and "trap" in out
    timeline = out[out.index("timeline") :]
    rows = {
        line.split()[0] + " " + line.split()[1]: line
        for line in timeline.splitlines()[1:]
        if "█" in line
    }
    weather_bar = rows["tool_call get_weather"]
    time_bar = rows["tool_call get_time"]
    # get_weather (0.1-0.9 s) starts before and ends after get_time (0.2-0.3 s): bars overlap
    assert weather_bar.index("█") < time_bar.index("█")
    assert weather_bar.rindex("█") > time_bar.rindex("█")


def test_show_limits_the_spans_it_draws(db: Path) -> None:
    code, out, _ = _run(db, "show", "weather", "--spans", "2")
    assert code == 0
    assert "showing the first 2 of 6 spans" in out
    assert "get_time" not in out  # third span by start time


def test_timeline_rows_place_spans_on_a_shared_axis(db: Path) -> None:
    from counterpoint.runtime.tracing import TraceStore

    with TraceStore(db) as store:
        nodes = span_tree(spans_of(store, "weather-run-1"))
    rows = {(n.span.kind, n.span.name): (a, b) for n, a, b in timeline_rows(nodes, 1.0, 100)}
    assert rows[("tool_call", "get_weather")] == (10, 90)
    assert rows[("tool_call", "get_time")] == (20, 30)
    assert rows[("trap", "trap")] == (50, 90)
    a, b = rows[("interrupt", "c2")]  # 5 ms of prefill still gets one cell
    assert b - a == 1


def test_export_json(db: Path, tmp_path: Path) -> None:
    code, out, _ = _run(db, "export", "weather-run-1", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["run"]["id"] == "weather-run-1"
    kinds = sorted(s["kind"] for s in data["spans"])
    assert kinds == ["generation", "interrupt", "interrupt", "tool_call", "tool_call", "trap"]
    target = tmp_path / "out.json"
    code, out, _ = _run(db, "export", "other", "-o", str(target))
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["run"]["status"] == "error"
    code, _, err = _run(db, "export", "other", "--format", "xml")
    assert code == 2 and "xml" in err


def test_stats(db: Path) -> None:
    code, out, _ = _run(db, "stats")
    assert code == 0
    assert "2 runs (1 error, 1 ok)" in out
    weather = next(line for line in out.splitlines() if line.startswith("get_weather"))
    assert weather.split()[1:3] == ["2", "460ms"]  # 800 ms and 120 ms
    get_time = next(line for line in out.splitlines() if line.startswith("get_time"))
    assert get_time.split()[-1] == "100%"


@pytest.mark.parametrize("command", ["show", "export"])
def test_unknown_run_exits_2_with_one_line(db: Path, command: str) -> None:
    code, out, err = _run(db, command, "no-such-run")
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no-such-run" in err and "Traceback" not in err


def test_ambiguous_prefix_exits_2(db: Path) -> None:
    code, _, err = _run(db, "show", "")
    assert code == 2 and "run id" in err


def test_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    code, out, _ = _run(missing, "list")
    assert code == 0 and "No traces yet" in out
    code, _, err = _run(missing, "show", "abc")
    assert code == 2 and "abc" in err
    assert not missing.exists()  # reading never creates the file


def test_foreign_database_exits_2_and_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE notes (x TEXT)")
    c.close()
    before = path.read_bytes()
    code, _, err = _run(path, "list")
    assert code == 2 and "did not create" in err and len(err.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_db_from_environment(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERPOINT_TRACES_DB", str(db))
    result = runner.invoke(traces_app, ["list"])
    assert result.exit_code == 0 and "weather-ru" in result.stdout
