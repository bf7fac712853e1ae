"""The dispatch-when-ready scheduler.

A task starts the moment its last prerequisite finishes: the finishing task's own completion
step (on the event loop, no polling, no supersteps) counts down its dependents and launches every
one that became ready, as long as the concurrency bounds allow. The ready set is a heap ordered
by the longest remaining path to a sink (critical path first; ties in the graph's order).

Each attempt runs in its own asyncio task under the task's timeout; a failed attempt is retried
with exponential backoff while its attempts and the workflow's retry budget last; then the task
is ``failed`` and the failure policy decides its dependents (``skip`` them, or ``fail`` the
workflow, cancelling what runs). Cancelling :meth:`Scheduler.run` cancels every running task and
waits for them: no task outlives the run.

Durability is the caller's: a :class:`Checkpoint` is told of each start and of each outcome, and
the outcome is committed *before* any dependent starts, so a finished task's result is on disk
before anything has used it. Refinement is the caller's too: every ``refine_every`` completions a
:class:`Refiner` is asked for a patch, while the other tasks go on running.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from counterpoint.agents.workflow.context import TaskContext
from counterpoint.agents.workflow.events import (
    PatchApplied,
    PatchRejected,
    TaskFinished,
    TaskReady,
    TaskRetry,
    TaskStarted,
)
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.outcome import FINISHED, TaskOutcome
from counterpoint.core.bus import EventBus
from counterpoint.errors import ConfigError

__all__ = [
    "Checkpoint",
    "FailurePolicy",
    "Proposal",
    "Refinement",
    "Refiner",
    "ResultCache",
    "RetryPolicy",
    "Scheduler",
    "SchedulerConfig",
    "TaskRunner",
]

FailurePolicy = Literal["skip", "fail"]

TaskRunner = Callable[[Task, TaskContext], Awaitable[str]]
"""Runs one attempt of a task and returns its result (raises to fail the attempt)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per task and the backoff between them.

    ``budget`` bounds the retries of the whole workflow (None: unbounded); a task whose retry
    would exceed it fails at once.
    """

    max_attempts: int = 3
    backoff_s: float = 0.5
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    budget: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ConfigError("backoff_s and max_backoff_s must be >= 0, multiplier >= 1")
        if self.budget is not None and self.budget < 0:
            raise ConfigError("the retry budget must be 0 or more")

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * self.multiplier ** (attempt - 1)))


@dataclass(frozen=True)
class SchedulerConfig:
    """How a workflow runs.

    ``max_concurrency`` bounds the tasks running at once (None: unbounded); ``limits`` bounds them
    per agent name (key ``NAME``) or per model (key ``model:KEY``, where KEY is the agents'
    :attr:`~counterpoint.agents.agent.Agent.model_key`, e.g. ``model:embedded``); ``timeout_s``
    is each attempt's default time limit (a task's own wins); ``on_failure`` is what a failed
    task means for its dependents.
    """

    max_concurrency: int | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    timeout_s: float | None = None
    retry: RetryPolicy = RetryPolicy()
    on_failure: FailurePolicy = "skip"
    refine_every: int = 0
    """Ask the refiner for a patch after every this many completions (0: never)."""

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError("max_concurrency must be at least 1 (or None for no bound)")
        bad = [name for name, n in self.limits.items() if n < 1]
        if bad:
            raise ConfigError(f"concurrency limits must be at least 1: {', '.join(bad)}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError("timeout_s must be positive")
        if self.on_failure not in ("skip", "fail"):
            raise ConfigError(f"on_failure must be 'skip' or 'fail', not {self.on_failure!r}")
        if self.refine_every < 0:
            raise ConfigError("refine_every must be 0 (off) or more")


class ResultCache(Protocol):
    """Results of earlier identical tasks: same objective, agent and upstream results (blocking
    calls; run in a worker thread)."""

    def lookup(self, task: Task, upstream: Mapping[str, str]) -> str | None: ...

    def store(self, task: Task, upstream: Mapping[str, str], result: str) -> None: ...


class Checkpoint(Protocol):
    """Where a run's progress is made durable (blocking calls; run in a worker thread)."""

    def task_started(
        self, task_id: str, *, attempt: int, started: float, agent_run_id: str | None
    ) -> None: ...

    def commit(self, outcome: TaskOutcome, *, graph_version: int) -> None: ...

    def graph_changed(self, graph: Graph) -> None: ...


@dataclass(frozen=True)
class Refinement:
    """What a refiner sees: the graph, every outcome so far, and the ids that may not change."""

    graph: Graph
    outcomes: Mapping[str, TaskOutcome]
    running: frozenset[str]

    @property
    def frozen(self) -> frozenset[str]:
        """Tasks running or ended: a patch may not touch them."""
        return self.running | frozenset(self.outcomes)


@dataclass(frozen=True)
class Proposal:
    """A refiner's proposal: the patched graph, and the patch as data (for the trace)."""

    graph: Graph
    patch: Mapping[str, Any] = field(default_factory=dict)


Refiner = Callable[[Refinement], Awaitable[Proposal | Graph | None]]
"""Proposes the patched graph (or None for no change); raising :class:`WorkflowError` rejects
the proposal with its message as the reason."""


class Scheduler:
    """Runs the tasks of ``graph`` with ``runner`` (see the module doc).

    ``done`` holds outcomes from before a resume: those tasks count as finished and never run.
    ``emit`` receives the run's events; ``clock`` gives seconds since the workflow run started.
    """

    def __init__(
        self,
        graph: Graph,
        runner: TaskRunner,
        *,
        run_id: str,
        goal: str = "",
        config: SchedulerConfig | None = None,
        bus: EventBus | None = None,
        clock: Callable[[], float] | None = None,
        done: Mapping[str, TaskOutcome] | None = None,
        checkpoint: Checkpoint | None = None,
        refiner: Refiner | None = None,
        cache: ResultCache | None = None,
    ) -> None:
        self.graph = graph
        self.runner = runner
        self.run_id = run_id
        self.goal = goal
        self.config = config or SchedulerConfig()
        self.bus = bus or EventBus()
        t0 = time.perf_counter()
        self.clock = clock or (lambda: time.perf_counter() - t0)
        self.checkpoint = checkpoint
        self.refiner = refiner
        self.cache = cache
        self.outcomes: dict[str, TaskOutcome] = {
            tid: o for tid, o in (done or {}).items() if o.status in FINISHED and tid in graph
        }
        self.retries_used = 0
        self.error: str | None = None
        """Why the run failed (a task under the ``fail`` policy, or a checkpoint error)."""
        self._running: dict[str, asyncio.Task[None]] = {}
        self._by_group: dict[str, int] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        self._ready: list[tuple[float, int, str]] = []
        self._queued: set[str] = set()
        self._held: dict[str, list[tuple[float, int, str]]] = {}
        self._waiting: dict[str, int] = {}
        self._position: dict[str, int] = {}
        self._priority: dict[str, float] = {}
        self._completions = 0
        self._refining: asyncio.Task[None] | None = None
        self._stopping = False
        self._cancelling: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._all_done: asyncio.Future[None] | None = None

    # -- public ----------------------------------------------------------------------------------

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    async def run(self) -> dict[str, TaskOutcome]:
        """Run every task; return the outcome of each (by id, in the graph's order)."""
        loop = asyncio.get_running_loop()
        self._all_done = loop.create_future()
        self._plan()
        self._pump()
        self._check_done()
        try:
            await asyncio.shield(self._all_done)
        except asyncio.CancelledError:
            self._stopping = True
            await self._cancel_all()
            raise
        finally:
            await self._stop_refining()
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
        return {tid: self.outcomes[tid] for tid in self.graph.tasks if tid in self.outcomes}

    # -- planning the ready set ------------------------------------------------------------------

    def _plan(self) -> None:
        """(Re)compute priorities, counters and the ready heap for every task not yet started."""
        graph = self.graph
        self._priority = graph.remaining_path()
        self._position = {tid: i for i, tid in enumerate(graph.tasks)}
        finished = {tid for tid, o in self.outcomes.items() if o.status in FINISHED}
        self._waiting = {}
        self._ready = []
        self._held = {}
        self._queued = set()
        self._groups = {tid: g for tid, g in self._groups.items() if tid in self._running}
        for tid, task in graph.tasks.items():
            if tid in self.outcomes or tid in self._running:
                continue
            unmet = sum(1 for n in task.needs if n not in finished)
            blocked = any(
                n in self.outcomes and self.outcomes[n].status not in FINISHED for n in task.needs
            )
            if blocked:
                # a prerequisite failed or was skipped before (a patch may have added this task)
                self._skip(tid, "a task it needs did not finish")
                continue
            if unmet:
                self._waiting[tid] = unmet
            else:
                self._push_ready(tid)

    def _push_ready(self, tid: str) -> None:
        self._queued.add(tid)
        priority = self._priority.get(tid, 1.0)
        heapq.heappush(self._ready, (-priority, self._position.get(tid, 0), tid))
        self.bus.publish(
            TaskReady(run_id=self.run_id, t=self.clock(), task_id=tid, priority=priority)
        )

    def _pump(self) -> None:
        """Start ready tasks while the bounds allow, highest priority first."""
        limit = self.config.max_concurrency
        limits = self.config.limits
        while self._ready and not self._stopping:
            if limit is not None and len(self._running) >= limit:
                return
            item = heapq.heappop(self._ready)
            tid = item[2]
            if tid not in self._queued:
                continue  # removed by a patch
            groups = self._groups_of(tid) if limits else ()
            full = next((g for g in groups if self._by_group.get(g, 0) >= limits[g]), None)
            if full is not None:
                heapq.heappush(self._held.setdefault(full, []), item)
                continue
            self._launch(tid, groups)

    def _groups_of(self, tid: str) -> tuple[str, ...]:
        """The concurrency groups (with a limit) that task ``tid`` counts against."""
        groups = self._groups.get(tid)
        if groups is None:
            task = self.graph[tid]
            names = [task.agent_name]
            if any(key.startswith("model:") for key in self.config.limits):
                names.append(f"model:{self.graph.agent_of(task).model_key}")
            groups = self._groups[tid] = tuple(g for g in names if g in self.config.limits)
        return groups

    def _launch(self, tid: str, groups: tuple[str, ...]) -> None:
        self._queued.discard(tid)
        for group in groups:
            self._by_group[group] = self._by_group.get(group, 0) + 1
        self._running[tid] = asyncio.get_running_loop().create_task(
            self._execute(tid), name=f"workflow task {tid}"
        )

    # -- running one task ------------------------------------------------------------------------

    async def _execute(self, tid: str) -> None:
        task = self.graph[tid]
        policy = self.config.retry
        attempts = task.max_attempts or policy.max_attempts
        timeout = task.timeout_s or self.config.timeout_s
        context = self._context(task)
        attempt = 0
        started = self.clock()
        agent_run_id: str | None = None
        outcome: TaskOutcome | None = None
        upstream = {up.id: result for up, result in context.upstream}
        try:
            if self.cache is not None:
                hit = await self._cached(task, upstream)
                if hit is not None:
                    now = self.clock()
                    outcome = TaskOutcome(tid, "cached", hit, None, 0, now, now, None)
            while outcome is None:
                attempt += 1
                started = self.clock()
                agent_run_id = uuid.uuid4().hex
                context = context.for_attempt(attempt, agent_run_id)
                self.bus.publish(
                    TaskStarted(
                        run_id=self.run_id,
                        t=started,
                        task_id=tid,
                        agent=task.agent_name,
                        attempt=attempt,
                        agent_run_id=agent_run_id,
                    )
                )
                if self.checkpoint is not None:
                    await asyncio.to_thread(
                        self.checkpoint.task_started,
                        tid,
                        attempt=attempt,
                        started=started,
                        agent_run_id=agent_run_id,
                    )
                try:
                    if timeout is None:
                        result = await self.runner(task, context)
                    else:
                        async with asyncio.timeout(timeout):
                            result = await self.runner(task, context)
                    if not isinstance(result, str):
                        raise TypeError(f"a task runner returns str, not {type(result).__name__}")
                    outcome = TaskOutcome(
                        tid, "ok", result, None, attempt, started, self.clock(), agent_run_id
                    )
                    if self.cache is not None:
                        with contextlib.suppress(Exception):  # a cache is an optimisation
                            await asyncio.to_thread(self.cache.store, task, upstream, result)
                    break
                except TimeoutError:
                    error = f"timed out after {timeout:g} s"
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                budget = policy.budget
                if attempt >= attempts or (budget is not None and self.retries_used >= budget):
                    if attempt < attempts:
                        error += " (the workflow's retry budget is spent)"
                    outcome = TaskOutcome(
                        tid, "failed", None, error, attempt, started, self.clock(), agent_run_id
                    )
                    break
                self.retries_used += 1
                delay = policy.delay(attempt)
                self.bus.publish(
                    TaskRetry(
                        run_id=self.run_id,
                        t=self.clock(),
                        task_id=tid,
                        attempt=attempt,
                        error=error,
                        delay_s=delay,
                    )
                )
                context = context.with_error(error)
                await asyncio.sleep(delay)
            if self.checkpoint is not None:
                await asyncio.to_thread(
                    self.checkpoint.commit, outcome, graph_version=self.graph.version
                )
        except asyncio.CancelledError:
            self._finish(
                TaskOutcome(
                    tid,
                    "cancelled",
                    None,
                    "the workflow was cancelled",
                    attempt,
                    started,
                    self.clock(),
                    agent_run_id,
                ),
                record=False,
            )
            raise
        except Exception as exc:  # the checkpoint could not record the outcome
            self.error = f"could not record task {tid!r}: {exc}"
            failed = TaskOutcome(
                tid, "failed", None, self.error, attempt, started, self.clock(), agent_run_id
            )
            self._finish(failed, record=False)
            self._fail_run()
            return
        self._finish(outcome)

    async def _cached(self, task: Task, upstream: Mapping[str, str]) -> str | None:
        """The cache's result for ``task`` (a cache that fails is a miss, never a failure)."""
        assert self.cache is not None
        try:
            return await asyncio.to_thread(self.cache.lookup, task, upstream)
        except Exception:
            return None

    def _context(self, task: Task) -> TaskContext:
        graph = self.graph
        upstream = tuple(
            (graph[n], self.outcomes[n].result or "") for n in task.needs if n in self.outcomes
        )
        downstream = tuple(graph[s] for s in graph.successors(task.id))
        return TaskContext(
            task=task,
            goal=self.goal,
            upstream=upstream,
            downstream=downstream,
            workflow_run_id=self.run_id,
            bus=self.bus,
        )

    # -- completion ------------------------------------------------------------------------------

    def _finish(self, outcome: TaskOutcome, *, record: bool = True) -> None:
        tid = outcome.task_id
        self._running.pop(tid, None)
        for group in self._groups.get(tid, ()):
            self._by_group[group] = max(0, self._by_group.get(group, 1) - 1)
            held = self._held.get(group)
            if held:
                heapq.heappush(self._ready, heapq.heappop(held))
        self.outcomes[tid] = outcome
        self.bus.publish(
            TaskFinished(
                run_id=self.run_id,
                t=self.clock(),
                task_id=tid,
                status=outcome.status,
                result=outcome.result,
                error=outcome.error,
                attempts=outcome.attempts,
                started=outcome.started,
                duration_s=outcome.duration_s,
                agent_run_id=outcome.agent_run_id,
            )
        )
        if not record or self._stopping:
            self._check_done()
            return
        if outcome.status in FINISHED:
            for nxt in self.graph.successors(tid):
                left = self._waiting.get(nxt)
                if left is None:
                    continue
                if left <= 1:
                    del self._waiting[nxt]
                    self._push_ready(nxt)
                else:
                    self._waiting[nxt] = left - 1
        elif self.config.on_failure == "fail":
            self.error = f"task {tid!r} failed: {outcome.error}"
            self._fail_run()
            return
        else:
            for dep in self.graph.descendants(tid):
                if dep not in self.outcomes and dep not in self._running:
                    self._skip(dep, f"task {tid!r} it needs failed")
        self._completions += 1
        every = self.config.refine_every
        if self.refiner is not None and every and self._completions % every == 0:
            self._start_refining()
        self._pump()
        self._check_done()

    def _skip(self, tid: str, why: str) -> None:
        self._waiting.pop(tid, None)
        self._queued.discard(tid)
        now = self.clock()
        outcome = TaskOutcome(tid, "skipped", None, why, 0, None, now, None)
        self.outcomes[tid] = outcome
        self.bus.publish(
            TaskFinished(run_id=self.run_id, t=now, task_id=tid, status="skipped", error=why)
        )
        if self.checkpoint is not None:
            # recorded for the report (a resume runs skipped tasks again)
            self._in_background(self.checkpoint.commit, outcome, graph_version=self.graph.version)

    def _in_background(self, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        """Run a blocking checkpoint call in a worker thread; the run waits for it at its end."""

        async def call() -> None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(fn, *args, **kwargs)

        job = asyncio.get_running_loop().create_task(call())
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    def _fail_run(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._cancelling = asyncio.get_running_loop().create_task(self._cancel_all())
        self._cancelling.add_done_callback(lambda _t: self._check_done())

    async def _cancel_all(self) -> None:
        running = list(self._running.values())
        for job in running:
            job.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        now = self.clock()
        for tid in self.graph.tasks:
            if tid not in self.outcomes:
                self.outcomes[tid] = TaskOutcome(tid, "cancelled", None, None, 0, None, now)
                self.bus.publish(
                    TaskFinished(run_id=self.run_id, t=now, task_id=tid, status="cancelled")
                )
        self._ready.clear()
        self._waiting.clear()

    def _check_done(self) -> None:
        done = self._all_done
        if done is None or done.done():
            return
        if self._running or (self._ready and not self._stopping):
            return
        if self._cancelling is not None and not self._cancelling.done():
            return
        if self._refining is not None and not self._refining.done() and not self._stopping:
            return  # a patch may still add work
        if self._waiting and not self._stopping:
            # cannot happen in a valid DAG: every waiting task has a running or queued ancestor
            done.set_exception(
                WorkflowError(
                    f"tasks {sorted(self._waiting)} wait on prerequisites that will never finish",
                    ids=sorted(self._waiting),
                )
            )
            return
        done.set_result(None)

    # -- refinement ------------------------------------------------------------------------------

    def _start_refining(self) -> None:
        if self._refining is not None and not self._refining.done():
            return  # one proposal at a time; the next completion asks again
        self._refining = asyncio.get_running_loop().create_task(self._refine())

    async def _refine(self) -> None:
        assert self.refiner is not None
        view = Refinement(self.graph.copy(), dict(self.outcomes), frozenset(self._running))
        try:
            proposed = await self.refiner(view)
        except WorkflowError as exc:
            self._reject(None, str(exc))
            return
        except Exception as exc:
            self._reject(None, f"the refiner failed: {type(exc).__name__}: {exc}")
            return
        finally:
            self._refining = None
            if self._all_done is not None:
                asyncio.get_running_loop().call_soon(self._check_done)
        if proposed is None or self._stopping:
            return
        if isinstance(proposed, Proposal):
            self.apply(proposed.graph, patch=proposed.patch)
        else:
            self.apply(proposed)

    def apply(self, proposed: Graph, *, patch: Mapping[str, Any] | None = None) -> bool:
        """Adopt ``proposed`` if it keeps every running or ended task as it is; else reject it.

        Returns whether it was applied (a ``patch_applied`` or ``patch_rejected`` event says
        so either way).
        """
        frozen = set(self._running) | set(self.outcomes)
        reason = _frozen_violation(self.graph, proposed, frozen)
        if reason:
            self._reject(dict(patch or {}), reason)
            return False
        self.graph = proposed
        self._plan()
        self.bus.publish(
            PatchApplied(
                run_id=self.run_id,
                t=self.clock(),
                version=proposed.version,
                patch=dict(patch or {}),
                tasks=proposed.to_dicts(),
            )
        )
        if self.checkpoint is not None:
            self._in_background(self.checkpoint.graph_changed, proposed)
        self._pump()
        self._check_done()
        return True

    def _reject(self, patch: dict[str, Any] | None, reason: str) -> None:
        self.bus.publish(
            PatchRejected(run_id=self.run_id, t=self.clock(), patch=patch, reason=reason)
        )

    async def _stop_refining(self) -> None:
        job = self._refining
        if job is not None and not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job


def _frozen_violation(old: Graph, new: Graph, frozen: Collection[str]) -> str:
    """Why ``new`` may not replace ``old`` given the frozen ids ("" if it may)."""
    for tid in frozen:
        if tid not in old:
            continue
        if tid not in new:
            return f"the patch removes task {tid!r}, which has started or ended"
        before, after = old[tid], new[tid]
        if (before.objective, before.agent_name, before.needs, before.output_format) != (
            after.objective,
            after.agent_name,
            after.needs,
            after.output_format,
        ):
            return f"the patch changes task {tid!r}, which has started or ended"
    return ""
