"""A workflow run's events (registered, so traces and the terminal UI read them back).

A workflow run is a run like an agent's: it opens with ``run_started`` (mode ``"workflow"``) and
closes with ``done``; its agents' runs name it as their ``parent_run_id``. Between the two, on the
same bus: ``workflow_started`` (the graph), ``task_ready``, ``task_started``, ``task_retry``,
``task_finished`` (ok, failed, skipped, cached, cancelled), ``patch_applied`` / ``patch_rejected``
and ``workflow_done``. ``run_id`` of each is the workflow run's id; ``t`` is seconds since it
started.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from counterpoint.core.events import BaseEvent, register_event

__all__ = [
    "WORKFLOW_EVENT_KINDS",
    "PatchApplied",
    "PatchRejected",
    "TaskFinished",
    "TaskReady",
    "TaskRetry",
    "TaskStarted",
    "TaskStatus",
    "WorkflowDone",
    "WorkflowStarted",
]

TaskStatus = Literal["ok", "failed", "skipped", "cached", "cancelled"]
"""How a task ended: ``ok``, ``failed`` (its attempts exhausted), ``skipped`` (a task it needs
failed, under the ``skip`` policy), ``cached`` (an identical task's stored result), ``cancelled``
(the workflow stopped while it ran or before it started)."""


@register_event
class WorkflowStarted(BaseEvent):
    """The run began (or resumed): the graph as it stands, and what is already done."""

    kind: Literal["workflow_started"] = "workflow_started"
    name: str
    goal: str
    tasks: list[dict[str, Any]] = Field(description="The graph: Graph.to_dicts().")
    version: int = 0
    resumed: bool = False
    done: list[str] = Field(default_factory=list, description="Tasks finished before a resume.")


@register_event
class TaskReady(BaseEvent):
    """Every task ``task_id`` needs is done: it waits for a slot."""

    kind: Literal["task_ready"] = "task_ready"
    task_id: str
    priority: float = Field(description="Its longest remaining path to a sink.")


@register_event
class TaskStarted(BaseEvent):
    """An attempt of a task began; ``agent_run_id`` is the run its agent opens for it."""

    kind: Literal["task_started"] = "task_started"
    task_id: str
    agent: str
    attempt: int = 1
    agent_run_id: str | None = None


@register_event
class TaskRetry(BaseEvent):
    """An attempt failed and the task will be tried again after ``delay_s``."""

    kind: Literal["task_retry"] = "task_retry"
    task_id: str
    attempt: int
    error: str
    delay_s: float


@register_event
class TaskFinished(BaseEvent):
    """A task ended (see :data:`TaskStatus`)."""

    kind: Literal["task_finished"] = "task_finished"
    task_id: str
    status: TaskStatus
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    started: float | None = Field(default=None, description="When its last attempt began (t).")
    duration_s: float = 0.0
    agent_run_id: str | None = None


@register_event
class PatchApplied(BaseEvent):
    """A refinement patch changed the part of the graph that had not started."""

    kind: Literal["patch_applied"] = "patch_applied"
    version: int = Field(description="The graph's version after the patch.")
    patch: dict[str, Any]
    tasks: list[dict[str, Any]] = Field(description="The graph after the patch.")


@register_event
class PatchRejected(BaseEvent):
    """A proposed patch was refused (``reason`` says why); the run goes on unchanged."""

    kind: Literal["patch_rejected"] = "patch_rejected"
    patch: dict[str, Any] | None = None
    reason: str


@register_event
class WorkflowDone(BaseEvent):
    """The run ended: ``counts`` holds how many tasks ended in each status."""

    kind: Literal["workflow_done"] = "workflow_done"
    status: Literal["ok", "failed", "cancelled"]
    counts: dict[str, int]
    error: str | None = None
    duration_s: float


WORKFLOW_EVENT_KINDS = frozenset(
    {
        "workflow_started",
        "task_ready",
        "task_started",
        "task_retry",
        "task_finished",
        "patch_applied",
        "patch_rejected",
        "workflow_done",
    }
)
