"""What a task's agent is told: Flow's context, rendered as prompt segments.

A task's prompt carries the overall goal, its own objective (and output format), the objectives
and results of the tasks it needs, and the objectives of the tasks that will use its result. It
is built from :class:`~counterpoint.runtime.backends.base.Segment` s: fixed template text, and
each upstream result as shared ``content`` keyed by the task that wrote it, so that on the local
backend a result that several downstream prompts include is one KV segment reused by each of
them (``runtime/kv``) rather than text prefilled again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from counterpoint.agents.workflow.graph import Task
from counterpoint.core.bus import EventBus
from counterpoint.runtime.backends.base import Prompt, Segment

__all__ = ["TaskContext", "result_key"]


def result_key(workflow_run_id: str, task_id: str) -> str:
    """The shared-content key of a task's result (``workflow:<run>:task:<id>``)."""
    return f"workflow:{workflow_run_id}:task:{task_id}"


@dataclass(frozen=True)
class TaskContext:
    """Everything one attempt of a task is given.

    ``upstream`` pairs each task this one needs with its result; ``downstream`` lists the tasks
    that need this one; ``agent_run_id`` is the run id its agent must use (so that the
    ``task_started`` event can name the agent's trace); ``error`` is the previous attempt's
    failure, told to the agent on a retry.
    """

    task: Task
    goal: str
    upstream: tuple[tuple[Task, str], ...]
    downstream: tuple[Task, ...]
    workflow_run_id: str
    bus: EventBus
    attempt: int = 1
    agent_run_id: str = ""
    error: str | None = None

    def for_attempt(self, attempt: int, agent_run_id: str) -> TaskContext:
        if attempt == 1 and not self.agent_run_id:  # the first attempt: fill in place (cheap)
            object.__setattr__(self, "agent_run_id", agent_run_id)
            return self
        return replace(self, attempt=attempt, agent_run_id=agent_run_id)

    def with_error(self, error: str) -> TaskContext:
        return replace(self, error=error)

    def segments(self) -> Prompt:
        """The task's prompt as segments (upstream results are shared content)."""
        task = self.task
        parts: list[Segment] = []

        def text(value: str) -> None:
            parts.append(Segment(value))

        if self.goal:
            text(f"Overall goal: {self.goal}\n\n")
        text(f"Your task ({task.id}): {task.objective}\n")
        if task.output_format:
            text(f"Output format: {task.output_format}\n")
        if self.upstream:
            text("\nResults of the tasks yours builds on:\n")
            for up, result in self.upstream:
                text(f"\n## {up.id}: {up.objective}\n")
                parts.append(
                    Segment(result, kind="content", key=result_key(self.workflow_run_id, up.id))
                )
                text("\n")
        if self.downstream:
            text("\nTasks that will use your result:\n")
            for down in self.downstream:
                text(f"- {down.id}: {down.objective}\n")
        if self.error:
            text(f"\nYour previous attempt failed ({self.error}). Try again.\n")
        text("\nDo your task now and reply with its result only.")
        return Prompt(tuple(parts))

    def prompt(self) -> str:
        """The task's prompt as text."""
        return self.segments().text
