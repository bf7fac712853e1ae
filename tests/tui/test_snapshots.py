"""SVG snapshots (pytest-textual-snapshot): fixed size, fixed clock, fixed events.

Regenerate after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs under ``tests/tui/__snapshots__/`` before committing them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from counterpoint.core.events import Done
from counterpoint.tui.app import CounterpointApp
from tests.tui._fixtures import fixed_events

SnapCompare = Callable[..., bool]


def _frozen() -> float:
    return 1000.0


async def _settle(pilot: Pilot[Any], app: CounterpointApp) -> None:
    """Wait until every answer segment's Markdown has mounted its blocks (they mount over later
    ticks, after ``update`` returns), so the screenshot never catches one still empty."""
    view = app.run_screen.view
    for _ in range(200):
        await pilot.pause()
        segments = [
            seg for seg in view.state.segments if seg.widget is not None and seg.shown.strip()
        ]
        if all(seg.widget is not None and seg.widget.children for seg in segments):
            break
    app.screen.set_focus(None)  # no blinking cursor in the prompt
    await pilot.pause()


def test_run_screen_parallel_calls_pending(snap_compare: SnapCompare) -> None:
    app = CounterpointApp(None, clock=_frozen)
    events = [e for e in fixed_events() if e.t < 1.0 and not isinstance(e, Done)]

    async def feed(pilot: Pilot[Any]) -> None:
        view = app.run_screen.view
        for event in events:
            view.feed(event)
        view._run_clock0 = _frozen() - 1.0  # "now" is 1.0 s into the run
        await view.flush()
        await _settle(pilot, app)

    assert snap_compare(app, terminal_size=(100, 40), run_before=feed)


def test_stored_trace(snap_compare: SnapCompare, tmp_path: Path) -> None:
    import asyncio

    from counterpoint.runtime.tracing import SQLiteTracer

    db = tmp_path / "traces.db"
    tracer = SQLiteTracer(db)
    for event in fixed_events():
        tracer.emit(event)
    tracer.close()
    _ = asyncio  # the stored run is written synchronously: no event loop needed
    app = CounterpointApp(None, db=str(db), run_id="run-fixed", clock=_frozen)
    assert snap_compare(app, terminal_size=(100, 40))


def test_run_screen_parallel_calls_resolved(snap_compare: SnapCompare) -> None:
    app = CounterpointApp(None, clock=_frozen)

    async def feed(pilot: Pilot[Any]) -> None:
        view = app.run_screen.view
        for event in fixed_events():
            view.feed(event)
        await view.flush()
        await _settle(pilot, app)

    assert snap_compare(app, terminal_size=(100, 40), run_before=feed)


def test_eval_results_table(snap_compare: SnapCompare) -> None:
    from counterpoint.evals.report import EvalReport, GroupStats, Speedup
    from counterpoint.evals.runner import CaseResult

    app = CounterpointApp(None, clock=_frozen)

    def group(mode: str, correct: int, p50: float, p95: float) -> GroupStats:
        return GroupStats(
            model="scripted-oracle",
            category="parallel",
            mode=mode,
            cases=4,
            correct=correct,
            accuracy=correct / 4,
            latency_p50_s=p50,
            latency_p95_s=p95,
            latency_mean_s=p50,
            output_tokens=400,
            protocol_tokens=120.0,
            protocol_share=0.3,
            token_limit_hits=0,
        )

    report = EvalReport(
        generated_at=0.0,
        database="evals.db",
        runs=[],
        groups=[group("sync", 4, 1.42, 1.9), group("async", 3, 0.81, 1.1)],
        speedups=[
            Speedup(
                model="scripted-oracle",
                category="parallel",
                mode="async",
                baseline="sync",
                pairs=4,
                median=1.75,
                geomean=1.7,
                pairs_both_correct=3,
                median_both_correct=1.8,
                geomean_both_correct=1.72,
            )
        ],
    )

    def case(i: int, mode: str, ok: bool, latency: float) -> CaseResult:
        return CaseResult(
            eval_run_id="eval-fixed",
            case_id=f"parallel_{i}",
            category="parallel",
            mode=mode,  # type: ignore[arg-type]
            model="scripted-oracle",
            correct=ok,
            failure_reason=None if ok else "call 2: city='Rome', expected 'Paris'",
            calls=[],
            latency_s=latency,
            input_tokens=300,
            output_tokens=50,
            protocol_tokens=15.0,
            status="ok",
            run_id=f"run-{mode}-{i}",
            wall_s=latency,
        )

    async def show(pilot: Pilot[Any]) -> None:
        await pilot.press("f4")
        await pilot.pause()
        screen = app.evals_screen
        from textual.widgets import ProgressBar

        bar = screen.query_one(ProgressBar)
        bar.show_eta = False  # the ETA reads the wall clock
        bar.update(total=8, progress=0)  # a bar without a total pulses (an animation)
        for i in range(4):
            screen.add_result(case(i, "sync", True, 1.4 + i / 10))
            screen.add_result(case(i, "async", i != 2, 0.8 + i / 10))
        screen.show_report(report)
        screen.set_focus(None)  # no blinking cursor in the form's inputs
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 40), run_before=show)
