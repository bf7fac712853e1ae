"""A workflow run as its events say it is: the graph, each task's state, its agent's run.

:class:`WorkflowModel` folds the events of a workflow run and of its agents' runs (they share
the workflow's bus): ``workflow_started`` and ``patch_applied`` give the graph, ``task_ready``,
``task_started``, ``task_retry`` and ``task_finished`` each task's state, ``task_started``'s
``agent_run_id`` ties an agent run to its task, so that the agent run's ``kv_reuse`` event becomes
the task's KV-reuse badge and its other events its transcript. Nothing here is Textual: the
workflow screen draws it, live or replayed from the traces database (:meth:`from_spans`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The workflow's event module registers its kinds, so that parse_event reads them back.
from counterpoint.agents.workflow import events as _workflow_events
from counterpoint.core.events import BaseEvent, Done, KVReuse, RunStarted, parse_event

__all__ = ["TaskView", "WorkflowModel", "workflow_events_from_spans"]

_REGISTERED = _workflow_events.WORKFLOW_EVENT_KINDS
_WAITING = ("pending", "ready", "running")


@dataclass
class TaskView:
    """One task as the events left it: ``status`` is ``pending``, ``ready``, ``running``, or how
    it ended (``ok``, ``failed``, ``skipped``, ``cached``, ``cancelled``)."""

    id: str
    objective: str = ""
    agent: str = ""
    needs: list[str] = field(default_factory=list)
    status: str = "pending"
    attempt: int = 0
    started_t: float | None = None
    duration_s: float | None = None
    agent_run_id: str | None = None
    result: str | None = None
    error: str | None = None
    retries: int = 0
    kv_reused_tokens: int = 0
    kv_prompt_tokens: int = 0
    kv_mode: str | None = None

    def elapsed(self, now: float | None) -> float | None:
        """Seconds its attempt has run (live while running, ``now`` being the run's time)."""
        if self.duration_s is not None:
            return self.duration_s
        if self.started_t is not None and now is not None and self.status == "running":
            return max(0.0, now - self.started_t)
        return None

    def kv_badge(self) -> str:
        """``KV 180/259`` (tokens served from another agent's cache / prompt tokens), or ''."""
        if self.kv_mode is None:
            return ""
        if self.kv_reused_tokens <= 0:
            return "KV dense"
        return f"KV {self.kv_reused_tokens}/{self.kv_prompt_tokens}"


class WorkflowModel:
    """The state of one workflow run, folded from its events (see the module doc)."""

    def __init__(self) -> None:
        self.run_id = ""
        self.name = ""
        self.goal = ""
        self.status = "idle"
        self.version = 0
        self.resumed = False
        self.error: str | None = None
        self.tasks: dict[str, TaskView] = {}
        self.task_dicts: list[dict[str, Any]] = []
        self.last_t = 0.0
        self.done_t: float | None = None
        self.counts: dict[str, int] = {}
        self.patches = 0
        self.rejected = 0
        self._task_of_run: dict[str, str] = {}
        self.agent_events: dict[str, list[BaseEvent]] = {}
        """Each agent run's events so far, by its run id (a task's transcript)."""

    # -- reading ---------------------------------------------------------------------------------

    def task_of_run(self, run_id: str) -> str | None:
        return self._task_of_run.get(run_id)

    def statuses(self) -> dict[str, str]:
        return {tid: task.status for tid, task in self.tasks.items()}

    def order(self) -> list[str]:
        """Task ids in layer order (as the graph view draws them)."""
        from counterpoint.agents.workflow.render import layers

        return [tid for layer in layers(self.task_dicts) for tid in layer]

    def layer_of(self) -> dict[str, int]:
        from counterpoint.agents.workflow.render import layers

        return {tid: k for k, layer in enumerate(layers(self.task_dicts)) for tid in layer}

    def running(self) -> int:
        return sum(1 for t in self.tasks.values() if t.status == "running")

    def finished(self) -> int:
        return sum(1 for t in self.tasks.values() if t.status not in _WAITING)

    def reused_tokens(self) -> int:
        return sum(t.kv_reused_tokens for t in self.tasks.values())

    # -- folding ---------------------------------------------------------------------------------

    def apply(self, event: BaseEvent) -> bool:
        """Fold one event in (the workflow's, or one of its agents'); whether the view of the
        graph changed. Agent events are kept as their task's transcript either way."""
        if event.run_id != self.run_id and self.run_id:
            return self._agent_event(event)
        if isinstance(event, RunStarted):
            if event.mode != "workflow":
                return False
            self.__init__()  # type: ignore[misc]
            self.run_id, self.name, self.goal = event.run_id, event.name, event.prompt
            self.status = "running"
            return True
        if not self.run_id:
            self.run_id = event.run_id
            self.status = "running"
        self.last_t = max(self.last_t, event.t)
        fields: dict[str, Any] = event.model_dump()
        kind = event.kind
        if kind == "workflow_started":
            self.name = str(fields.get("name") or self.name)
            self.goal = str(fields.get("goal") or self.goal)
            self.version = int(fields.get("version") or 0)
            self.resumed = bool(fields.get("resumed"))
            self.set_graph(list(fields.get("tasks") or []))
            for tid in fields.get("done") or ():
                if str(tid) in self.tasks:
                    self.tasks[str(tid)].status = "ok"
            return True
        if kind == "patch_applied":
            self.version = int(fields.get("version") or self.version)
            self.patches += 1
            self.set_graph(list(fields.get("tasks") or []))
            return True
        if kind == "patch_rejected":
            self.rejected += 1
            return True
        if kind in ("task_ready", "task_started", "task_retry", "task_finished"):
            return self._task_event(kind, fields, event.t)
        if kind == "workflow_done":
            self.status = str(fields.get("status") or "ok")
            self.error = fields.get("error")
            self.counts = {str(k): int(v) for k, v in (fields.get("counts") or {}).items()}
            self.done_t = event.t
            return True
        if isinstance(event, Done):
            if self.status == "running":
                self.status = {"error": "failed"}.get(event.status, event.status)
            self.error = self.error or event.error
            self.done_t = event.t if self.done_t is None else self.done_t
            for task in self.tasks.values():
                if task.status in ("running", "ready"):
                    task.status = "cancelled"
            return True
        return False

    def set_graph(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        """Take the graph as ``Graph.to_dicts()`` gives it (tasks keep their state)."""
        self.task_dicts = [dict(t) for t in tasks]
        known = dict(self.tasks)
        self.tasks = {}
        for d in self.task_dicts:
            tid = str(d.get("id"))
            view = known.get(tid) or TaskView(tid)
            view.objective = str(d.get("objective") or "")
            agent = d.get("agent")
            view.agent = str(agent) if agent is not None else view.agent
            view.needs = [str(n) for n in d.get("needs") or ()]
            self.tasks[tid] = view

    def _task(self, tid: str) -> TaskView:
        task = self.tasks.get(tid)
        if task is None:  # an event of a task the graph did not name (a patch we missed)
            task = self.tasks[tid] = TaskView(tid)
            self.task_dicts.append({"id": tid, "needs": []})
        return task

    def _task_event(self, kind: str, fields: Mapping[str, Any], t: float) -> bool:
        task = self._task(str(fields.get("task_id")))
        if kind == "task_ready":
            if task.status == "pending":
                task.status = "ready"
        elif kind == "task_started":
            task.status = "running"
            task.attempt = int(fields.get("attempt") or 1)
            task.agent = str(fields.get("agent") or task.agent)
            task.started_t, task.duration_s = t, None
            run_id = fields.get("agent_run_id")
            if run_id:
                task.agent_run_id = str(run_id)
                self._task_of_run[str(run_id)] = task.id
        elif kind == "task_retry":
            task.retries += 1
            task.error = str(fields.get("error") or "")
            task.status = "ready"
        else:  # task_finished
            task.status = str(fields.get("status") or "ok")
            task.result = fields.get("result")
            task.error = fields.get("error")
            task.attempt = int(fields.get("attempts") or task.attempt)
            started = fields.get("started")
            if isinstance(started, int | float):
                task.started_t = float(started)
            task.duration_s = float(fields.get("duration_s") or 0.0)
            run_id = fields.get("agent_run_id")
            if run_id:
                task.agent_run_id = str(run_id)
                self._task_of_run[str(run_id)] = task.id
        return True

    def _agent_event(self, event: BaseEvent) -> bool:
        self.agent_events.setdefault(event.run_id, []).append(event)
        if isinstance(event, KVReuse):
            tid = self._task_of_run.get(event.run_id)
            if tid is not None and tid in self.tasks:
                task = self.tasks[tid]
                task.kv_mode = event.mode
                task.kv_reused_tokens = event.reused_tokens
                task.kv_prompt_tokens = event.prompt_tokens
                return True
        return False

    # -- building --------------------------------------------------------------------------------

    def extend(self, events: Iterable[BaseEvent]) -> WorkflowModel:
        for event in events:
            self.apply(event)
        return self


def workflow_events_from_spans(
    run: Any, spans: Iterable[Any], child_spans: Mapping[str, Iterable[Any]] | None = None
) -> list[BaseEvent]:
    """A stored workflow run's events, read back from the traces database.

    ``run``: its :class:`RunRecord`; ``spans``: its spans (the ``event`` spans hold each
    workflow event's own fields); ``child_spans``: the spans of its agents' runs by run id, whose
    ``kv_reuse`` spans give back their KV-reuse events. Events come out in time order.
    """
    events: list[BaseEvent] = [
        RunStarted(
            run_id=run.id,
            t=0.0,
            name=run.name,
            model=run.model or "",
            mode="workflow",
            prompt=run.prompt or "",
            wall_time=float(getattr(run, "started_at", 0.0) or 0.0),
        )
    ]
    stored: list[BaseEvent] = []
    for span in spans:
        if str(span.kind) != "event":
            continue
        payload = (span.attributes or {}).get("counterpoint.event")
        if not isinstance(payload, dict):
            continue
        try:
            stored.append(parse_event(payload))
        except ValueError:
            continue  # a kind this version does not know: skip it, keep the rest
    for run_id, child in (child_spans or {}).items():
        for span in child:
            if str(span.kind) != "kv_reuse":
                continue
            attrs = dict(span.attributes or {})
            stored.append(
                KVReuse(
                    run_id=run_id,
                    t=float(span.start_s),
                    policy=str(attrs.get("counterpoint.kv.policy", "")),
                    mode=str(attrs.get("counterpoint.kv.mode", "dense")),
                    prompt_tokens=int(attrs.get("counterpoint.kv.prompt_tokens", 0)),
                    reused_tokens=int(attrs.get("counterpoint.kv.tokens_reused", 0)),
                    computed_tokens=int(attrs.get("counterpoint.kv.tokens_computed", 0)),
                    ttft_s=float(attrs.get("counterpoint.kv.ttft_s", 0.0)),
                    attributes=attrs,
                )
            )
    # agent runs' clocks differ from the workflow's: their events come after the tasks that
    # name them (a stable sort keeps each run's own order).
    stored.sort(key=lambda e: (e.run_id != run.id, e.t))
    events.extend(stored)
    if run.status != "running":
        status = {"ok": "ok", "cancelled": "cancelled"}.get(str(run.status), "error")
        events.append(
            Done(
                run_id=run.id,
                t=float(run.duration_s or (stored[-1].t if stored else 0.0)),
                status=status,  # type: ignore[arg-type]
                text=run.output or "",
                error=getattr(run, "error", None),
            )
        )
    return events
