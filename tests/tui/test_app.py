"""The app's own habits: themes for 16-colour terminals, a notice when the terminal is too small,
the palette's entries, and one line with exit 2 for a bad theme."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from counterpoint.cli import main
from counterpoint.tui.app import MIN_SIZE, CounterpointApp, TooSmallScreen, default_theme
from counterpoint.tui.run_screen import RunScreen


def test_default_theme_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COUNTERPOINT_TUI_THEME", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    sixteen = Console(file=io.StringIO(), force_terminal=True, color_system="standard")
    full = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor")
    piped = Console(file=io.StringIO(), force_terminal=False)
    assert default_theme(sixteen) == "ansi-dark"
    assert default_theme(full) == "textual-dark"
    assert default_theme(piped) == "textual-dark"
    monkeypatch.setenv("NO_COLOR", "1")
    assert default_theme(full) == "ansi-dark"
    monkeypatch.setenv("COUNTERPOINT_TUI_THEME", "nord")
    assert default_theme(full) == "nord"


async def test_the_ansi_theme_runs() -> None:
    app = CounterpointApp(None, theme="ansi-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "ansi-dark"
        assert isinstance(app.screen, RunScreen)


async def test_a_small_terminal_gets_a_notice_then_the_screen_back() -> None:
    app = CounterpointApp(None)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        await pilot.resize_terminal(40, 10)
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        text = str(app.screen.message.render())
        assert "40×10" in text and f"{MIN_SIZE[0]}×{MIN_SIZE[1]}" in text
        await pilot.resize_terminal(50, 12)
        await pilot.pause()
        assert "50×12" in str(app.screen.message.render())
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert app.screen is screen


async def test_the_palette_lists_every_screen_and_action() -> None:
    app = CounterpointApp(None)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        titles = {command.title for command in app.get_system_commands(app.screen)}
        expected = {"Run screen", "Traces", "Evals", "Workflow", "Run workflow", "Cancel run"}
        assert expected <= titles, titles


def test_bad_theme_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tui", "--theme", "no-such-theme"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-theme" in err and "ansi-dark" in err


def test_the_cli_flags_build_the_run_screens_agent(tmp_path: object) -> None:
    from counterpoint.tui import build_agent

    agent = build_agent(
        model="embedded", tools="tests.tui._fixtures", mode="sync", instructions="Be brief."
    )
    assert agent.mode == "sync" and agent.instructions == "Be brief."
    assert agent.model_key == "embedded"  # loaded on the first run, not here


def test_counterpoint_tui_launches_the_app(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole CLI path up to the running app (its run() replaced: no terminal here)."""
    from pathlib import Path

    launched: list[CounterpointApp] = []
    monkeypatch.setattr(CounterpointApp, "run", lambda self, *a, **k: launched.append(self))
    db = Path(str(tmp_path)) / "t.db"
    wf = Path(__file__).parents[2] / "examples" / "workflows" / "report.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["tui", "--tools", "tests.tui._fixtures", "--db", str(db), "--workflow", str(wf)])
    assert exit_info.value.code == 0
    (app,) = launched
    assert app.agent is not None and set(app.agent.tools.names) >= {"get_weather"}
    assert app.workflow is not None and app.workflow.name == "library-report"


async def test_typing_goes_to_the_prompt_at_once() -> None:
    from textual.widgets import Input

    app = CounterpointApp(None)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("h", "i")
        assert app.screen.query_one("#prompt", Input).value == "hi"
