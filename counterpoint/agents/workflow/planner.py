"""The planner: an agent that writes a workflow as JSON, and later proposes patches to it.

:meth:`Planner.plan` asks the planner agent for ``K`` candidate graphs (one run each, run
concurrently, each request worded a little differently), validates every answer (the JSON shape,
then the graph: no cycle, no dangling need, every agent known) and re-asks in the same
conversation with the error when an answer does not validate. The valid candidates are scored
with Flow's measures and the best is chosen (:mod:`.scoring`).

:meth:`Planner.propose_patch` shows the planner the workflow as it runs (objectives, statuses,
results, failures, and which tasks may no longer change) and asks for a :class:`~.patch.Patch`,
or ``NONE``. :meth:`Planner.refiner` wraps that as a scheduler refiner.

Answers are parsed, never evaluated: the first JSON object in the text (code fences and prose
around it are fine) that has the expected shape is used.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from counterpoint.agents.workflow.graph import Graph, WorkflowError
from counterpoint.agents.workflow.patch import Patch, PatchError, TaskSpec, apply_patch
from counterpoint.agents.workflow.scheduler import Proposal
from counterpoint.agents.workflow.scoring import Score, choose
from counterpoint.errors import ConfigError
from counterpoint.runtime.backends.base import Message

if TYPE_CHECKING:
    from counterpoint.agents.agent import Agent
    from counterpoint.agents.workflow.outcome import TaskOutcome
    from counterpoint.agents.workflow.scheduler import Refinement, Refiner

__all__ = [
    "PlanCandidate",
    "PlanResult",
    "PlanTask",
    "Planner",
    "candidate_schema",
    "patch_schema",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_VARIATIONS = (
    "favour parallel tasks: split the work into independent pieces wherever the goal allows",
    "favour simple dependencies: a shallow graph in which each task needs as little as possible",
    "favour a small plan: the fewest concrete tasks that achieve the goal",
)

_GUIDANCE = """\
Guidelines:
- Maximise concurrency: tasks that do not use each other's results must not depend on each \
other, so that they run at the same time.
- Minimise dependency complexity: a task needs only the tasks whose results it really uses; \
avoid one task that everything needs or that needs everything, unless the goal requires it.
- Make every task concrete: its objective says exactly what to produce, and it can be done by \
its agent alone with the results of the tasks it needs.
- Use few tasks: as few as the goal allows, and at most {max_tasks}.
- Ids are short and unique; "needs" names only ids of this plan; no cycles."""

_PLAN_SHAPE = (
    '{"tasks": [{"id": "short_id", "objective": "what the task must produce, concretely", '
    '"agent": "one of the agent names", "needs": ["ids of tasks whose results it uses"], '
    '"output_format": "optional: what the result should look like"}]}'
)

_PATCH_SHAPE = (
    '{"add": [{"id": "new_id", "objective": "...", "agent": "agent name", "needs": ["ids"], '
    '"output_format": "optional"}], "remove": ["ids of pending tasks"], '
    '"change": [{"id": "a pending task", "objective": "...", "agent": "...", '
    '"needs": ["..."], "output_format": "..."}], "reason": "one line: why"}'
)

_MAX_SCAN = 200_000
"""Characters of an answer searched for JSON (an answer longer than this is cut)."""


class PlanTask(TaskSpec):
    """One task of a candidate plan: ``id``, ``objective``, ``agent`` (by name), ``needs`` (ids),
    and an optional ``output_format``."""


class PlanCandidate(BaseModel):
    """A candidate plan as the planner writes it: ``{"tasks": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[PlanTask] = Field(min_length=1, description="The tasks of the workflow.")


def candidate_schema() -> dict[str, Any]:
    """The JSON schema of a candidate plan (for a backend that constrains its output to one)."""
    return PlanCandidate.model_json_schema()


def patch_schema() -> dict[str, Any]:
    """The JSON schema of a patch (for a backend that constrains its output to one)."""
    return Patch.model_json_schema()


@dataclass(frozen=True)
class PlanResult:
    """What :meth:`Planner.plan` produced.

    ``graph`` is ``candidates[chosen]``; ``scores[i]`` scores ``candidates[i]``; ``failures``
    holds every rejected answer's reason (``"candidate 2, attempt 1: ..."``), including those
    of candidates that were fixed on a re-ask.
    """

    graph: Graph
    candidates: list[Graph]
    scores: list[Score]
    chosen: int
    failures: list[str] = field(default_factory=list)


class _Invalid(Exception):
    """An answer that does not validate; the message is what the planner is told."""


@dataclass
class _Outcome(Generic[T]):
    value: T | None
    errors: list[str]


class Planner:
    """Writes workflows with an agent (see the module doc).

    Args:
        agent: the planner agent (its instructions are the system prompt; it needs no tools).
            A plan of ``max_tasks`` tasks is a few hundred tokens: give it ``params`` with a
            ``max_tokens`` that leaves room (an answer cut off at the limit is re-asked).
        candidates: how many candidate graphs to ask for (Flow's K).
        max_attempts: answers asked for per candidate (or per patch), re-asks included.
        max_tasks: the most tasks a plan may have.
        result_chars: how much of each task's result (and failure) a patch request shows.
        concurrent: ask for the candidates at the same time (False: one after another).
    """

    def __init__(
        self,
        agent: Agent,
        *,
        candidates: int = 3,
        max_attempts: int = 3,
        max_tasks: int = 12,
        result_chars: int = 600,
        concurrent: bool = True,
    ) -> None:
        for name, value in (
            ("candidates", candidates),
            ("max_attempts", max_attempts),
            ("max_tasks", max_tasks),
            ("result_chars", result_chars),
        ):
            if value < 1:
                raise ConfigError(f"Planner: {name} must be at least 1, not {value}")
        self.agent = agent
        self.candidates = candidates
        self.max_attempts = max_attempts
        self.max_tasks = max_tasks
        self.result_chars = result_chars
        self.concurrent = concurrent

    # -- planning --------------------------------------------------------------------------------

    async def plan(
        self, goal: str, agents: Mapping[str, Agent], *, context: str = ""
    ) -> PlanResult:
        """Ask for ``candidates`` graphs for ``goal`` run by ``agents`` and choose the best.

        ``context`` is anything else the planner should know (inputs, constraints).

        Raises:
            WorkflowError: no candidate validated within ``max_attempts`` answers.
        """
        if not agents:
            raise ConfigError("Planner.plan needs at least one agent to give tasks to")
        k = self.candidates
        prompts = [self.plan_prompt(goal, agents, context=context, index=i, of=k) for i in range(k)]

        def parse(text: str) -> Graph:
            return _parse_candidate(text, agents, self.max_tasks)

        if self.concurrent and k > 1:
            outcomes = await _gather([self._converse(p, parse, _PLAN_REASK) for p in prompts])
        else:
            outcomes = [await self._converse(p, parse, _PLAN_REASK) for p in prompts]

        failures = [
            f"candidate {i + 1}, attempt {j + 1}: {err}"
            for i, out in enumerate(outcomes)
            for j, err in enumerate(out.errors)
        ]
        graphs = [out.value for out in outcomes if out.value is not None]
        if not graphs:
            last = outcomes[-1].errors[-1] if outcomes[-1].errors else "no answer"
            raise WorkflowError(
                f"the planner could not produce a valid graph ({k} candidate(s), "
                f"{self.max_attempts} attempt(s) each); the last error: {last}. Raise "
                "max_attempts, use a stronger planner model, or write the graph yourself"
            )
        chosen, scores = choose(graphs)
        return PlanResult(graphs[chosen], graphs, scores, chosen, failures)

    def plan_prompt(
        self,
        goal: str,
        agents: Mapping[str, Agent],
        *,
        context: str = "",
        index: int = 0,
        of: int = 1,
    ) -> str:
        """The request for candidate ``index`` (from 0) of ``of``."""
        parts = [
            "Plan a workflow for the goal below: a graph of tasks, each run by one of the "
            "agents, each starting as soon as the tasks it needs are done.",
            f"Goal:\n{goal.strip()}",
        ]
        if context.strip():
            parts.append(f"Context:\n{context.strip()}")
        parts.append("Agents (use these names exactly):\n" + _agent_lines(agents))
        parts.append(_GUIDANCE.format(max_tasks=self.max_tasks))
        if of > 1:
            variation = _VARIATIONS[index % len(_VARIATIONS)]
            parts.append(f"This is candidate {index + 1} of {of}: {variation}.")
        parts.append("Answer with ONE JSON object of this shape and nothing else:\n" + _PLAN_SHAPE)
        return "\n\n".join(parts)

    # -- refining --------------------------------------------------------------------------------

    async def propose_patch(
        self,
        goal: str,
        graph: Graph,
        outcomes: Mapping[str, TaskOutcome],
        running: Collection[str],
    ) -> Patch | None:
        """Ask for a patch to ``graph`` given how its tasks went; None for no change.

        The answer is only checked as a :class:`Patch` (its shape); whether it applies is for
        :func:`~.patch.apply_patch`, at the moment it is applied.

        Raises:
            WorkflowError: no answer was ``NONE`` or a valid patch within ``max_attempts``.
        """
        prompt = self.patch_prompt(goal, graph, outcomes, running)
        out = await self._converse(prompt, _parse_patch, _PATCH_REASK)
        if out.value is None:
            last = out.errors[-1] if out.errors else "no answer"
            raise WorkflowError(
                f"the planner could not propose a valid patch in {self.max_attempts} "
                f"attempt(s); the last error: {last}. Raise max_attempts or use a stronger "
                "planner model"
            )
        patch = out.value
        return None if patch.is_empty else patch

    def patch_prompt(
        self,
        goal: str,
        graph: Graph,
        outcomes: Mapping[str, TaskOutcome],
        running: Collection[str],
    ) -> str:
        """The request for a patch: the workflow as it stands, and what may change."""
        running_ids = set(running)
        frozen = [tid for tid in graph.tasks if tid in running_ids or tid in outcomes]
        finished = [tid for tid in frozen if tid in outcomes and outcomes[tid].finished]
        agents = dict(graph.agents)
        for task in graph:
            if task.agent is not None and not isinstance(task.agent, str):
                agents.setdefault(task.agent.name, task.agent)
        lines = [
            self._task_block(task.id, graph, outcomes.get(task.id), task.id in running_ids)
            for task in graph
        ]
        parts = [
            "You refine a workflow while it runs: a graph of tasks, each run by an agent as soon "
            "as the tasks it needs are done.",
            f"Goal:\n{goal.strip()}",
            "Agents:\n" + _agent_lines(agents),
            "Tasks:\n" + "\n".join(lines),
            (
                "Tasks that have started or ended may not be removed or changed: "
                + (", ".join(frozen) if frozen else "(none yet)")
                + ". New tasks may need the tasks that finished"
                + (f" ({', '.join(finished)})" if finished else "")
                + "; a task that is still needed may only be removed if the tasks that need it "
                "are removed or changed too."
            ),
            "Change only what the results and failures call for: add a task for something "
            "missing, rewrite or rewire a pending task that a failure blocks, remove a pending "
            "task that is no longer needed.",
            "If the workflow will reach the goal as it is, answer NONE. Otherwise answer with ONE "
            "JSON object of this shape and nothing else (leave out what you do not use; a "
            "change lists only the fields it changes):\n" + _PATCH_SHAPE,
        ]
        return "\n\n".join(parts)

    def refiner(self, goal: str) -> Refiner:
        """A scheduler refiner: proposes a patch and returns the patched graph (None for no
        change); a patch that does not apply raises :class:`~.patch.PatchError`, which the
        scheduler records as a rejected patch."""

        async def refine(view: Refinement) -> Proposal | None:
            patch = await self.propose_patch(goal, view.graph, view.outcomes, view.running)
            if patch is None:
                return None
            try:
                graph = apply_patch(view.graph, patch, view.frozen)
            except PatchError as exc:
                raise PatchError(f"{exc} (patch: {patch.model_dump_json()})") from exc
            return Proposal(graph, patch.model_dump(mode="json"))

        return refine

    # -- internals -------------------------------------------------------------------------------

    def _task_block(
        self, tid: str, graph: Graph, outcome: TaskOutcome | None, running: bool
    ) -> str:
        task = graph[tid]
        status = "running" if running else (outcome.status if outcome else "pending")
        needs = ", ".join(task.needs) if task.needs else "nothing"
        block = [
            f"- {tid} [agent: {task.agent_name}; status: {status}; needs: {needs}]",
            f"  objective: {_one_line(task.objective)}",
        ]
        if task.output_format:
            block.append(f"  output format: {_one_line(task.output_format)}")
        if outcome is not None and outcome.result:
            block.append(f"  result: {_truncate(outcome.result, self.result_chars)}")
        if outcome is not None and outcome.error:
            block.append(f"  failure: {_truncate(outcome.error, self.result_chars)}")
        return "\n".join(block)

    async def _converse(self, prompt: str, parse: Callable[[str], T], reask: str) -> _Outcome[T]:
        """Ask, and re-ask in the same conversation with the error, until ``parse`` accepts an
        answer or ``max_attempts`` answers were given."""
        messages = [Message(role="user", content=prompt)]
        errors: list[str] = []
        for _ in range(self.max_attempts):
            result = await self.agent.run(messages)
            if result.status not in ("ok", "limit"):
                detail = f": {result.error}" if result.error else ""
                errors.append(f"the planner's run ended with status {result.status!r}{detail}")
                continue
            try:
                return _Outcome(parse(result.text), errors)
            except _Invalid as exc:
                reason = str(exc)
                if result.status == "limit":
                    reason += (
                        " (the answer was cut off at the token limit: give the planner agent "
                        "params with a larger max_tokens)"
                    )
                errors.append(reason)
                messages = [
                    *messages,
                    Message(role="assistant", content=result.text),
                    Message(role="user", content=reask.format(error=reason)),
                ]
        return _Outcome(None, errors)


_PLAN_REASK = (
    "That answer is not a valid plan: {error}\n"
    "Reply with the corrected plan: ONE JSON object of the same shape, and nothing else."
)
_PATCH_REASK = (
    "That answer is not a valid patch: {error}\n"
    "Reply with the corrected patch as ONE JSON object of the same shape, or NONE, and "
    "nothing else."
)


async def _gather(jobs: Sequence[Awaitable[T]]) -> list[T]:
    """Run coroutines concurrently; if one raises, cancel the others and re-raise."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- parsing answers -----------------------------------------------------------------------------


def _parse_candidate(text: str, agents: Mapping[str, Agent], max_tasks: int) -> Graph:
    plan = _first_valid(text, PlanCandidate)
    if len(plan.tasks) > max_tasks:
        raise _Invalid(
            f"the plan has {len(plan.tasks)} tasks; use at most {max_tasks} (merge small steps)"
        )
    try:
        return Graph([spec.to_task() for spec in plan.tasks], agents=agents)
    except WorkflowError as exc:
        raise _Invalid(str(exc)) from None


def _parse_patch(text: str) -> Patch:
    if not _json_objects(text).objects and _says_none(text):
        return Patch()
    return _first_valid(text, Patch)


def _says_none(text: str) -> bool:
    stripped = text.strip().strip("`'\".!").strip()
    return stripped.upper() == "NONE" or re.search(r"\bNONE\b", text) is not None


def _first_valid(text: str, model: type[M]) -> M:
    """The first JSON object in ``text`` that validates as ``model``."""
    found = _json_objects(text)
    if not found.objects:
        if found.syntax_error:
            raise _Invalid(f"the JSON is malformed: {found.syntax_error}")
        raise _Invalid("the answer holds no JSON object")
    first_error: ValidationError | None = None
    for obj in found.objects:
        try:
            return model.model_validate(obj)
        except ValidationError as exc:
            first_error = first_error or exc
    assert first_error is not None
    if found.syntax_error and found.broken_first:
        # the objects found are likely fragments of the broken one: its syntax is the problem
        raise _Invalid(f"the JSON is malformed: {found.syntax_error}")
    raise _Invalid(_describe(first_error))


@dataclass(frozen=True)
class _Found:
    objects: list[dict[str, Any]]
    syntax_error: str | None
    """The first syntax error met, if any."""
    broken_first: bool
    """Whether that error came before the first object found."""


def _json_objects(text: str) -> _Found:
    """Every top-level JSON object in ``text``, in order (objects nested in one are not listed
    separately; neither are those inside an object broken by a syntax error, up to the error).
    Nothing is evaluated."""
    text = text[:_MAX_SCAN]
    decoder = json.JSONDecoder(strict=False)  # tolerate raw newlines inside strings
    found: list[dict[str, Any]] = []
    first_error: str | None = None
    broken_first = False
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            if first_error is None:
                first_error = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
                broken_first = not found
            start = text.find("{", max(exc.pos, start + 1))
            continue
        if isinstance(value, dict):
            found.append(value)
        start = text.find("{", end)
    return _Found(found, first_error, broken_first)


def _describe(error: ValidationError, limit: int = 6) -> str:
    """A validation error as short lines: ``tasks.1.agent: Field required``."""
    items = error.errors(include_url=False)
    lines = []
    for item in items[:limit]:
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{loc}: {item['msg']}")
    if len(items) > limit:
        lines.append(f"... and {len(items) - limit} more")
    return "; ".join(lines)


# -- prompt pieces -------------------------------------------------------------------------------


def _agent_lines(agents: Mapping[str, Agent]) -> str:
    lines = []
    for name, agent in agents.items():
        first = next((ln.strip() for ln in agent.instructions.splitlines() if ln.strip()), "")
        lines.append(f"- {name}: {first}" if first else f"- {name}")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _truncate(text: str, limit: int) -> str:
    flat = _one_line(text)
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}… [cut: {len(flat)} characters in all]"
