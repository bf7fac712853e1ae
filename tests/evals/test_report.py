"""Tests for counterpoint.evals.report: the numbers on hand-made results, then a scripted run's
report as a table, a JSON summary and a PNG plot."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from counterpoint.errors import ConfigError
from counterpoint.evals._models import ORACLE, PERTURBED
from counterpoint.evals.report import (
    EvalReport,
    build_report,
    latest_run_ids,
    render_tables,
    write_report,
)
from counterpoint.evals.runner import EvalConfig, run_bfcl
from counterpoint.runtime.tracing import EvalResultRecord, EvalRunRecord, SQLiteTracer


@pytest.fixture
def tracer(tmp_path: Path) -> Iterator[SQLiteTracer]:
    with SQLiteTracer(tmp_path / "traces.db") as t:
        yield t


def _run(tracer: SQLiteTracer, run_id: str, model: str, started: float) -> None:
    tracer.record_eval_run(
        EvalRunRecord(
            id=run_id,
            model=model,
            categories=["parallel", "simple_python"],
            modes=["sync", "async"],
            status="done",
            n_cases=4,
            started_at=started,
        )
    )


def _result(
    tracer: SQLiteTracer,
    run_id: str,
    case: str,
    mode: str,
    latency: float,
    *,
    correct: bool = True,
    model: str = "m",
    out: int = 10,
    protocol: float = 2.0,
    status: str = "ok",
    violations: int = 0,
) -> None:
    tracer.record_eval_result(
        EvalResultRecord(
            eval_run_id=run_id,
            case_id=case,
            category=case.rsplit("_", 1)[0],
            mode=mode,
            model=model,
            correct=correct,
            failure_reason=None if correct else "wrong",
            latency_s=latency,
            output_tokens=out,
            attributes={
                "protocol_tokens": protocol,
                "status": status,
                "protocol_violations": violations,
            },
        )
    )


def _hand_made(tracer: SQLiteTracer) -> None:
    _run(tracer, "run-a", "m", 100.0)
    _result(tracer, "run-a", "parallel_0", "sync", 2.0)
    _result(tracer, "run-a", "parallel_0", "async", 1.0)
    _result(tracer, "run-a", "parallel_1", "sync", 4.0)
    _result(tracer, "run-a", "parallel_1", "async", 1.0, correct=False, status="limit")
    _result(tracer, "run-a", "simple_python_0", "sync", 1.0, out=20, protocol=5.0)
    _result(tracer, "run-a", "simple_python_0", "async", 1.0, out=20, protocol=5.0, violations=2)
    _result(tracer, "run-a", "simple_python_1", "sync", 3.0)  # no async pair
    tracer.flush()


def test_accuracy_latency_overhead_per_category_and_mode(tracer: SQLiteTracer) -> None:
    _hand_made(tracer)
    report = build_report(tracer.store, ["run-a"])
    sync = report.group("m", "parallel", "sync")
    asyn = report.group("m", "parallel", "async")
    assert sync is not None and asyn is not None
    assert (sync.cases, sync.correct, sync.accuracy) == (2, 2, 1.0)
    assert (asyn.cases, asyn.correct, asyn.accuracy) == (2, 1, 0.5)
    assert sync.latency_p50_s == pytest.approx(3.0)
    assert sync.latency_p95_s == pytest.approx(3.9)
    assert asyn.token_limit_hits == 1 and sync.token_limit_hits == 0
    assert sync.protocol_share == pytest.approx(0.2)
    simple = report.group("m", "simple_python", "sync")
    assert simple is not None and simple.cases == 2
    assert simple.protocol_share == pytest.approx(7.0 / 30.0)
    assert simple.protocol_errors == 0
    simple_async = report.group("m", "simple_python", "async")
    assert simple_async is not None and simple_async.protocol_errors == 1
    overall = report.group("m", "all", "sync")
    assert overall is not None and overall.cases == 4 and overall.correct == 4
    assert [(g.category, g.mode) for g in report.groups] == [
        ("parallel", "sync"),
        ("parallel", "async"),
        ("simple_python", "sync"),
        ("simple_python", "async"),
        ("all", "sync"),
        ("all", "async"),
    ]


def test_speedup_is_paired_by_case(tracer: SQLiteTracer) -> None:
    _hand_made(tracer)
    report = build_report(tracer.store, ["run-a"])
    by_category = {s.category: s for s in report.speedups}
    par = by_category["parallel"]
    assert (par.mode, par.baseline, par.pairs) == ("async", "sync", 2)
    assert par.median == pytest.approx(3.0)  # ratios 2 and 4
    assert par.geomean == pytest.approx(math.sqrt(8))
    assert par.pairs_both_correct == 1 and par.median_both_correct == pytest.approx(2.0)
    simple = by_category["simple_python"]
    assert simple.pairs == 1 and simple.median == pytest.approx(1.0)  # case 1 has no pair
    assert by_category["all"].pairs == 3


def test_the_latest_result_of_a_case_counts(tracer: SQLiteTracer) -> None:
    _hand_made(tracer)
    _run(tracer, "run-b", "m", 200.0)
    _result(tracer, "run-b", "parallel_0", "sync", 8.0, correct=False)
    tracer.flush()
    report = build_report(tracer.store, ["run-a", "run-b"])
    sync = report.group("m", "parallel", "sync")
    assert sync is not None and sync.cases == 2 and sync.correct == 1
    assert report.speedups[0].median == pytest.approx(6.0)  # ratios 8 and 4
    assert [r.recorded for r in report.runs] == [7, 1]


def test_default_runs_are_the_latest_of_each_model(tracer: SQLiteTracer) -> None:
    _hand_made(tracer)
    _run(tracer, "run-b", "m", 200.0)
    _run(tracer, "run-c", "other", 150.0)
    _run(tracer, "run-d", "other", 50.0)
    tracer.flush()
    assert latest_run_ids(tracer.store) == ["run-b", "run-c"]
    assert [r.id for r in build_report(tracer.store).runs] == ["run-b", "run-c"]
    assert [r.id for r in build_report(tracer.store, ["run-a"]).runs] == ["run-a"]


def test_no_eval_run_is_a_user_error(tracer: SQLiteTracer) -> None:
    with pytest.raises(ConfigError, match="counterpoint eval bfcl"):
        build_report(tracer.store)


async def test_report_of_scripted_runs_as_table_json_and_png(
    tracer: SQLiteTracer, tmp_path: Path
) -> None:
    for model in (ORACLE, PERTURBED):
        config = EvalConfig(
            categories=("simple_python", "parallel"), model=model, limit=2, latency_scale=0.05
        )
        await run_bfcl(config, tracer)
    report = build_report(tracer.store)
    assert {r.model for r in report.runs} == {ORACLE, PERTURBED}
    for mode in ("sync", "parallel", "async"):
        oracle = report.group(ORACLE, "all", mode)
        perturbed = report.group(PERTURBED, "all", mode)
        assert oracle is not None and oracle.accuracy == 1.0 and oracle.cases == 4
        assert perturbed is not None and perturbed.accuracy == 0.0
        assert 0 < oracle.protocol_share < 1
    assert {(s.model, s.category, s.mode) for s in report.speedups} >= {
        (ORACLE, "parallel", "async"),
        (ORACLE, "parallel", "parallel"),
    }

    console = Console(record=True, width=160)
    for table in render_tables(report):
        console.print(table)
    text = console.export_text()
    assert "simple_python" in text and "100.0%" in text and "0.0%" in text
    assert "Speedup over sync" in text and PERTURBED in text

    started = time.time()
    files = write_report(report, tmp_path / "out")
    assert files.json.parent == files.png.parent == tmp_path / "out"
    loaded = EvalReport.model_validate(json.loads(files.json.read_text()))
    assert loaded.groups == report.groups
    png = files.png.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert files.png.stat().st_mtime >= started - 1
