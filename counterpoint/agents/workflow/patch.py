"""Refinement patches: a planner's change to a running workflow, validated before it applies.

A :class:`Patch` adds, removes and changes tasks. :func:`apply_patch` applies one to a copy of the
graph and returns the copy (its ``version`` bumped); the original never changes. A patch may only
touch the part of the workflow that has not started: removing or changing a *frozen* task (one
that is running or has ended) is refused, and so is any patch whose result is not a valid graph.
Every refusal is a :class:`PatchError` whose message is the reason, naming the ids.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError

__all__ = ["Patch", "PatchError", "TaskChange", "TaskSpec", "apply_patch"]


class PatchError(WorkflowError):
    """A patch that cannot apply; the message says why and names the ids."""


class TaskSpec(BaseModel):
    """A task as a planner writes it: agents by name, needs by id."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Unique task id, e.g. 'research_prices'.")
    objective: str = Field(min_length=1, description="What the task must achieve, concretely.")
    agent: str = Field(min_length=1, description="The name of the agent that runs the task.")
    needs: list[str] = Field(
        default_factory=list, description="Ids of the tasks whose results this one needs."
    )
    output_format: str | None = Field(
        default=None, description="What the result should look like, if it matters."
    )

    def to_task(self) -> Task:
        """The :class:`Task` (its agent by name, resolved by the graph's ``agents``)."""
        return Task(
            self.id,
            self.objective,
            self.agent,
            needs=tuple(self.needs),
            output_format=self.output_format,
        )


class TaskChange(BaseModel):
    """New values for some fields of a task that has not started; omitted fields stay.

    ``output_format`` given as ``null`` clears it (omitted, it stays).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="The id of the task to change.")
    objective: str | None = Field(default=None, min_length=1)
    agent: str | None = Field(default=None, min_length=1)
    needs: list[str] | None = None
    output_format: str | None = None

    def changes(self) -> dict[str, Any]:
        """The fields to change, as :meth:`Task.with_changes` takes them."""
        out: dict[str, Any] = {}
        if self.objective is not None:
            out["objective"] = self.objective
        if self.agent is not None:
            out["agent"] = self.agent
        if self.needs is not None:
            out["needs"] = tuple(self.needs)
        if "output_format" in self.model_fields_set:
            out["output_format"] = self.output_format
        return out


class Patch(BaseModel):
    """A change to a workflow's unstarted part: tasks to add, ids to remove, tasks to change."""

    model_config = ConfigDict(extra="forbid")

    add: list[TaskSpec] = Field(default_factory=list, description="New tasks.")
    remove: list[str] = Field(default_factory=list, description="Ids of tasks to remove.")
    change: list[TaskChange] = Field(default_factory=list, description="Changes to tasks.")
    reason: str = Field(default="", description="Why the workflow should change (one line).")

    @property
    def is_empty(self) -> bool:
        """Whether the patch changes nothing."""
        return not (self.add or self.remove or self.change)


def apply_patch(graph: Graph, patch: Patch, frozen: Collection[str]) -> Graph:
    """Apply ``patch`` to a copy of ``graph`` and return the copy (``version`` bumped by one).

    ``frozen`` holds the ids of tasks that are running or have ended: the patch may not remove
    or change them, but new or changed tasks may need them. An added id must be new (or removed
    by the same patch). A task that others still need may only be removed if those are removed
    too, or changed to need something else, in the same patch. The result must be a valid
    graph (no cycle, no dangling need, every agent known to ``graph.agents``).

    Raises:
        PatchError: the patch cannot apply; the message says why (``graph`` is unchanged).
    """
    frozen_ids = set(frozen)
    removed = _check_removals(graph, patch, frozen_ids)
    changes = _check_changes(graph, patch, frozen_ids, removed)
    added = _check_additions(graph, patch, removed)

    tasks: list[Task] = []
    for task in graph:
        if task.id in removed:
            continue
        change = changes.get(task.id)
        tasks.append(_changed(task, change) if change else task)
    tasks.extend(added)
    _check_still_needed(tasks, removed - {t.id for t in added})

    patched = graph.copy()
    try:
        patched.update(tasks)
    except WorkflowError as exc:
        raise PatchError(f"the patched workflow is not valid: {exc}", ids=exc.ids) from None
    return patched


def _check_removals(graph: Graph, patch: Patch, frozen: set[str]) -> set[str]:
    unknown = [tid for tid in patch.remove if tid not in graph]
    if unknown:
        raise PatchError(
            f"the patch removes unknown task(s) {_ids(unknown)}: remove only existing ids",
            ids=unknown,
        )
    touched = [tid for tid in patch.remove if tid in frozen]
    if touched:
        raise PatchError(
            f"the patch removes task(s) {_ids(touched)}, which have started or ended: "
            "leave them as they are",
            ids=touched,
        )
    return set(patch.remove)


def _check_changes(
    graph: Graph, patch: Patch, frozen: set[str], removed: set[str]
) -> dict[str, TaskChange]:
    changes: dict[str, TaskChange] = {}
    for change in patch.change:
        tid = change.id
        if tid not in graph:
            raise PatchError(
                f"the patch changes unknown task {tid!r}: add it instead, or use an existing id",
                ids=[tid],
            )
        if tid in frozen:
            raise PatchError(
                f"the patch changes task {tid!r}, which has started or ended: leave it as it is",
                ids=[tid],
            )
        if tid in removed:
            raise PatchError(
                f"the patch both removes and changes task {tid!r}: do one or the other",
                ids=[tid],
            )
        if tid in changes:
            raise PatchError(f"the patch changes task {tid!r} twice: merge the changes", ids=[tid])
        changes[tid] = change
    return changes


def _check_additions(graph: Graph, patch: Patch, removed: set[str]) -> list[Task]:
    seen: set[str] = set()
    added: list[Task] = []
    for spec in patch.add:
        if spec.id in seen:
            raise PatchError(f"the patch adds task {spec.id!r} twice", ids=[spec.id])
        if spec.id in graph and spec.id not in removed:
            raise PatchError(
                f"the patch adds task {spec.id!r}, which exists: choose a new id, or change it",
                ids=[spec.id],
            )
        seen.add(spec.id)
        try:
            added.append(spec.to_task())
        except WorkflowError as exc:
            raise PatchError(f"the patch adds an invalid task: {exc}", ids=exc.ids) from None
    return added


def _changed(task: Task, change: TaskChange) -> Task:
    try:
        return task.with_changes(**change.changes())
    except WorkflowError as exc:
        raise PatchError(f"the patch's change is invalid: {exc}", ids=exc.ids) from None


def _check_still_needed(tasks: list[Task], removed: set[str]) -> None:
    for task in tasks:
        lost = [n for n in task.needs if n in removed]
        if lost:
            raise PatchError(
                f"the patch removes {_ids(lost)}, which task {task.id!r} still needs: remove "
                f"{task.id!r} too, or change its needs",
                ids=[*lost, task.id],
            )


def _ids(ids: Collection[str]) -> str:
    return ", ".join(repr(i) for i in ids)
