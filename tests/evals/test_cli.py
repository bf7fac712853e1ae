"""Tests for ``counterpoint eval`` (bfcl and report) through typer's CliRunner.

The lead's top-level app is used when it mounts ``eval``; otherwise ``eval_app`` itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from counterpoint.evals.cli import eval_app
from counterpoint.runtime.tracing import TraceStore, query


def _app() -> tuple[typer.Typer, list[str]]:
    """The top-level app with its ``eval`` group when it mounts one, else ``eval_app``."""
    from counterpoint import cli

    try:
        group = typer.main.get_command(cli.app)
    except Exception:  # the top-level app does not build: test this group on its own
        return eval_app, []
    if "eval" in getattr(group, "commands", {}):
        return cli.app, ["eval"]
    return eval_app, []


def _invoke(*args: str) -> Result:
    app, prefix = _app()
    return CliRunner().invoke(app, [*prefix, *args])


def _one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


FAST = ["--model", "scripted-oracle", "--latency-scale", "0.05"]


def test_unknown_category_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _invoke("bfcl", "--category", "paralel", "--db", str(tmp_path / "t.db"))
    _one_line_error(result, "unknown BFCL category 'paralel'", "parallel_multiple")


def test_bad_mode_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _invoke("bfcl", "-c", "parallel", "--mode", "fast", "--db", str(tmp_path / "t.db"))
    _one_line_error(result, "unknown mode 'fast'", "sync, parallel, async")


def test_bad_concurrency_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _invoke("bfcl", "--concurrency", "0", "--db", str(tmp_path / "t.db"))
    _one_line_error(result, "--concurrency")


def test_bad_call_threshold_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _invoke("bfcl", "--call-threshold", "1.5", "--db", str(tmp_path / "t.db"))
    _one_line_error(result, "--call-threshold must be at least 0 and below 1, got 1.5")


def test_run_then_report(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    args = ["bfcl", "-c", "parallel", "-m", "sync", "-m", "async", "--limit", "2", *FAST]
    result = _invoke(*args, "--db", db)
    assert result.exit_code == 0, result.output
    assert "100.0%" in result.stdout and "Speedup over sync" in result.stdout
    assert "eval run" in result.stderr and "2/2" in result.stdout
    # not a terminal: plain progress lines instead of a live bar
    assert "4/4 parallel/" in result.stderr and "acc 100%" in result.stderr

    with TraceStore(db) as store:
        (run,) = query.list_eval_runs(store)
        assert run.status == "done" and run.model == "scripted-oracle"
        assert len(query.eval_results(store, run.id)) == 4

    out = tmp_path / "report"
    report = _invoke("report", run.id[:10], "--db", db, "--out", str(out))
    assert report.exit_code == 0, report.output
    assert "parallel" in report.stdout and "100.0%" in report.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [r["id"] for r in summary["runs"]] == [run.id]
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")

    # resuming a finished run redoes nothing
    again = _invoke("bfcl", "--resume", run.id, "--db", db)
    assert again.exit_code == 0, again.output
    assert "0 to run, 4 already done" in again.stderr
    with TraceStore(db) as store:
        assert len(query.eval_results(store, run.id)) == 4

    # options that contradict the stored run are refused
    clash = _invoke("bfcl", "--resume", run.id, "--model", "embedded", "--db", db)
    _one_line_error(clash, "--model", "leave --model out")
    same = _invoke("bfcl", "--resume", run.id, "-c", "parallel", "--db", db)
    assert same.exit_code == 0, same.output


def test_resume_of_an_unknown_run_is_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    first = _invoke("bfcl", "-c", "parallel", "--limit", "1", "-m", "async", *FAST, "--db", db)
    assert first.exit_code == 0, first.output
    result = _invoke("bfcl", "--resume", "zzzz", "--db", db)
    _one_line_error(result, "zzzz")


def test_report_without_a_database_is_one_line(tmp_path: Path) -> None:
    result = _invoke("report", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path))
    _one_line_error(result, "no traces database")


def _synthetic_live_data(folder: Path) -> None:
    """A made-up ``live_simple`` file (the real held-back data is never used in tests)."""
    function = [
        {
            "name": "get_time",
            "description": "The time in a city.",
            "parameters": {
                "type": "dict",
                "properties": {"city": {"type": "string", "description": "The city."}},
                "required": ["city"],
            },
        }
    ]
    question = [[{"role": "user", "content": "What time is it in Oslo?"}]]
    case = {"id": "live_simple_0-0-0", "question": question, "function": function}
    answer = {"id": "live_simple_0-0-0", "ground_truth": [{"get_time": {"city": ["Oslo"]}}]}
    (folder / "possible_answer").mkdir(parents=True)
    (folder / "BFCL_v3_live_simple.json").write_text(json.dumps(case) + "\n")
    (folder / "possible_answer" / "BFCL_v3_live_simple.json").write_text(json.dumps(answer) + "\n")


@pytest.mark.parametrize("category", ["live_simple"])
def test_held_back_categories_run_with_a_one_line_warning(tmp_path: Path, category: str) -> None:
    _synthetic_live_data(tmp_path / "data")
    args = ["bfcl", "-c", category, "-m", "async", *FAST, "--data-dir", str(tmp_path / "data")]
    result = _invoke(*args, "--db", str(tmp_path / "t.db"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "held back for acceptance" in warnings[0]
    assert "1/1" in result.stdout
