"""Pilot tests of the traces screens on a database written by a real SQLiteTracer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Tree

from counterpoint.cli import main
from counterpoint.runtime.tracing import SQLiteTracer
from counterpoint.tui.app import CounterpointApp
from counterpoint.tui.timeline import Timeline
from counterpoint.tui.traces_screen import RunDetailScreen, TracesScreen
from tests.tui._fixtures import TWO_CALLS, agent


async def _stored_run(db: Path) -> str:
    tracer = SQLiteTracer(db)
    try:
        result = await agent(TWO_CALLS, tracer=tracer).run("Weather in Paris, time in Tokyo?")
    finally:
        tracer.close()
    return result.run_id


async def test_list_filter_open_and_export(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    run_id = await _stored_run(db)
    app = CounterpointApp(None, db=str(db), export_dir=tmp_path)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == 1, (screen.runs, str(screen.query_one("#empty").render()))
        screen.query_one("#filter", Input).value = "status:error"
        await pilot.pause()
        assert table.row_count == 0
        screen.query_one("#filter", Input).value = "name:tui-test"
        await pilot.pause()
        assert table.row_count == 1
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, RunDetailScreen) and detail.run.id == run_id
        lanes = detail.query_one(Timeline).model.lanes
        assert {"decode", "call:c1", "call:c2"} <= set(lanes)
        assert [i.status for i in lanes["call:c1"].intervals] == ["ok"]
        tree = detail.query_one(Tree)
        assert len(tree.root.children) >= 1
        await pilot.press("x")
        await pilot.pause()
        exported = json.loads((tmp_path / f"counterpoint-run-{run_id}.json").read_text())
        assert exported["run"]["id"] == run_id and exported["spans"]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, TracesScreen)


async def test_run_flag_opens_the_run(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    run_id = await _stored_run(db)
    app = CounterpointApp(None, db=str(db), run_id=run_id[:10], export_dir=tmp_path)
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunDetailScreen)
        assert app.screen.run.id == run_id


async def test_empty_database_says_so(tmp_path: Path) -> None:
    app = CounterpointApp(None, db=str(tmp_path / "empty.db"))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        assert "No runs recorded yet" in str(app.screen.query_one("#empty").render())


def test_bad_run_id_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tui", "--db", str(tmp_path / "t.db"), "--run", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err


def test_bad_tools_module_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tui", "--tools", "no_such_module_xyz.tools"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_module_xyz" in err


def test_tools_module_loads() -> None:
    from counterpoint.tui._load import load_tools

    assert set(load_tools("tests.tui._fixtures").names) >= {"get_weather", "get_time"}
    assert set(load_tools("counterpoint._demo:demo_tools").names) == {
        "get_weather",
        "get_local_time",
        "find_flights",
    }
