"""The workflow screen: live runs on scripted agents, stored runs from a real traces database,
the model folded from events, a snapshot mid-run, and the CLI's bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from counterpoint.agents.workflow import (
    TaskFinished,
    TaskReady,
    TaskStarted,
    Workflow,
    WorkflowStarted,
)
from counterpoint.agents.workflow.loading import workflow_from_dict
from counterpoint.cli import main
from counterpoint.core.events import KVReuse, RunStarted, TokenEvent
from counterpoint.runtime.tracing import SQLiteTracer
from counterpoint.tui.app import CounterpointApp
from counterpoint.tui.traces_screen import RunDetailScreen
from counterpoint.tui.workflow_model import WorkflowModel
from counterpoint.tui.workflow_screen import TaskRunScreen, WorkflowScreen
from tests.agents.workflow._cli_models import fast, stalled

SnapCompare = Callable[..., bool]

DIAMOND: dict[str, Any] = {
    "name": "diamond",
    "goal": "Compare two options.",
    "agents": {"analyst": "You analyse.", "writer": "You write."},
    "tasks": [
        {"id": "gather", "objective": "Gather the facts.", "agent": "analyst"},
        {"id": "pros", "objective": "List the pros.", "agent": "analyst", "needs": ["gather"]},
        {"id": "cons", "objective": "List the cons.", "agent": "analyst", "needs": ["gather"]},
        {
            "id": "summary",
            "objective": "Write the summary.",
            "agent": "writer",
            "needs": ["pros", "cons"],
        },
    ],
}


def _workflow(model: Any, **changes: Any) -> Workflow:
    return workflow_from_dict({**DIAMOND, **changes}, model=model)


def _frozen() -> float:
    return 1000.0


async def test_model_folds_a_real_run() -> None:
    wf = _workflow(fast())
    model = WorkflowModel()
    async for event in wf.stream(durable=False, tracer=False):
        model.apply(event)
    assert model.status == "ok" and model.name == "diamond"
    assert model.order() == ["gather", "pros", "cons", "summary"]
    assert model.layer_of() == {"gather": 0, "pros": 1, "cons": 1, "summary": 2}
    assert {t.status for t in model.tasks.values()} == {"ok"}
    assert model.tasks["pros"].result == "result of pros"
    for task in model.tasks.values():
        assert task.agent_run_id is not None
        assert model.task_of_run(task.agent_run_id) == task.id
        events = model.agent_events[task.agent_run_id]
        assert events[0].kind == "run_started" and events[-1].kind == "done"
    assert model.finished() == 4 and model.running() == 0


def test_model_kv_badge_comes_from_the_agent_runs_event() -> None:
    model = WorkflowModel()
    model.apply(
        RunStarted(run_id="w", t=0, name="wf", model="", mode="workflow", prompt="g", wall_time=0)
    )
    model.apply(
        WorkflowStarted(run_id="w", t=0.0, name="wf", goal="g", tasks=[{"id": "a", "needs": []}])
    )
    model.apply(TaskStarted(run_id="w", t=0.1, task_id="a", agent="x", agent_run_id="r1"))
    assert model.tasks["a"].kv_badge() == ""
    changed = model.apply(
        KVReuse(
            run_id="r1",
            t=0.0,
            policy="anchors",
            mode="reuse",
            prompt_tokens=200,
            reused_tokens=150,
            computed_tokens=50,
            ttft_s=0.1,
        )
    )
    assert changed and model.tasks["a"].kv_badge() == "KV 150/200"
    # another run's event is its transcript, not the workflow's
    model.apply(TokenEvent(run_id="r1", t=0.2, text="hi", token_id=1, index=0))
    assert [e.kind for e in model.agent_events["r1"]] == ["kv_reuse", "token"]
    assert model.last_t == pytest.approx(0.1)


async def test_live_run_open_a_task_and_back() -> None:
    app = CounterpointApp(None, workflow=_workflow(fast()), clock=_frozen)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WorkflowScreen)
        table = screen.query_one("#wf-tasks", DataTable)
        assert table.row_count == 4  # the graph shows before it runs
        await pilot.press("ctrl+r")
        for _ in range(100):
            await pilot.pause(0.02)
            if screen.handle is not None and screen.handle.done:
                break
        await screen.wait_run()
        await pilot.pause()
        model = screen.view.model
        assert model.status == "ok", model.error
        lanes = screen.view.timeline.model.lanes
        assert {f"task:{t}" for t in ("gather", "pros", "cons", "summary")} <= set(lanes)
        assert "decode" not in lanes  # a workflow has no decode stream of its own
        assert [i.status for i in lanes["task:summary"].intervals] == ["ok"]
        status_cells = [str(table.get_cell(tid, "status")) for tid in model.order()]
        assert all("ok" in cell for cell in status_cells), status_cells
        assert "4/4 done" in str(screen.view.status_bar.render())
        table.focus()
        table.move_cursor(row=3)
        await pilot.press("enter")
        await pilot.pause()
        task_screen = app.screen
        assert isinstance(task_screen, TaskRunScreen)
        assert task_screen.task_view.id == "summary"
        assert task_screen.view.state.status == "ok"
        assert "result of summary" in task_screen.view.state.text
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_cancel_a_running_workflow() -> None:
    slow_task = {"id": "slow_one", "objective": "Wait.", "agent": "writer"}
    wf = _workflow(stalled(), tasks=[*DIAMOND["tasks"], slow_task])
    app = CounterpointApp(None, workflow=wf, clock=_frozen)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = app.workflow_screen
        await pilot.press("ctrl+r")
        for _ in range(200):
            await pilot.pause(0.02)
            if screen.view.model.tasks.get("slow_one") and (
                screen.view.model.tasks["slow_one"].status == "running"
                and screen.view.model.tasks["summary"].status == "ok"
            ):
                break
        assert screen.running
        await pilot.press("escape")
        for _ in range(100):
            await pilot.pause(0.02)
            if not screen.running:
                break
        await screen.wait_run()
        await pilot.pause()
        model = screen.view.model
        assert model.status == "cancelled"
        assert model.tasks["summary"].status == "ok"  # finished work stays
        assert model.tasks["slow_one"].status == "cancelled"


async def test_a_task_that_has_not_started_says_so() -> None:
    app = CounterpointApp(None, workflow=_workflow(fast()), clock=_frozen)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.pause()
        screen = app.workflow_screen
        screen.open_task("gather")
        await pilot.pause()
        assert app.screen is screen
        assert any("not started" in n.message for n in app._notifications)


async def test_no_workflow_says_how_to_give_one() -> None:
    app = CounterpointApp(None, clock=_frozen)
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, WorkflowScreen)
        assert "--workflow FILE" in str(app.screen.view.header.render())
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen.handle is None


async def test_stored_run_replays_and_opens_an_agent_run(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    tracer = SQLiteTracer(db)
    try:
        result = await _workflow(fast()).run(db=str(db), tracer=tracer)
    finally:
        tracer.close()
    assert result.status == "ok"
    app = CounterpointApp(None, db=str(db), run_id=result.run_id, clock=_frozen)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WorkflowScreen) and screen.stored is not None
        model = screen.view.model
        assert model.run_id == result.run_id and model.status == "ok"
        assert [model.tasks[t].status for t in model.order()] == ["ok"] * 4
        lanes = screen.view.timeline.model.lanes
        assert {f"task:{t}" for t in ("gather", "pros", "cons", "summary")} <= set(lanes)
        agent_run = model.tasks["cons"].agent_run_id
        assert agent_run is not None
        screen.open_task("cons")
        await pilot.pause()
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run.id == agent_run
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen  # back to the traces list


def test_snapshot_workflow_mid_run(snap_compare: SnapCompare) -> None:
    app = CounterpointApp(None, clock=_frozen)
    tasks = _workflow(fast()).to_dicts()
    w = "wf-snap"
    events = [
        RunStarted(
            run_id=w, t=0, name="diamond", model="", mode="workflow", prompt="Compare.", wall_time=0
        ),
        WorkflowStarted(run_id=w, t=0.0, name="diamond", goal="Compare two options.", tasks=tasks),
        TaskReady(run_id=w, t=0.0, task_id="gather", priority=3),
        TaskStarted(run_id=w, t=0.01, task_id="gather", agent="analyst", agent_run_id="r-g"),
        TaskFinished(
            run_id=w,
            t=1.2,
            task_id="gather",
            status="ok",
            result="Three facts.",
            attempts=1,
            started=0.01,
            duration_s=1.19,
            agent_run_id="r-g",
        ),
        TaskStarted(run_id=w, t=1.21, task_id="pros", agent="analyst", agent_run_id="r-p"),
        TaskStarted(run_id=w, t=1.22, task_id="cons", agent="analyst", agent_run_id="r-c"),
        KVReuse(
            run_id="r-p",
            t=0.0,
            policy="anchors",
            mode="reuse",
            prompt_tokens=259,
            reused_tokens=180,
            computed_tokens=79,
            ttft_s=0.2,
        ),
    ]

    async def feed(pilot: Pilot[Any]) -> None:
        await pilot.press("f5")
        await pilot.pause()
        view = app.workflow_screen.view
        for event in events:
            view.feed(event)
        view._clock0 = _frozen() - 2.0  # "now" is 2.0 s into the run
        view.flush()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 34), run_before=feed)


def test_missing_workflow_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tui", "--workflow", str(tmp_path / "nope.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.yaml" in err


def test_bad_workflow_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "agents: {x: Do.}\ntasks:\n  - id: a\n    objective: A.\n    needs: [zzz]\n",
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["tui", "--workflow", str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "zzz" in err
