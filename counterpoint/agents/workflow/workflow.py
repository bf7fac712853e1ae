"""``Workflow``: an AOV graph of agent tasks you can run, stream, resume and refine.

Example::

    from counterpoint import Agent, Task, Workflow

    analyst = Agent("analyst", "You summarise one aspect of a text.")
    writer = Agent("writer", "You merge summaries into one report.")
    wf = Workflow(
        [
            Task("facts", "List the facts in the text.", analyst),
            Task("tone", "Describe the text's tone.", analyst),
            Task("report", "Merge the two summaries.", writer, needs=["facts", "tone"]),
        ],
        goal="A short report on the text.",
    )
    result = await wf.run()          # or wf.run_sync(), or: async for event in wf.stream(): ...
    print(result.results["report"])

A run is durable by default: each task's result and its done mark are committed to the traces
database in one transaction before any dependent starts, and ``await wf.run(resume=RUN_ID)``
(``counterpoint workflow resume RUN_ID``) continues a crashed or cancelled run without running a
finished task again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from counterpoint.agents.agent import Agent
from counterpoint.agents.workflow.context import TaskContext, result_key
from counterpoint.agents.workflow.events import WorkflowDone, WorkflowStarted
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.outcome import TaskOutcome
from counterpoint.agents.workflow.scheduler import (
    Refiner,
    Scheduler,
    SchedulerConfig,
    TaskRunner,
)
from counterpoint.core.bus import EventBus
from counterpoint.core.events import BaseEvent, Done, EventSink, RunStarted
from counterpoint.runtime.backends.base import Model

if TYPE_CHECKING:
    from counterpoint.agents.workflow.planner import Planner
    from counterpoint.agents.workflow.store import WorkflowStore

__all__ = ["Workflow", "WorkflowHandle", "WorkflowResult", "run_agent_task"]

WorkflowStatus = Literal["ok", "failed", "cancelled"]


@dataclass(frozen=True)
class WorkflowResult:
    """What a workflow run came to: each task's outcome, and the run's status."""

    run_id: str
    status: WorkflowStatus
    outcomes: dict[str, TaskOutcome]
    duration_s: float
    error: str | None = None
    version: int = 0
    resumed: bool = False
    sinks: tuple[str, ...] = field(default=())

    @property
    def results(self) -> dict[str, str]:
        """The result of every task that has one."""
        return {tid: o.result for tid, o in self.outcomes.items() if o.result is not None}

    @property
    def text(self) -> str:
        """The results of the final tasks (those nothing needs), in the graph's order."""
        results = self.results
        return "\n\n".join(results[t] for t in self.sinks if t in results)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes.values():
            out[o.status] = out.get(o.status, 0) + 1
        return out


async def run_agent_task(task: Task, context: TaskContext, agent: Agent) -> str:
    """The default task runner: ``agent`` runs the task's prompt as a child run of the workflow.

    A run that ends in an error (or is cancelled) fails the attempt, and so does one that hit
    its token limit before writing anything; an answer cut short by the agent's ``max_tokens``
    is its result, as the caller asked.
    """
    result = await agent.run(
        context.prompt(),
        run_id=context.agent_run_id or None,
        parent_run_id=context.workflow_run_id,
        bus=context.bus,
    )
    if result.status != "ok" and not (result.status == "limit" and result.text.strip()):
        raise WorkflowError(
            f"agent {agent.name!r} ended {result.status}: {result.error or 'no answer'}",
            ids=[task.id],
        )
    return result.text


class Workflow(Graph):
    """An AOV graph of tasks, each run by an agent (see the module doc).

    Args:
        tasks: the tasks (each names its ``needs``).
        goal: the overall goal, told to every task.
        agents: agents by name, for tasks that name theirs.
        name: a name for traces.
        config: scheduling (concurrency, timeouts, retries, failure policy, refinement).
    """

    def __init__(
        self,
        tasks: Iterable[Task] = (),
        *,
        goal: str = "",
        agents: Mapping[str, Agent] | None = None,
        name: str = "workflow",
        config: SchedulerConfig | None = None,
        source: str | None = None,
        spec: Mapping[str, Any] | None = None,
    ) -> None:
        tasks = list(tasks)
        named = dict(agents or {})
        for t in tasks:  # agents given as objects are known by name too (resume, patches)
            if isinstance(t.agent, Agent):
                named.setdefault(t.agent.name, t.agent)
        super().__init__(tasks, agents=named, source=source)
        self.goal = goal
        self.name = name
        self.config = config or SchedulerConfig()
        self.spec: dict[str, Any] = dict(spec or {})
        """How it was declared (a file's agents and settings), stored so a resume rebuilds it."""

    # -- running ---------------------------------------------------------------------------------

    async def run(
        self,
        *,
        resume: str | None = None,
        run_id: str | None = None,
        db: str | os.PathLike[str] | WorkflowStore | None = None,
        durable: bool = True,
        tracer: EventSink | bool = True,
        bus: EventBus | None = None,
        runner: TaskRunner | None = None,
        refiner: Refiner | None = None,
        cache: bool = False,
        kv_reuse: str | None = None,
    ) -> WorkflowResult:
        """Run the workflow to the end and return its result.

        Args:
            resume: the id of an earlier run of this workflow to continue (its stored graph,
                patches included, and its finished results are used; nothing finished reruns).
            run_id: the id of a new run (default: a fresh one).
            db: the traces database (path, or a :class:`WorkflowStore`); None: the default.
            durable: commit each outcome to ``db`` (required to ``resume`` later).
            tracer: True for the default SQLite tracer on the run's bus, False for none, or any
                EventSink (it receives the workflow's events and its agents').
            bus: publish on this bus instead of a new one (its subscribers are the caller's).
            runner: how a task runs (default: its agent runs its prompt).
            refiner: asked for a patched graph every ``config.refine_every`` completions (e.g.
                ``Planner.refiner(goal)``).
            cache: reuse the stored result of an identical earlier task (same objective, agent,
                output format and upstream results), opt-in.
            kv_reuse: a ``runtime/kv`` policy (``"anchors"``, ``"shift"``, ``"prefix"``,
                ``"dense"``) for agents on the local transformers backend: upstream results
                included in several prompts are reused as KV segments.
        """
        handle = self.start(
            resume=resume,
            run_id=run_id,
            db=db,
            durable=durable,
            tracer=tracer,
            bus=bus,
            runner=runner,
            refiner=refiner,
            cache=cache,
            kv_reuse=kv_reuse,
        )
        return await handle.result()

    def start(self, **options: Any) -> WorkflowHandle:
        """Start a run in the background (call from a running loop); see :meth:`run`."""
        return WorkflowHandle(self, **options)

    async def stream(self, **options: Any) -> AsyncIterator[BaseEvent]:
        """Run the workflow and yield every event of it and its agents, ending with its
        ``done``. Closing the iterator early cancels the run."""
        handle = self.start(**options)
        try:
            async for event in handle:
                yield event
            await handle.result()
        finally:
            await handle.cancel()

    def run_sync(self, **options: Any) -> WorkflowResult:
        """:meth:`run` for scripts: runs its own event loop."""
        return asyncio.run(self.run(**options))

    # -- construction helpers --------------------------------------------------------------------

    @classmethod
    async def plan(
        cls,
        goal: str,
        agents: Mapping[str, Agent],
        *,
        planner: Agent | Planner,
        name: str = "workflow",
        config: SchedulerConfig | None = None,
    ) -> Workflow:
        """A workflow for ``goal`` that ``planner`` proposes (K candidate graphs as JSON,
        validated, re-asked on errors, the best chosen by parallelism and dependency
        complexity; see :class:`~counterpoint.agents.workflow.planner.Planner`)."""
        from counterpoint.agents.workflow.planner import Planner

        chosen = planner if isinstance(planner, Planner) else Planner(planner)
        plan = await chosen.plan(goal, agents)
        return cls(plan.graph, goal=goal, agents=agents, name=name, config=config)

    def rebuilt(self, tasks: list[dict[str, Any]], version: int) -> Workflow:
        """This workflow's agents and settings with a stored task list (a resume, a patch)."""
        twin = Workflow(
            [_task_from_dict(d) for d in tasks],
            goal=self.goal,
            agents=self.agents,
            name=self.name,
            config=self.config,
            source=self.source,
            spec=self.spec,
        )
        twin.version = version
        return twin


def _task_from_dict(d: Mapping[str, Any]) -> Task:
    return Task(
        id=str(d["id"]),
        objective=str(d.get("objective", "")),
        agent=str(d.get("agent") or "") or None,
        needs=tuple(d.get("needs") or ()),
        output_format=d.get("output_format"),
        timeout_s=d.get("timeout_s"),
        max_attempts=d.get("max_attempts"),
    )


@dataclass(frozen=True)
class _Options:
    db: str | os.PathLike[str] | WorkflowStore | None
    durable: bool
    runner: TaskRunner | None
    refiner: Refiner | None
    cache: bool
    kv_reuse: str | None


class WorkflowHandle:
    """A workflow run going on in the background (see :meth:`Workflow.start`).

    Iterate it for the run's events (from the start, ending with the workflow's ``done``),
    ``await handle.result()`` (or the handle) for its :class:`WorkflowResult`, ``cancel()`` to
    stop it (every running task is cancelled; finished results stay committed).
    """

    def __init__(
        self,
        workflow: Workflow,
        *,
        resume: str | None = None,
        run_id: str | None = None,
        db: str | os.PathLike[str] | WorkflowStore | None = None,
        durable: bool = True,
        tracer: EventSink | bool = True,
        bus: EventBus | None = None,
        runner: TaskRunner | None = None,
        refiner: Refiner | None = None,
        cache: bool = False,
        kv_reuse: str | None = None,
    ) -> None:
        if resume is not None and not durable:
            raise WorkflowError("resume needs a durable run: drop durable=False")
        self.workflow = workflow
        self.run_id = resume or run_id or uuid.uuid4().hex
        self.resumed = resume is not None
        self.bus = bus or EventBus()
        self._own_sinks: list[Any] = []
        if bus is None:
            for sink in _sinks(tracer):
                self._own_sinks.append(self.bus.subscribe(sink, name="tracer"))
        self._history: list[BaseEvent] = []
        self._listeners: list[asyncio.Queue[BaseEvent | None]] = []
        self.bus.subscribe(self._record, name="workflow handle")
        self._options = _Options(db, durable, runner, refiner, cache, kv_reuse)
        self.scheduler: Scheduler | None = None
        self._task = asyncio.get_running_loop().create_task(self._main())
        self._task.add_done_callback(self._ended)

    # -- public ----------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._task.done()

    async def result(self) -> WorkflowResult:
        return await asyncio.shield(self._task)

    def __await__(self) -> Any:
        return self.result().__await__()

    async def cancel(self) -> None:
        """Cancel the run and every running task; returns once all have stopped. Idempotent."""
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    def __aiter__(self) -> AsyncIterator[BaseEvent]:
        return self._events()

    # -- the run ---------------------------------------------------------------------------------

    async def _main(self) -> WorkflowResult:
        wf = self.workflow
        options = self._options
        t0 = time.perf_counter()

        def clock() -> float:
            return time.perf_counter() - t0

        store = await asyncio.to_thread(_open_store, options.db) if options.durable else None
        done: dict[str, TaskOutcome] = {}
        graph: Workflow = wf
        if store is not None and self.resumed:
            stored = await asyncio.to_thread(store.load_run, self.run_id)
            self.run_id = stored.run_id
            graph = wf.rebuilt(stored.graph, stored.version)
            done = stored.finished()
            await asyncio.to_thread(store.mark_resumed, self.run_id)
        elif store is not None:
            await asyncio.to_thread(
                store.create_run,
                self.run_id,
                name=wf.name,
                goal=wf.goal,
                graph=wf.to_dicts(),
                version=wf.version,
                source=wf.source,
                config={"spec": wf.spec},
            )
        publish = self.bus.publish
        publish(
            RunStarted(
                run_id=self.run_id,
                t=0.0,
                name=wf.name,
                model="",
                mode="workflow",
                prompt=wf.goal,
                wall_time=time.time(),
            )
        )
        publish(
            WorkflowStarted(
                run_id=self.run_id,
                t=clock(),
                name=wf.name,
                goal=wf.goal,
                tasks=graph.to_dicts(),
                version=graph.version,
                resumed=self.resumed,
                done=sorted(done),
            )
        )
        runner = options.runner or _agent_runner(graph, options.kv_reuse)
        scheduler = Scheduler(
            graph,
            runner,
            run_id=self.run_id,
            goal=wf.goal,
            config=wf.config,
            bus=self.bus,
            clock=clock,
            done=done,
            checkpoint=_StoreCheckpoint(store, self.run_id) if store is not None else None,
            refiner=options.refiner,
            cache=_StoreCache(store, self.run_id) if store and options.cache else None,
        )
        self.scheduler = scheduler
        status: WorkflowStatus = "ok"
        error: str | None = None
        try:
            outcomes = await scheduler.run()
        except asyncio.CancelledError:
            status, error = "cancelled", "the workflow was cancelled"
            outcomes = dict(scheduler.outcomes)
            self._close(store, scheduler, status, error, clock())
            raise
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            outcomes = dict(scheduler.outcomes)
            self._close(store, scheduler, status, error, clock())
            raise
        if scheduler.error is not None:
            status, error = "failed", scheduler.error
        elif any(o.status != "ok" and o.status != "cached" for o in outcomes.values()):
            status = "failed"
            failed = [t for t, o in outcomes.items() if o.status == "failed"]
            error = f"task(s) {', '.join(failed)} failed" if failed else "not every task ran"
        result = WorkflowResult(
            run_id=self.run_id,
            status=status,
            outcomes=outcomes,
            duration_s=clock(),
            error=error,
            version=scheduler.graph.version,
            resumed=self.resumed,
            sinks=tuple(scheduler.graph.sinks()),
        )
        await asyncio.to_thread(self._finish_store, store, status)
        self._publish_done(scheduler, status, error, clock(), result.text)
        return result

    def _close(
        self,
        store: WorkflowStore | None,
        scheduler: Scheduler,
        status: WorkflowStatus,
        error: str | None,
        now: float,
    ) -> None:
        with contextlib.suppress(Exception):
            self._finish_store(store, status)
        self._publish_done(scheduler, status, error, now, "")

    def _finish_store(self, store: WorkflowStore | None, status: WorkflowStatus) -> None:
        if store is not None:
            store.set_status(self.run_id, status, ended_at=time.time())

    def _publish_done(
        self, scheduler: Scheduler, status: WorkflowStatus, error: str | None, now: float, text: str
    ) -> None:
        counts: dict[str, int] = {}
        for o in scheduler.outcomes.values():
            counts[o.status] = counts.get(o.status, 0) + 1
        self.bus.publish(
            WorkflowDone(
                run_id=self.run_id,
                t=now,
                status=status,
                counts=counts,
                error=error,
                duration_s=now,
            )
        )
        done_status: Literal["ok", "error", "cancelled"] = (
            "ok" if status == "ok" else "cancelled" if status == "cancelled" else "error"
        )
        self.bus.publish(
            Done(
                run_id=self.run_id,
                t=now,
                status=done_status,
                text=text,
                error=error,
            )
        )

    # -- events ----------------------------------------------------------------------------------

    async def _events(self) -> AsyncIterator[BaseEvent]:
        queue: asyncio.Queue[BaseEvent | None] = asyncio.Queue()
        for past in self._history:
            queue.put_nowait(past)
        if self._task.done():
            queue.put_nowait(None)
        else:
            self._listeners.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
                if isinstance(event, Done) and event.run_id == self.run_id:
                    return
        finally:
            with contextlib.suppress(ValueError):
                self._listeners.remove(queue)

    def _record(self, event: BaseEvent) -> None:
        self._history.append(event)
        for queue in self._listeners:
            queue.put_nowait(event)

    def _ended(self, _task: asyncio.Task[WorkflowResult]) -> None:
        for queue in self._listeners:
            queue.put_nowait(None)
        for sub in self._own_sinks:
            sub.close()


def _sinks(tracer: EventSink | bool) -> list[EventSink]:
    if tracer is True:
        from counterpoint.runtime.tracing import default_tracer

        return [default_tracer()]
    if tracer is False:
        return []
    return [tracer]


def _open_store(db: Any) -> WorkflowStore:
    from counterpoint.agents.workflow.store import WorkflowStore

    return db if isinstance(db, WorkflowStore) else WorkflowStore(db)


def _agent_runner(graph: Graph, kv_reuse: str | None) -> TaskRunner:
    """The default runner: each task's agent (on a shared KV-reuse model if asked)."""
    models: dict[int, Model] = {}

    def agent_for(task: Task) -> Agent:
        agent = graph.agent_of(task)
        if kv_reuse is None:
            return agent
        base = agent.model
        wrapped = models.get(id(base))
        if wrapped is None:
            wrapped = models[id(base)] = _kv_model(base, kv_reuse)
        return agent.replace(model=wrapped)

    async def run(task: Task, context: TaskContext) -> str:
        agent = agent_for(task)
        model = agent.model
        share = getattr(model, "share", None)
        if callable(share):
            for up, result in context.upstream:
                if result:
                    share(result_key(context.workflow_run_id, up.id), result)
        return await run_agent_task(task, context, agent)

    return run


def _kv_model(base: Model, policy: str) -> Model:
    from counterpoint.runtime.backends.transformers import TransformersModel

    if not isinstance(base, TransformersModel):
        return base  # KV reuse needs the local backend; other models run as they are
    from counterpoint.runtime.kv import KVReuseModel

    return KVReuseModel(base, policy)  # type: ignore[arg-type]


class _StoreCheckpoint:
    def __init__(self, store: WorkflowStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def task_started(
        self, task_id: str, *, attempt: int, started: float, agent_run_id: str | None
    ) -> None:
        self.store.task_started(
            self.run_id, task_id, attempt=attempt, started=started, agent_run_id=agent_run_id
        )

    def commit(self, outcome: TaskOutcome, *, graph_version: int) -> None:
        self.store.commit(self.run_id, outcome, graph_version=graph_version)

    def graph_changed(self, graph: Graph) -> None:
        self.store.save_graph(self.run_id, graph.to_dicts(), graph.version)


class _StoreCache:
    def __init__(self, store: WorkflowStore, run_id: str) -> None:
        self._db = store
        self.run_id = run_id

    def lookup(self, task: Task, upstream: Mapping[str, str]) -> str | None:
        from counterpoint.agents.workflow.store import cache_key

        key = cache_key(task.objective, task.agent_name, task.output_format, upstream)
        hit: str | None = self._db.cache_get(key)
        return hit

    def store(self, task: Task, upstream: Mapping[str, str], result: str) -> None:
        from counterpoint.agents.workflow.store import cache_key

        key = cache_key(task.objective, task.agent_name, task.output_format, upstream)
        self._db.cache_put(key, result, task_id=task.id, run_id=self.run_id)
