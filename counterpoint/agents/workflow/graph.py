"""The AOV graph: :class:`Task` vertices with ``needs`` edges, validated on every change.

A :class:`Graph` holds tasks in insertion order and answers the structural questions the planner
and the scheduler ask: a topological order, longest-path layers, the critical path, each task's
longest remaining path to a sink (the scheduler's priority), and its neighbours. Every change
(:meth:`Graph.add`, :meth:`Graph.remove`, :meth:`Graph.replace`) is validated before it takes
effect: a change that would leave a cycle, a dangling ``needs`` id, a duplicate id or a task
without an agent raises :class:`WorkflowError` naming the ids, and the graph stays as it was.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from counterpoint.errors import CounterpointError

if TYPE_CHECKING:
    from counterpoint.agents.agent import Agent

__all__ = ["Graph", "Task", "WorkflowError"]


class WorkflowError(CounterpointError):
    """A workflow that cannot run as given: the message names the task ids and what to fix.

    ``ids`` are the task ids concerned (the cycle, in order, for a cycle); ``source`` is the file
    the workflow came from, where there is one.
    """

    def __init__(self, message: str, *, ids: Sequence[str] = (), source: str | None = None):
        self.ids = tuple(ids)
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


@dataclass(frozen=True)
class Task:
    """One activity of a workflow.

    Args:
        id: unique within the workflow.
        objective: what the task must achieve (the agent's instruction for it).
        agent: an :class:`~counterpoint.agents.agent.Agent`, or the name of one in the workflow's
            ``agents``.
        needs: ids of the tasks whose results this one needs; it starts once they are all done.
        output_format: what the result should look like (told to the agent), if anything.
        timeout_s: this task's time limit per attempt (None: the workflow's default).
        max_attempts: this task's attempts before it fails (None: the workflow's retry policy).
    """

    id: str
    objective: str
    agent: Agent | str | None = None
    needs: tuple[str, ...] = ()
    output_format: str | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise WorkflowError(f"a task id must be a non-empty string, not {self.id!r}")
        if isinstance(self.needs, str):
            object.__setattr__(self, "needs", (self.needs,))
        else:
            object.__setattr__(self, "needs", tuple(self.needs))
        for need in self.needs:
            if not isinstance(need, str):
                raise WorkflowError(
                    f"task {self.id!r}: needs holds task ids (strings), not {need!r}",
                    ids=[self.id],
                )
        if len(set(self.needs)) != len(self.needs):
            raise WorkflowError(f"task {self.id!r} lists a need twice", ids=[self.id])
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise WorkflowError(f"task {self.id!r}: timeout_s must be positive", ids=[self.id])
        if self.max_attempts is not None and self.max_attempts < 1:
            raise WorkflowError(f"task {self.id!r}: max_attempts must be at least 1", ids=[self.id])

    @property
    def agent_name(self) -> str:
        """The agent's name ("" if none)."""
        if self.agent is None:
            return ""
        return self.agent if isinstance(self.agent, str) else self.agent.name

    def with_changes(self, **changes: Any) -> Task:
        """A copy with some fields changed."""
        return replace(self, **changes)


class Graph:
    """Tasks and their ``needs`` edges; always a valid DAG (see the module doc).

    ``agents`` maps names to agents for tasks that name theirs; a task whose agent is neither an
    :class:`Agent` nor a known name is an error.
    """

    def __init__(
        self,
        tasks: Iterable[Task] = (),
        *,
        agents: Mapping[str, Agent] | None = None,
        source: str | None = None,
    ) -> None:
        self.agents: dict[str, Agent] = dict(agents or {})
        self.source = source
        self._tasks: dict[str, Task] = {}
        self.version = 0
        """Bumped by every change."""
        staged: dict[str, Task] = {}
        for task in tasks:
            if task.id in staged:
                raise WorkflowError(f"duplicate task id {task.id!r}", ids=[task.id], source=source)
            staged[task.id] = task
        self._check(staged)
        self._tasks = staged
        self._derived: _Derived | None = None

    # -- reading ---------------------------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, Task]:
        """The tasks by id, in insertion order (read-only)."""
        return _ReadOnly(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(tuple(self._tasks.values()))

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __getitem__(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise WorkflowError(f"no task {task_id!r} in the workflow", ids=[task_id]) from None

    def agent_of(self, task: Task | str) -> Agent:
        """The agent that runs ``task``."""
        task = self[task] if isinstance(task, str) else task
        if task.agent is None or isinstance(task.agent, str):
            return self.agents[task.agent or ""]
        return task.agent

    def predecessors(self, task_id: str) -> tuple[str, ...]:
        """The ids ``task_id`` needs."""
        return self[task_id].needs

    def successors(self, task_id: str) -> tuple[str, ...]:
        """The ids that need ``task_id``, in insertion order."""
        self[task_id]
        return self._info().successors[task_id]

    def sources(self) -> list[str]:
        """Tasks that need nothing."""
        return [t.id for t in self._tasks.values() if not t.needs]

    def sinks(self) -> list[str]:
        """Tasks nothing needs."""
        succ = self._info().successors
        return [tid for tid in self._tasks if not succ[tid]]

    def topological_order(self) -> list[str]:
        """Every id, each after all it needs; ties in insertion order."""
        return list(self._info().order)

    def layers(self) -> list[list[str]]:
        """Longest-path layering: layer ``k`` holds the tasks whose longest chain of needs has
        ``k`` edges (sources are layer 0)."""
        depth = self._info().depth
        out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for tid in self._tasks:
            out[depth[tid]].append(tid)
        return out

    def critical_path(self, weights: Mapping[str, float] | None = None) -> list[str]:
        """A longest path through the graph (by node count, or by ``weights``)."""
        if not self._tasks:
            return []
        remaining = self.remaining_path(weights)
        succ = self._info().successors
        current = max(self.sources(), key=lambda t: remaining[t])
        path = [current]
        while succ[current]:
            current = max(succ[current], key=lambda t: remaining[t])
            path.append(current)
        return path

    def critical_path_length(self, weights: Mapping[str, float] | None = None) -> float:
        """The length of a longest path (nodes, or the sum of ``weights`` along it)."""
        remaining = self.remaining_path(weights)
        return max(remaining.values(), default=0.0)

    def remaining_path(self, weights: Mapping[str, float] | None = None) -> dict[str, float]:
        """For each task, the longest path from it to a sink, itself included (the priority the
        scheduler orders its ready set by): in nodes, or in the sum of ``weights``."""
        if weights is None:
            return dict(self._info().remaining)
        return _remaining(self._info().order, self._info().successors, weights)

    def degrees(self) -> dict[str, int]:
        """Each task's degree (needs plus dependents)."""
        succ = self._info().successors
        return {tid: len(t.needs) + len(succ[tid]) for tid, t in self._tasks.items()}

    def descendants(self, task_id: str) -> list[str]:
        """Every task that depends on ``task_id``, directly or not, in topological order."""
        succ = self._info().successors
        seen: set[str] = set()
        stack = list(succ[self[task_id].id])
        while stack:
            tid = stack.pop()
            if tid not in seen:
                seen.add(tid)
                stack.extend(succ[tid])
        return [tid for tid in self._info().order if tid in seen]

    def ancestors(self, task_id: str) -> list[str]:
        """Every task ``task_id`` depends on, directly or not, in topological order."""
        seen: set[str] = set()
        stack = list(self[task_id].needs)
        while stack:
            tid = stack.pop()
            if tid not in seen:
                seen.add(tid)
                stack.extend(self._tasks[tid].needs)
        return [tid for tid in self._info().order if tid in seen]

    # -- changing --------------------------------------------------------------------------------

    def add(self, task: Task) -> None:
        """Add ``task`` (validated with the rest; nothing changes if it is refused)."""
        if task.id in self._tasks:
            raise WorkflowError(f"duplicate task id {task.id!r}", ids=[task.id])
        self._commit({**self._tasks, task.id: task})

    def replace(self, task: Task) -> None:
        """Replace the task with ``task.id`` by ``task``."""
        self[task.id]
        self._commit({tid: (task if tid == task.id else t) for tid, t in self._tasks.items()})

    def remove(self, task_id: str) -> None:
        """Remove a task; tasks that need it are an error (remove or rewire them first)."""
        self[task_id]
        staged = {tid: t for tid, t in self._tasks.items() if tid != task_id}
        self._commit(staged)

    def update(self, tasks: Iterable[Task]) -> None:
        """Replace the whole task set at once (validated as a whole)."""
        staged: dict[str, Task] = {}
        for task in tasks:
            if task.id in staged:
                raise WorkflowError(f"duplicate task id {task.id!r}", ids=[task.id])
            staged[task.id] = task
        self._commit(staged)

    def copy(self) -> Graph:
        """An independent copy (the same Task and Agent objects)."""
        twin = Graph(agents=self.agents, source=self.source)
        twin._tasks = dict(self._tasks)
        twin.version = self.version
        return twin

    def validate(self) -> None:
        """Check the graph as it stands (it always is valid unless ``agents`` was edited)."""
        self._check(self._tasks)

    # -- serialising -----------------------------------------------------------------------------

    def to_dicts(self) -> list[dict[str, Any]]:
        """The tasks as plain dicts (agents by name), in insertion order."""
        out: list[dict[str, Any]] = []
        for t in self._tasks.values():
            item: dict[str, Any] = {
                "id": t.id,
                "objective": t.objective,
                "agent": t.agent_name,
                "needs": list(t.needs),
            }
            if t.output_format is not None:
                item["output_format"] = t.output_format
            if t.timeout_s is not None:
                item["timeout_s"] = t.timeout_s
            if t.max_attempts is not None:
                item["max_attempts"] = t.max_attempts
            out.append(item)
        return out

    # -- internals -------------------------------------------------------------------------------

    def _commit(self, staged: dict[str, Task]) -> None:
        self._check(staged)
        self._tasks = staged
        self._derived = None
        self.version += 1

    def _check(self, tasks: Mapping[str, Task]) -> None:
        src = self.source
        missing_agent = [t.id for t in tasks.values() if not t.agent_name]
        if missing_agent:
            raise WorkflowError(
                f"task(s) {_ids(missing_agent)} have no agent: give each task an agent",
                ids=missing_agent,
                source=src,
            )
        unknown = sorted(
            {t.agent for t in tasks.values() if isinstance(t.agent, str)} - set(self.agents)
        )
        if unknown:
            users = [
                t.id for t in tasks.values() if isinstance(t.agent, str) and t.agent in unknown
            ]
            known = ", ".join(sorted(self.agents)) or "none"
            raise WorkflowError(
                f"task(s) {_ids(users)} name unknown agent(s) {_ids(unknown)} (known: {known})",
                ids=users,
                source=src,
            )
        for t in tasks.values():
            if t.id in t.needs:
                raise WorkflowError(f"task {t.id!r} needs itself", ids=[t.id], source=src)
            dangling = [n for n in t.needs if n not in tasks]
            if dangling:
                raise WorkflowError(
                    f"task {t.id!r} needs unknown task(s) {_ids(dangling)}",
                    ids=[t.id, *dangling],
                    source=src,
                )
        cycle = _find_cycle(tasks)
        if cycle:
            raise WorkflowError(
                "the tasks form a cycle: " + " -> ".join([*cycle, cycle[0]]) + " (remove a need)",
                ids=cycle,
                source=src,
            )

    def _info(self) -> _Derived:
        if self._derived is None:
            self._derived = _derive(self._tasks)
        return self._derived


@dataclass(frozen=True)
class _Derived:
    order: tuple[str, ...]
    successors: dict[str, tuple[str, ...]]
    depth: dict[str, int]
    remaining: dict[str, float]


def _derive(tasks: Mapping[str, Task]) -> _Derived:
    successors: dict[str, list[str]] = {tid: [] for tid in tasks}
    indegree = {tid: len(t.needs) for tid, t in tasks.items()}
    for t in tasks.values():
        for need in t.needs:
            successors[need].append(t.id)
    position = {tid: i for i, tid in enumerate(tasks)}
    heap = [position[tid] for tid, d in indegree.items() if d == 0]
    heapq.heapify(heap)
    ids = list(tasks)
    order: list[str] = []
    while heap:
        tid = ids[heapq.heappop(heap)]
        order.append(tid)
        for nxt in successors[tid]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(heap, position[nxt])
    depth: dict[str, int] = {}
    for tid in order:
        depth[tid] = max((depth[n] + 1 for n in tasks[tid].needs), default=0)
    succ = {tid: tuple(s) for tid, s in successors.items()}
    return _Derived(tuple(order), succ, depth, _remaining(order, succ, None))


def _remaining(
    order: Sequence[str],
    successors: Mapping[str, Sequence[str]],
    weights: Mapping[str, float] | None,
) -> dict[str, float]:
    out: dict[str, float] = {}
    for tid in reversed(order):
        own = 1.0 if weights is None else float(weights.get(tid, 0.0))
        out[tid] = own + max((out[s] for s in successors[tid]), default=0.0)
    return out


def _find_cycle(tasks: Mapping[str, Task]) -> list[str]:
    """A cycle as a list of ids (each needs the next... in edge order), or [] if none."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(tasks, white)
    for root in tasks:
        if color[root] != white:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(tasks[root].needs))]
        path = [root]
        color[root] = grey
        while stack:
            node, children = stack[-1]
            nxt = next(children, None)
            if nxt is None:
                stack.pop()
                path.pop()
                color[node] = black
                continue
            if nxt not in color:
                continue
            if color[nxt] == grey:
                cycle = path[path.index(nxt) :]
                # path runs along "needs" edges; report it in dependency order (a before b)
                return list(reversed(cycle))
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append((nxt, iter(tasks[nxt].needs)))
    return []


def _ids(ids: Iterable[str]) -> str:
    return ", ".join(repr(i) for i in ids)


class _ReadOnly(Mapping[str, Task]):
    def __init__(self, data: dict[str, Task]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Task:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{{{', '.join(map(repr, self._data))}}}"
