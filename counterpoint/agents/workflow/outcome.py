"""What a task's run came to, as the scheduler, the checkpoint store and the result report it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from counterpoint.agents.workflow.events import TaskStatus

__all__ = ["FINISHED", "TaskOutcome"]

FINISHED: frozenset[str] = frozenset({"ok", "cached"})
"""Statuses of a task that has its result: a resumed run never runs such a task again."""


@dataclass(frozen=True)
class TaskOutcome:
    """How one task ended.

    ``started``/``ended`` are seconds since the workflow run started (its last attempt);
    ``agent_run_id`` is the run its agent opened for that attempt (its trace).
    """

    task_id: str
    status: TaskStatus
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    agent_run_id: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the task has its result (``ok`` or ``cached``)."""
        return self.status in FINISHED

    @property
    def duration_s(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "started": self.started,
            "ended": self.ended,
            "agent_run_id": self.agent_run_id,
        }
