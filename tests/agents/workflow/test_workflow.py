"""Workflow, the SDK face: agents run their tasks as child runs, events stream, traces record."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from counterpoint import Agent, Task, Workflow
from counterpoint.agents.workflow.events import TaskFinished
from counterpoint.core.events import BaseEvent, Done, RunStarted
from counterpoint.runtime.tracing import SQLiteTracer
from counterpoint.runtime.tracing.models import SpanKind
from counterpoint.runtime.tracing.query import list_runs, spans_of
from counterpoint.runtime.tracing.store import TraceStore
from counterpoint.testing.scripted import ScriptedModel


def agent(name: str, answer: str, **kw: object) -> Agent:
    return Agent(name, f"You are the {name}.", model=ScriptedModel(answer, **kw), tracer=False)  # type: ignore[arg-type]


def report_workflow() -> Workflow:
    analyst = agent("analyst", "The text is about rivers.")
    writer = agent("writer", "A report on rivers.")
    return Workflow(
        [
            Task("facts", "List the facts.", analyst),
            Task("tone", "Describe the tone.", "analyst"),
            Task("report", "Merge both.", writer, needs=["facts", "tone"]),
        ],
        goal="Report on a text.",
        agents={"analyst": analyst},
        name="report",
    )


async def test_agents_run_their_tasks_as_child_runs() -> None:
    wf = report_workflow()
    events: list[BaseEvent] = []
    result = await wf.run(durable=False, tracer=events.append)  # type: ignore[arg-type]
    assert result.status == "ok"
    assert result.results == {
        "facts": "The text is about rivers.",
        "tone": "The text is about rivers.",
        "report": "A report on rivers.",
    }
    assert result.text == "A report on rivers."
    starts = [e for e in events if isinstance(e, RunStarted)]
    assert starts[0].run_id == result.run_id and starts[0].mode == "workflow"
    children = starts[1:]
    assert len(children) == 3 and {c.parent_run_id for c in children} == {result.run_id}
    started = {e.task_id: e.agent_run_id for e in events if e.kind == "task_started"}  # type: ignore[attr-defined]
    assert {c.run_id for c in children} == set(started.values())
    assert result.outcomes["report"].agent_run_id == started["report"]
    last = events[-1]
    assert isinstance(last, Done) and last.run_id == result.run_id and last.status == "ok"


async def test_the_writer_sees_upstream_results_in_its_prompt() -> None:
    writer_model = ScriptedModel("merged")
    writer = Agent("writer", model=writer_model, tracer=False)
    analyst = agent("analyst", "river facts")
    wf = Workflow(
        [Task("facts", "List facts.", analyst), Task("report", "Merge.", writer, needs=["facts"])],
        goal="G",
    )
    await wf.run(durable=False, tracer=False)
    prompt = writer_model.decoders[-1].prompt.text
    assert "Overall goal: G" in prompt and "## facts: List facts.\nriver facts" in prompt


async def test_a_failing_agent_fails_its_task_and_skips_dependents() -> None:
    broken = Agent("broken", model=ScriptedModel("x"), tracer=False, limits=None)

    async def runner_fail(task: Task, ctx: object) -> str:
        raise RuntimeError("agent exploded")

    wf = Workflow([Task("a", "x", broken), Task("b", "y", broken, needs=["a"])])
    result = await wf.run(durable=False, tracer=False, runner=runner_fail)  # type: ignore[arg-type]
    assert result.status == "failed" and "a" in (result.error or "")
    assert result.counts() == {"failed": 1, "skipped": 1}


async def test_stream_yields_events_and_closing_it_cancels_the_run() -> None:
    slow = agent("slow", "word " * 200, token_time_s=0.01)
    wf = Workflow([Task("a", "x", slow), Task("b", "y", slow, needs=["a"])])
    seen: list[str] = []
    stream = wf.stream(durable=False, tracer=False)
    async for event in stream:
        seen.append(event.kind)
        if event.kind == "token":
            break
    await stream.aclose()
    assert seen[:2] == ["run_started", "workflow_started"]
    await asyncio.sleep(0)
    assert not [x for x in asyncio.all_tasks() if x.get_name().startswith("workflow task")]


async def test_handle_cancel_ends_with_a_cancelled_done() -> None:
    slow = agent("slow", "word " * 500, token_time_s=0.01)
    wf = Workflow([Task("a", "x", slow)])
    handle = wf.start(durable=False, tracer=False)
    await asyncio.sleep(0.1)
    await handle.cancel()
    kinds = [e.kind for e in handle._history]
    assert kinds[-2:] == ["workflow_done", "done"]
    done = handle._history[-1]
    assert isinstance(done, Done) and done.status == "cancelled"
    finished = [e for e in handle._history if isinstance(e, TaskFinished)]
    assert [(e.task_id, e.status) for e in finished] == [("a", "cancelled")]


def test_run_sync_and_the_trace_holds_the_workflow_and_its_children(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    tracer = SQLiteTracer(db)
    wf = report_workflow()
    result = wf.run_sync(durable=False, tracer=tracer)
    tracer.close()
    store = TraceStore(db)
    runs = {r.id: r for r in list_runs(store, limit=10)}
    assert runs[result.run_id].mode == "workflow" and runs[result.run_id].status == "ok"
    children = list_runs(store, parent_run_id=result.run_id)
    assert len(children) == 3 and all(c.status == "ok" for c in children)
    tasks = spans_of(store, result.run_id, kind=SpanKind.WORKFLOW_TASK)
    assert sorted(s.name for s in tasks) == ["facts", "report", "tone"]
    report = next(s for s in tasks if s.name == "report")
    facts = next(s for s in tasks if s.name == "facts")
    assert report.start_s >= (facts.end_s or 0)
    assert (
        report.attributes["counterpoint.task.agent_run_id"]
        == result.outcomes["report"].agent_run_id
    )
    store.close()


def test_agent_replace_keeps_everything_else() -> None:
    a = agent("x", "hi")
    other = ScriptedModel("there")
    b = a.replace(model=other)
    assert b.model is other and b.name == a.name and b.instructions == a.instructions
    assert b.tools is a.tools
    with pytest.raises(TypeError, match="unknown field"):
        a.replace(colour="red")


PLAN = (
    '{"tasks": [{"id": "a", "objective": "Find it.", "agent": "worker", "needs": []},'
    ' {"id": "b", "objective": "Explain it.", "agent": "worker", "needs": ["a"]}]}'
)
PATCH = (
    '{"add": [{"id": "c", "objective": "Check it.", "agent": "worker", "needs": ["a"]}],'
    ' "reason": "a check helps"}'
)


async def test_a_planned_workflow_runs() -> None:
    planner = Agent("planner", model=ScriptedModel(PLAN), tracer=False)
    worker = agent("worker", "done")
    wf = await Workflow.plan("Explain tides.", {"worker": worker}, planner=planner)
    assert [(t.id, t.needs) for t in wf] == [("a", ()), ("b", ("a",))]
    result = await wf.run(durable=False, tracer=False)
    assert result.status == "ok" and result.text == "done"


async def test_refinement_applies_a_valid_patch_and_records_a_rejected_one() -> None:
    from counterpoint.agents.workflow import Planner, SchedulerConfig

    worker = agent("worker", "done")
    planner = Planner(Agent("planner", model=ScriptedModel(PATCH), tracer=False))
    wf = Workflow(
        [Task("a", "Find it.", worker), Task("b", "Explain it.", worker, needs=["a"])],
        goal="Explain tides.",
        config=SchedulerConfig(refine_every=1),
    )
    events: list[BaseEvent] = []
    result = await wf.run(
        durable=False,
        tracer=events.append,  # type: ignore[arg-type]
        refiner=planner.refiner(wf.goal),
    )
    assert result.status == "ok" and set(result.outcomes) == {"a", "b", "c"}
    applied = [e for e in events if e.kind == "patch_applied"]
    rejected = [e for e in events if e.kind == "patch_rejected"]
    assert len(applied) == 1 and applied[0].patch["reason"] == "a check helps"  # type: ignore[attr-defined]
    assert rejected and "'c'" in rejected[0].reason  # type: ignore[attr-defined]
    assert wf.version == 0  # the caller's graph is untouched; the run's copy was patched
    assert result.version == 1


async def test_a_cancelled_run_resumes_without_rerunning_finished_tasks(tmp_path: Path) -> None:
    db = tmp_path / "wf.db"
    quick = ScriptedModel("quick result")
    slow = ScriptedModel("word " * 400, token_time_s=0.01)
    fast_agent = Agent("fast", model=quick, tracer=False)
    slow_agent = Agent("slow", model=slow, tracer=False)
    tasks = [
        Task("a", "first", fast_agent),
        Task("b", "long", slow_agent, needs=["a"]),
        Task("c", "after", fast_agent, needs=["b"]),
    ]
    handle = Workflow(tasks, name="cancel-me").start(db=db, tracer=False)
    while not any(e.kind == "task_started" and e.task_id == "b" for e in handle._history):  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    await handle.cancel()
    runs_of_a = len(quick.decoders)
    assert runs_of_a == 1

    # the process "restarts": new agents on fresh models, same names
    quick2, slow2 = ScriptedModel("quick again"), ScriptedModel("slow done")
    again = Workflow(
        [
            Task("a", "first", Agent("fast", model=quick2, tracer=False)),
            Task("b", "long", Agent("slow", model=slow2, tracer=False), needs=["a"]),
            Task("c", "after", "fast", needs=["b"]),
        ],
        name="cancel-me",
    )
    result = await again.run(resume=handle.run_id, db=db, tracer=False)
    assert result.status == "ok" and result.resumed
    assert result.results == {"a": "quick result", "b": "slow done", "c": "quick again"}
    # a was not run again: quick2 served only c
    assert len(quick2.decoders) == 1 and "Your task (c)" in quick2.decoders[0].prompt.text


async def test_the_result_cache_serves_an_identical_task(tmp_path: Path) -> None:
    db = tmp_path / "wf.db"
    model = ScriptedModel("cached answer")
    worker = Agent("worker", model=model, tracer=False)
    first = await Workflow([Task("a", "same", worker)]).run(db=db, tracer=False, cache=True)
    second = await Workflow([Task("a", "same", worker)]).run(db=db, tracer=False, cache=True)
    other = await Workflow([Task("a", "different", worker)]).run(db=db, tracer=False, cache=True)
    assert first.outcomes["a"].status == "ok"
    assert second.outcomes["a"].status == "cached"
    assert second.outcomes["a"].result == "cached answer"
    assert other.outcomes["a"].status == "ok"
    assert len(model.decoders) == 2


async def test_resuming_an_unknown_run_names_it(tmp_path: Path) -> None:
    from counterpoint.agents.workflow import WorkflowError

    wf = Workflow([Task("a", "x", agent("w", "y"))])
    with pytest.raises(WorkflowError, match="no workflow run 'nope'"):
        await wf.run(resume="nope", db=tmp_path / "wf.db", tracer=False)
