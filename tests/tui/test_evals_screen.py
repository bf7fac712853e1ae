"""Pilot tests of the evals screen: real BFCL cases on the scripted models, a real traces DB."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, Static

from counterpoint.errors import ConfigError
from counterpoint.evals.runner import find_eval_run
from counterpoint.runtime.tracing.store import TraceStore
from counterpoint.tui.evals_screen import EvalForm, EvalsScreen, parse_form
from counterpoint.tui.traces_screen import RunDetailScreen


class EvalsApp(App[None]):
    """A bare app showing only the evals screen; records every notification."""

    def __init__(self, screen: EvalsScreen) -> None:
        super().__init__()
        self.evals = screen
        self.notes: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        return iter(())

    def on_mount(self) -> None:
        self.push_screen(self.evals)

    def notify(self, message: str, **kwargs: Any) -> None:
        self.notes.append((str(kwargs.get("severity", "information")), message))
        super().notify(message, **kwargs)


def _fill(screen: EvalsScreen, **fields: str) -> None:
    for name, value in fields.items():
        screen.query_one(f"#{name.replace('_', '-')}", Input).value = value


def _cells(table: DataTable[Any], row: int) -> list[str]:
    return [str(cell) for cell in table.get_row_at(row)]


def _eval_status(db: Path, run_id: str) -> str:
    with TraceStore(db, open_timeout_s=2.0) as store:
        return find_eval_run(store, run_id).status


async def test_tiny_eval_fills_cases_and_report(tmp_path: Path) -> None:
    db = tmp_path / "evals.db"
    app = EvalsApp(EvalsScreen(str(db)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.evals
        assert screen.query_one("#categories", Input).value == "simple_python"
        assert screen.query_one("#modes", Input).value == "sync,async"
        _fill(screen, limit="2", latency_scale="0")
        await pilot.press("ctrl+r")
        await screen.wait_eval()
        await pilot.pause()
        assert screen.state == "done", app.notes
        cases = screen.query_one("#cases", DataTable)
        assert cases.row_count == 4  # 2 cases x (sync, async)
        first = _cells(cases, 0)
        assert first[:4] == ["simple_python_0", "simple_python", "sync", "✓"]
        assert first[4].endswith("ms")
        assert {_cells(cases, i)[2] for i in range(4)} == {"sync", "async"}
        results = screen.query_one("#results", DataTable)
        assert results.row_count == 2
        sync_row, async_row = _cells(results, 0), _cells(results, 1)
        assert sync_row[:5] == ["simple_python", "sync", "2", "2/2", "100.0%"]
        assert sync_row[7] == "–"  # the baseline has no speedup
        assert async_row[:5] == ["simple_python", "async", "2", "2/2", "100.0%"]
        assert async_row[7].endswith("x (2 pairs)")
        assert screen.report is not None and screen.outcome is not None
        group = screen.report.group("scripted-oracle", "simple_python", "async")
        assert group is not None and sync_row[5] != "–"
        assert _eval_status(db, screen.outcome.run_id) == "done"
        assert "done: 4/4 correct" in str(screen.query_one("#eval-status", Static).render())
        assert not [n for n in app.notes if n[0] == "error"]


BAD_FIELDS = [
    ({"limit": "0"}, "positive integer"),
    ({"limit": "two"}, "positive integer"),
    ({"categories": "no_such_category"}, "unknown BFCL category 'no_such_category'"),
    ({"categories": "simple_python, live_simple"}, "live_simple: held back"),
    ({"categories": " , "}, "at least one BFCL category"),
    ({"modes": "sync,turbo"}, "unknown mode 'turbo'"),
    ({"latency_scale": "fast"}, "latency scale"),
    ({"latency_scale": "-1"}, "latency-scale must be 0 or more"),
    ({"model": "  "}, "give a model"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS)
def test_parse_form_rejects_bad_fields(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_form(EvalForm(**fields))


async def test_bad_input_shows_an_error_and_starts_nothing(tmp_path: Path) -> None:
    db = tmp_path / "evals.db"
    app = EvalsApp(EvalsScreen(str(db)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.evals
        for fields, message in BAD_FIELDS:
            _fill(screen, **{**dataclasses.asdict(EvalForm()), **fields})
            app.notes.clear()
            await pilot.press("ctrl+r")
            await pilot.pause()
            errors = [text for severity, text in app.notes if severity == "error"]
            assert len(errors) == 1 and message in errors[0], (fields, app.notes)
            assert screen.worker is None and screen.state == "idle"
        _fill(screen, limit="-3")  # Enter in the form starts too, with the same check
        screen.query_one("#limit", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.notes[-1][0] == "error" and screen.worker is None
        assert screen.query_one("#cases", DataTable).row_count == 0
    assert not db.exists()  # nothing was recorded


def test_parse_form_builds_the_config() -> None:
    config = parse_form(EvalForm(categories="simple_python, parallel", modes="all", limit="3"))
    assert config.categories == ("simple_python", "parallel")
    assert config.modes == ("sync", "parallel", "async")
    assert (config.limit, config.model, config.latency_scale) == (3, "scripted-oracle", 1.0)
    with pytest.raises(ConfigError, match="positive integer"):
        parse_form(EvalForm(limit="-1"))


async def test_unknown_model_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    app = EvalsApp(EvalsScreen(str(tmp_path / "evals.db")))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.evals
        _fill(screen, model="openai:", limit="1", latency_scale="0")
        await pilot.press("ctrl+r")
        await screen.wait_eval()
        await pilot.pause()
        assert screen.state == "error"
        assert [s for s, _ in app.notes] == ["error"], app.notes
        assert screen.query_one("#cases", DataTable).row_count == 0


async def test_escape_cancels_mid_run(tmp_path: Path) -> None:
    db = tmp_path / "evals.db"
    app = EvalsApp(EvalsScreen(str(db)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.evals
        # scale 4: each case takes about a second (tool latencies and 20 ms per token)
        _fill(screen, limit="5", modes="sync", latency_scale="4")
        await pilot.press("ctrl+r")
        for _ in range(500):
            await asyncio.sleep(0.01)
            if screen.results:
                break
        assert len(screen.results) == 1 and screen.running
        await pilot.press("escape")
        await screen.wait_eval()
        await pilot.pause()
        assert screen.state == "interrupted" and not screen.running
        assert screen.plan is not None
        kept = screen.query_one("#cases", DataTable).row_count
        assert 1 <= kept < 5
        assert _eval_status(db, screen.plan.run_id) == "interrupted"
        results = screen.query_one("#results", DataTable)  # the report of the cases kept
        assert results.row_count == 1 and _cells(results, 0)[2] == str(kept)
        assert "cancelled after" in str(screen.query_one("#eval-status", Static).render())
        await pilot.press("escape")  # nothing left to cancel: a note, not an error
        await pilot.pause()
        assert app.notes[-1] == ("information", "No eval is running.")


async def test_selecting_a_failed_case_shows_why_and_opens_its_run(tmp_path: Path) -> None:
    app = EvalsApp(EvalsScreen(str(tmp_path / "evals.db"), export_dir=tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.evals
        _fill(screen, model="scripted-perturbed", limit="1", modes="sync", latency_scale="0")
        await pilot.press("ctrl+r")
        await screen.wait_eval()
        await pilot.pause()
        assert screen.state == "done"
        cases = screen.query_one("#cases", DataTable)
        assert cases.row_count == 1 and _cells(cases, 0)[3] == "✗"
        result = next(iter(screen.results.values()))
        assert result.failure_reason and "is not one of" in result.failure_reason
        assert _cells(screen.query_one("#results", DataTable), 0)[4] == "0.0%"
        cases.focus()
        await pilot.press("enter")
        await pilot.pause()
        reason = str(screen.query_one("#reason", Static).render())
        assert "failed" in reason and result.failure_reason in reason
        assert ("warning", result.failure_reason) in app.notes
        detail = app.screen
        assert isinstance(detail, RunDetailScreen) and detail.run.id == result.run_id
        assert detail.run.name == "bfcl/simple_python_0"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_on_open_run_gets_the_case_run_id(tmp_path: Path) -> None:
    opened: list[str] = []
    screen = EvalsScreen(str(tmp_path / "evals.db"), on_open_run=opened.append)
    app = EvalsApp(screen)
    async with app.run_test(size=(120, 40)) as pilot:
        _fill(screen, model="scripted-perturbed", limit="1", modes="sync", latency_scale="0")
        await pilot.press("ctrl+r")
        await screen.wait_eval()
        await pilot.pause()
        screen.query_one("#cases", DataTable).focus()
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert opened == [next(iter(screen.results.values())).run_id]
        assert app.screen is screen


async def test_the_app_opens_the_evals_screen_and_a_case_in_the_traces_screen(
    tmp_path: Path,
) -> None:
    from counterpoint.tui.app import CounterpointApp

    app = CounterpointApp(None, db=str(tmp_path / "evals.db"), export_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, EvalsScreen) and screen is app.evals_screen
        _fill(screen, model="scripted-perturbed", limit="1", modes="sync", latency_scale="0")
        await pilot.press("ctrl+r")
        await screen.wait_eval()
        await pilot.pause()
        screen.query_one("#cases", DataTable).focus()
        await pilot.press("ctrl+o")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        assert detail.run.id == next(iter(screen.results.values())).run_id
