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
