"""AOV workflows (after Flow, ICLR 2025): a graph of agent tasks, a planner, a dispatch-when-ready
scheduler, durable checkpoints with resume, live refinement, and KV reuse between agents.

- :mod:`.graph`: :class:`Task`, :class:`Graph` (validated on every change), :class:`WorkflowError`.
- :mod:`.scheduler`: :class:`Scheduler` and its :class:`SchedulerConfig`, :class:`RetryPolicy`.
- :mod:`.context`: what a task's agent is told (Flow's context, as prompt segments).
- :mod:`.events`: the run's events (registered kinds).
- :mod:`.store`: the durable checkpoints (SQLite, in the traces database).
- :mod:`.planner`, :mod:`.scoring`, :mod:`.patch`: candidate graphs from a planner agent, Flow's
  scores, and validated patches for refinement.
- :mod:`.workflow`: :class:`Workflow`, the SDK's face: run, stream, resume, plan.
"""

from counterpoint.agents.workflow.context import TaskContext
from counterpoint.agents.workflow.events import (
    PatchApplied,
    PatchRejected,
    TaskFinished,
    TaskReady,
    TaskRetry,
    TaskStarted,
    WorkflowDone,
    WorkflowStarted,
)
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.outcome import TaskOutcome
from counterpoint.agents.workflow.patch import Patch, PatchError, apply_patch
from counterpoint.agents.workflow.planner import Planner, PlanResult
from counterpoint.agents.workflow.scheduler import (
    Proposal,
    Refinement,
    RetryPolicy,
    Scheduler,
    SchedulerConfig,
)
from counterpoint.agents.workflow.scoring import dependency_complexity, parallelism
from counterpoint.agents.workflow.workflow import (
    Workflow,
    WorkflowHandle,
    WorkflowResult,
    run_agent_task,
)

__all__ = [
    "Graph",
    "Patch",
    "PatchApplied",
    "PatchError",
    "PatchRejected",
    "PlanResult",
    "Planner",
    "Proposal",
    "Refinement",
    "RetryPolicy",
    "Scheduler",
    "SchedulerConfig",
    "Task",
    "TaskContext",
    "TaskFinished",
    "TaskOutcome",
    "TaskReady",
    "TaskRetry",
    "TaskStarted",
    "Workflow",
    "WorkflowDone",
    "WorkflowError",
    "WorkflowHandle",
    "WorkflowResult",
    "WorkflowStarted",
    "apply_patch",
    "dependency_complexity",
    "parallelism",
    "run_agent_task",
]
