"""The dispatch-when-ready scheduler: order, bounds, timeouts, retries, failure policies,
cancellation, resume and refinement (fake runners; no model)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.agents.agent import Agent
from counterpoint.agents.workflow.context import TaskContext
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.outcome import TaskOutcome
from counterpoint.agents.workflow.scheduler import (
    Refinement,
    RetryPolicy,
    Scheduler,
    SchedulerConfig,
)
from counterpoint.core.bus import EventBus
from counterpoint.core.events import BaseEvent
from counterpoint.errors import ConfigError
from counterpoint.testing.scripted import ScriptedModel

A = Agent("a", model=ScriptedModel(["x"]), tracer=False)
B = Agent("b", model=ScriptedModel(["x"]), tracer=False)
FAST = RetryPolicy(max_attempts=1)


def t(tid: str, *needs: str, agent: Agent = A, **kw: Any) -> Task:
    return Task(tid, f"objective of {tid}", agent, needs=needs, **kw)


class Recorder:
    """A runner that sleeps per task, records starts/ends in order and what it was told."""

    def __init__(self, delays: dict[str, float] | None = None, default: float = 0.0) -> None:
        self.delays = delays or {}
        self.default = default
        self.log: list[tuple[str, str]] = []
        self.contexts: dict[str, TaskContext] = {}
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}
        self.cancelled: list[str] = []

    async def __call__(self, task: Task, ctx: TaskContext) -> str:
        self.log.append(("start", task.id))
        self.contexts[task.id] = ctx
        agent = task.agent_name
        self.active[agent] = self.active.get(agent, 0) + 1
        self.max_active[agent] = max(self.max_active.get(agent, 0), self.active[agent])
        try:
            await asyncio.sleep(self.delays.get(task.id, self.default))
        except asyncio.CancelledError:
            self.cancelled.append(task.id)
            raise
        finally:
            self.active[agent] -= 1
        self.log.append(("end", task.id))
        return f"result of {task.id}"

    def starts(self) -> list[str]:
        return [tid for what, tid in self.log if what == "start"]


def scheduler(graph: Graph, runner: Any, **kw: Any) -> tuple[Scheduler, list[BaseEvent]]:
    bus = EventBus()
    events: list[BaseEvent] = []
    bus.subscribe(events.append)
    config = kw.pop("config", SchedulerConfig(retry=FAST))
    return Scheduler(graph, runner, run_id="wf", config=config, bus=bus, **kw), events


def kinds(events: list[BaseEvent], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


async def test_a_task_starts_when_its_last_prerequisite_finishes_not_a_superstep_later() -> None:
    # fast -> after_fast; slow is a sibling in the same "superstep"
    g = Graph([t("fast"), t("slow"), t("after_fast", "fast")])
    runner = Recorder({"fast": 0.01, "slow": 0.3, "after_fast": 0.01})
    s, _ = scheduler(g, runner)
    out = await s.run()
    assert all(o.status == "ok" for o in out.values())
    log = runner.log
    assert log.index(("start", "after_fast")) < log.index(("end", "slow"))


async def test_the_ready_set_is_ordered_by_longest_remaining_path() -> None:
    # leaf is ready first in insertion order, but head starts a chain of three
    g = Graph([t("leaf"), t("head"), t("mid", "head"), t("tail", "mid")])
    runner = Recorder()
    s, events = scheduler(g, runner, config=SchedulerConfig(max_concurrency=1, retry=FAST))
    await s.run()
    # ties (tail and leaf both have 1 left) go in the graph's order
    assert runner.starts() == ["head", "mid", "leaf", "tail"]
    ready = {e.task_id: e.priority for e in kinds(events, "task_ready")}
    assert ready["head"] == 3.0 and ready["leaf"] == 1.0


async def test_global_and_per_agent_concurrency_bounds() -> None:
    tasks = [t(f"a{i}") for i in range(6)] + [t(f"b{i}", agent=B) for i in range(6)]
    runner = Recorder(default=0.01)
    config = SchedulerConfig(max_concurrency=3, limits={"a": 1}, retry=FAST)
    s, _ = scheduler(Graph(tasks), runner, config=config)
    out = await s.run()
    assert len(out) == 12 and all(o.status == "ok" for o in out.values())
    assert runner.max_active["a"] == 1
    assert runner.max_active["b"] <= 3


async def test_a_per_model_bound_spans_agents_that_share_the_model() -> None:
    shared = ScriptedModel(["x"], name="shared-model")
    one = Agent("one", model=shared, tracer=False)
    two = Agent("two", model=shared, tracer=False)
    assert one.model_key == "shared-model"
    tasks = [t(f"p{i}", agent=one) for i in range(4)] + [t(f"q{i}", agent=two) for i in range(4)]
    active = 0
    peak = 0

    async def runner(task: Task, ctx: TaskContext) -> str:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005)
        active -= 1
        return ""

    config = SchedulerConfig(limits={"model:shared-model": 2}, retry=FAST)
    s, _ = scheduler(Graph(tasks), runner, config=config)
    out = await s.run()
    assert all(o.status == "ok" for o in out.values()) and peak == 2


async def test_a_task_that_hangs_times_out_and_is_retried_then_fails() -> None:
    calls: list[int] = []

    async def hang(task: Task, ctx: TaskContext) -> str:
        calls.append(ctx.attempt)
        await asyncio.sleep(10)
        return ""

    retry = RetryPolicy(max_attempts=2, backoff_s=0.0)
    config = SchedulerConfig(timeout_s=0.05, retry=retry)
    s, events = scheduler(Graph([t("h"), t("after", "h")]), hang, config=config)
    out = await s.run()
    assert out["h"].status == "failed" and "timed out after 0.05 s" in (out["h"].error or "")
    assert out["h"].attempts == 2 and calls == [1, 2]
    assert out["after"].status == "skipped" and "'h'" in (out["after"].error or "")
    assert [e.attempt for e in kinds(events, "task_retry")] == [1]


async def test_retries_back_off_and_tell_the_agent_the_previous_error() -> None:
    errors: list[str | None] = []

    async def flaky(task: Task, ctx: TaskContext) -> str:
        errors.append(ctx.error)
        if ctx.attempt < 3:
            raise RuntimeError(f"boom {ctx.attempt}")
        return "fine"

    retry = RetryPolicy(max_attempts=3, backoff_s=0.01, multiplier=3.0)
    s, events = scheduler(Graph([t("f")]), flaky, config=SchedulerConfig(retry=retry))
    out = await s.run()
    assert out["f"].status == "ok" and out["f"].result == "fine" and out["f"].attempts == 3
    assert errors == [None, "RuntimeError: boom 1", "RuntimeError: boom 2"]
    delays = [e.delay_s for e in kinds(events, "task_retry")]
    assert delays == pytest.approx([0.01, 0.03])


async def test_the_retry_budget_bounds_the_whole_workflow() -> None:
    async def fail(task: Task, ctx: TaskContext) -> str:
        raise ValueError("no")

    retry = RetryPolicy(max_attempts=5, backoff_s=0.0, budget=1)
    s, _ = scheduler(Graph([t("x"), t("y")]), fail, config=SchedulerConfig(retry=retry))
    out = await s.run()
    assert sorted(o.attempts for o in out.values()) == [1, 2]
    assert s.retries_used == 1
    assert any("budget" in (o.error or "") for o in out.values())


async def test_skip_policy_skips_dependents_and_runs_the_rest() -> None:
    async def runner(task: Task, ctx: TaskContext) -> str:
        if task.id == "bad":
            raise RuntimeError("broken")
        return task.id

    g = Graph([t("bad"), t("child", "bad"), t("grandchild", "child"), t("other")])
    s, _ = scheduler(g, runner)
    out = await s.run()
    assert {k: o.status for k, o in out.items()} == {
        "bad": "failed",
        "child": "skipped",
        "grandchild": "skipped",
        "other": "ok",
    }
    assert out["bad"].error == "RuntimeError: broken"


async def test_fail_policy_cancels_running_tasks_and_leaves_no_orphan() -> None:
    runner = Recorder({"slow": 5.0})

    async def run(task: Task, ctx: TaskContext) -> str:
        if task.id == "bad":
            await asyncio.sleep(0.02)
            raise RuntimeError("broken")
        return await runner(task, ctx)

    g = Graph([t("slow"), t("bad"), t("later", "slow")])
    config = SchedulerConfig(on_failure="fail", retry=FAST)
    s, _ = scheduler(g, run, config=config)
    out = await asyncio.wait_for(s.run(), 3)
    assert out["bad"].status == "failed" and out["slow"].status == "cancelled"
    assert out["later"].status == "cancelled"
    assert runner.cancelled == ["slow"]
    assert s.error and "broken" in s.error
    assert not [x for x in asyncio.all_tasks() if x.get_name().startswith("workflow task")]


async def test_cancelling_the_run_cancels_every_running_task() -> None:
    runner = Recorder({"a": 5.0, "b": 5.0})
    s, events = scheduler(Graph([t("a"), t("b"), t("c", "a")]), runner)
    job = asyncio.create_task(s.run())
    await asyncio.sleep(0.05)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert sorted(runner.cancelled) == ["a", "b"]
    assert {o.status for o in s.outcomes.values()} == {"cancelled"}
    assert not [x for x in asyncio.all_tasks() if x.get_name().startswith("workflow task")]
    assert {e.task_id for e in kinds(events, "task_finished")} == {"a", "b", "c"}


async def test_finished_tasks_of_a_resume_do_not_run_and_feed_their_dependents() -> None:
    done = {"a": TaskOutcome("a", "ok", "stored a", attempts=1, started=0.0, ended=1.0)}
    runner = Recorder()
    s, _ = scheduler(Graph([t("a"), t("b", "a")]), runner, done=done)
    out = await s.run()
    assert runner.starts() == ["b"]
    assert out["a"].result == "stored a"
    assert runner.contexts["b"].upstream[0][1] == "stored a"


async def test_the_context_carries_goal_upstream_and_downstream() -> None:
    runner = Recorder()
    g = Graph([t("a"), t("b", "a", output_format="one line"), t("c", "b")])
    s, _ = scheduler(g, runner, goal="write a report")
    await s.run()
    prompt = runner.contexts["b"].prompt()
    assert "Overall goal: write a report" in prompt
    assert "Your task (b): objective of b" in prompt
    assert "Output format: one line" in prompt
    assert "## a: objective of a\nresult of a" in prompt
    assert "- c: objective of c" in prompt
    contents = [seg for seg in runner.contexts["b"].segments().segments if seg.kind == "content"]
    assert [seg.key for seg in contents] == ["workflow:wf:task:a"]


async def test_a_refinement_patch_adds_work_and_a_bad_one_is_rejected() -> None:
    proposals: list[Callable[[Refinement], Graph]] = []

    def add_summary(view: Refinement) -> Graph:
        g = view.graph.copy()
        g.add(t("summary", "a"))
        return g

    def change_done(view: Refinement) -> Graph:
        g = view.graph.copy()
        g.replace(Task("a", "a different objective", A))
        return g

    def broken(view: Refinement) -> Graph:
        raise WorkflowError("the planner wrote garbage")

    proposals.extend([add_summary, change_done, broken])
    seen: list[frozenset[str]] = []

    async def refiner(view: Refinement) -> Graph | None:
        seen.append(view.frozen)
        if not proposals:
            return None
        return proposals.pop(0)(view)

    runner = Recorder({"b": 0.05, "c": 0.1})
    g = Graph([t("a"), t("b"), t("c")])
    config = SchedulerConfig(refine_every=1, retry=FAST)
    s, events = scheduler(g, runner, config=config, refiner=refiner)
    out = await s.run()
    assert out["summary"].status == "ok"
    applied = kinds(events, "patch_applied")
    rejected = kinds(events, "patch_rejected")
    assert len(applied) == 1 and applied[0].version == g.version + 1
    assert [x["id"] for x in applied[0].tasks] == ["a", "b", "c", "summary"]
    reasons = [r.reason for r in rejected]
    assert any("changes task 'a'" in r for r in reasons)
    assert any("garbage" in r for r in reasons)
    assert "a" in seen[0]


def test_config_errors_say_what_to_fix() -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        SchedulerConfig(max_concurrency=0)
    with pytest.raises(ConfigError, match="limits"):
        SchedulerConfig(limits={"a": 0})
    with pytest.raises(ConfigError, match="on_failure"):
        SchedulerConfig(on_failure="explode")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# -- properties on random DAGs ------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[Graph, dict[str, float]]:
    n = draw(st.integers(1, 25))
    tasks = []
    delays: dict[str, float] = {}
    for i in range(n):
        needs = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        tasks.append(t(f"n{i}", *[f"n{j}" for j in needs]))
        delays[f"n{i}"] = draw(st.sampled_from([0.0, 0.0, 0.001, 0.003]))
    return Graph(tasks), delays


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.sampled_from([None, 1, 2, 4]))
def test_every_task_runs_once_after_its_prerequisites(
    case: tuple[Graph, dict[str, float]], limit: int | None
) -> None:
    graph, delays = case
    runner = Recorder(delays)
    config = SchedulerConfig(max_concurrency=limit, retry=FAST)
    s, _ = scheduler(graph, runner, config=config)
    out = asyncio.run(s.run())
    starts = runner.starts()
    assert sorted(starts) == sorted(graph.tasks) and len(set(starts)) == len(starts)
    assert all(o.status == "ok" for o in out.values())
    ended_at = {tid: i for i, (what, tid) in enumerate(runner.log) if what == "end"}
    started_at = {tid: i for i, (what, tid) in enumerate(runner.log) if what == "start"}
    for task in graph:
        for need in task.needs:
            assert ended_at[need] < started_at[task.id]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_with_one_slot_the_highest_priority_ready_task_goes_first(
    case: tuple[Graph, dict[str, float]],
) -> None:
    graph, _ = case
    priority = graph.remaining_path()
    order: list[str] = []
    done: set[str] = set()

    async def runner(task: Task, ctx: TaskContext) -> str:
        ready = [
            x.id
            for x in graph
            if x.id not in done and x.id not in order and all(n in done for n in x.needs)
        ]
        assert all(priority[task.id] >= priority[r] for r in ready), (task.id, ready)
        order.append(task.id)
        await asyncio.sleep(0)
        done.add(task.id)
        return ""

    s, _ = scheduler(graph, runner, config=SchedulerConfig(max_concurrency=1, retry=FAST))
    asyncio.run(s.run())
    assert sorted(order) == sorted(graph.tasks)
