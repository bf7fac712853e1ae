"""The planner: candidate graphs from a scripted planner agent, validation with re-asks in the
same conversation, the z-score choice, and patch proposals."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from counterpoint.agents.agent import Agent
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.outcome import TaskOutcome
from counterpoint.agents.workflow.patch import Patch
from counterpoint.agents.workflow.planner import (
    PlanCandidate,
    Planner,
    candidate_schema,
    patch_schema,
)
from counterpoint.agents.workflow.scheduler import Refinement
from counterpoint.core.bus import RunScope
from counterpoint.core.calls import ToolSpec
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams
from counterpoint.testing.scripted import ScriptedDecoder, ScriptedModel

Answer = Callable[[list[Message]], str]


class Answers:
    """A Model whose every run answers by a function of the conversation it is given (the
    answer is replayed by a ScriptedModel), and that records each conversation."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.conversations: list[list[Message]] = []

    @property
    def name(self) -> str:
        return "answers"

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> ScriptedDecoder:
        assert not isinstance(context, Prompt)
        messages = list(context)
        self.conversations.append(messages)
        return await ScriptedModel(self.answer(messages)).start(
            messages, params, tools=tools, async_results=async_results, scope=scope
        )


def planner_with(answer: Answer, **kw: Any) -> tuple[Planner, Answers]:
    model = Answers(answer)
    agent = Agent("planner", "You plan workflows.", model=model, tracer=False)
    return Planner(agent, **kw), model


WORKER = Agent("researcher", "Finds facts.\nSecond line, not shown.", model="x", tracer=False)
WRITER = Agent("writer", "Writes prose.", model="x", tracer=False)
AGENTS = {"researcher": WORKER, "writer": WRITER}


def plan_json(*tasks: tuple[str, str, list[str]]) -> str:
    return json.dumps(
        {
            "tasks": [
                {"id": tid, "objective": f"do {tid}", "agent": agent, "needs": needs}
                for tid, agent, needs in tasks
            ]
        }
    )


WIDE = plan_json(
    ("r1", "researcher", []),
    ("r2", "researcher", []),
    ("r3", "researcher", []),
    ("w", "writer", ["r1", "r2", "r3"]),
)  # P = 4/2 = 2, degrees 1,1,1,3: C ≈ 0.87
LINE = plan_json(
    ("r1", "researcher", []),
    ("r2", "researcher", ["r1"]),
    ("w", "writer", ["r2"]),
)  # P = 1, degrees 1,2,1: C ≈ 0.47
PAIR = plan_json(
    ("r1", "researcher", []),
    ("r2", "researcher", []),
    ("w", "writer", ["r1"]),
)  # P = 3/2, degrees 1,0,1: C ≈ 0.47


def candidate(messages: list[Message]) -> int:
    """Which candidate a conversation asks for (1-based)."""
    found = re.search(r"candidate (\d+) of", messages[1].content)
    return int(found.group(1)) if found else 1


def turn(messages: list[Message]) -> int:
    """How many times the planner has been asked in this conversation (1 = first ask)."""
    return sum(m.role == "user" for m in messages)


async def test_plan_prompt_lists_agents_goal_shape_and_guidance() -> None:
    planner, model = planner_with(lambda m: LINE, candidates=2)
    await planner.plan("Write a report on tides.", AGENTS, context="Use two sources.")
    first, second = (c[1].content for c in model.conversations)
    assert model.conversations[0][0] == Message(role="system", content="You plan workflows.")
    for text in (first, second):
        assert "Write a report on tides." in text and "Use two sources." in text
        assert "- researcher: Finds facts." in text and "Second line" not in text
        assert "- writer: Writes prose." in text
        assert '{"tasks": [{"id":' in text
        assert "Maximise concurrency" in text and "Minimise dependency complexity" in text
        assert "at most 12" in text
    assert "candidate 1 of 2: favour parallel tasks" in first
    assert "candidate 2 of 2: favour simple dependencies" in second


async def test_garbage_then_valid_json_reasks_with_the_error() -> None:
    def answer(messages: list[Message]) -> str:
        if turn(messages) == 1:
            return "Sure! Here is my plan: first research, then write."
        return "```json\n" + LINE + "\n```"

    planner, model = planner_with(answer, candidates=1)
    result = await planner.plan("Report on tides.", AGENTS)
    assert list(result.graph.tasks) == ["r1", "r2", "w"]
    assert result.graph["w"].agent_name == "writer" and result.graph["w"].needs == ("r2",)
    assert result.failures == ["candidate 1, attempt 1: the answer holds no JSON object"]
    # the re-ask continues the same conversation: the bad answer, then the error
    reask = model.conversations[1]
    assert [m.role for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[2].content == "Sure! Here is my plan: first research, then write."
    assert "not a valid plan: the answer holds no JSON object" in reask[3].content


async def test_malformed_and_misshapen_json_errors_are_reported() -> None:
    answers = iter(
        [
            '{"tasks": [{"id": "a",}]}',
            '{"tasks": [{"id": "a", "objective": "x", "agent": "writer", "depends_on": []}]}',
            LINE,
        ]
    )
    planner, model = planner_with(lambda m: next(answers), candidates=1)
    result = await planner.plan("g", AGENTS)
    assert len(result.graph) == 3
    assert "the JSON is malformed" in result.failures[0]
    assert "tasks.0.depends_on: Extra inputs are not permitted" in result.failures[1]
    assert "tasks.0.depends_on" in model.conversations[2][-1].content


async def test_cyclic_candidate_rejected_then_fixed() -> None:
    cyclic = plan_json(("a", "researcher", ["b"]), ("b", "writer", ["a"]))

    def answer(messages: list[Message]) -> str:
        return cyclic if turn(messages) == 1 else PAIR

    planner, model = planner_with(answer, candidates=1)
    result = await planner.plan("g", AGENTS)
    assert list(result.graph.tasks) == ["r1", "r2", "w"]
    assert len(result.failures) == 1 and "cycle" in result.failures[0]
    assert "the tasks form a cycle" in model.conversations[1][-1].content


async def test_unknown_agent_dangling_need_and_too_many_tasks_are_rejected() -> None:
    unknown = plan_json(("a", "poet", []))
    dangling = plan_json(("a", "writer", ["ghost"]))
    big = plan_json(*((f"t{i}", "writer", []) for i in range(5)))
    answers = iter([unknown, dangling, big, LINE])
    planner, _ = planner_with(lambda m: next(answers), candidates=1, max_attempts=4, max_tasks=4)
    result = await planner.plan("g", AGENTS)
    assert len(result.graph) == 3
    assert "unknown agent(s) 'poet'" in result.failures[0]
    assert "needs unknown task(s) 'ghost'" in result.failures[1]
    assert "the plan has 5 tasks; use at most 4" in result.failures[2]


async def test_all_candidates_invalid_raise() -> None:
    planner, model = planner_with(lambda m: "I cannot plan this.", candidates=2, max_attempts=2)
    with pytest.raises(WorkflowError, match="could not produce a valid graph") as err:
        await planner.plan("g", AGENTS)
    assert "the answer holds no JSON object" in str(err.value)
    assert len(model.conversations) == 4  # 2 candidates x 2 attempts


async def test_a_dropped_candidate_does_not_stop_the_others() -> None:
    def answer(messages: list[Message]) -> str:
        return "no plan" if candidate(messages) == 2 else LINE

    planner, _ = planner_with(answer, candidates=3, max_attempts=2)
    result = await planner.plan("g", AGENTS)
    assert len(result.candidates) == 2
    assert result.failures == [
        "candidate 2, attempt 1: the answer holds no JSON object",
        "candidate 2, attempt 2: the answer holds no JSON object",
    ]


@pytest.mark.parametrize("concurrent", [True, False])
async def test_choose_among_three_by_z_score(concurrent: bool) -> None:
    answers = {1: LINE, 2: WIDE, 3: PAIR}
    planner, _ = planner_with(lambda m: answers[candidate(m)], concurrent=concurrent)
    result = await planner.plan("g", AGENTS)
    assert [len(g) for g in result.candidates] == [3, 4, 3]
    p = [s.parallelism for s in result.scores]
    c = [s.complexity for s in result.scores]
    assert p == pytest.approx([1.0, 2.0, 1.5])
    assert c == pytest.approx([0.4714, 0.8660, 0.4714], abs=1e-4)
    z_p = [s.z_parallelism for s in result.scores]
    z_c = [s.z_complexity for s in result.scores]
    assert z_p == pytest.approx([-1.2247, 1.2247, 0.0], abs=1e-4)
    assert z_c == pytest.approx([-0.7071, 1.4142, -0.7071], abs=1e-4)
    # PAIR wins: as simple as LINE (the lowest C) but more parallel. WIDE is the most parallel,
    # but its complexity stands out more (z(C) = +1.41 against z(P) = +1.22); LINE is the least
    # parallel and scores worst.
    assert [s.score for s in result.scores] == pytest.approx([0.5176, 0.1895, -0.7071], abs=1e-4)
    assert result.chosen == 2 and result.graph is result.candidates[2]
    assert result.failures == []


def test_schemas() -> None:
    schema = candidate_schema()
    assert schema["properties"]["tasks"]["type"] == "array"
    assert set(patch_schema()["properties"]) == {"add", "remove", "change", "reason"}
    parsed = PlanCandidate.model_validate_json(LINE)
    assert [t.id for t in parsed.tasks] == ["r1", "r2", "w"]


# -- patches -------------------------------------------------------------------------------------


def running_graph() -> Graph:
    return Graph(
        [
            Task("r1", "find tide tables", "researcher"),
            Task("r2", "find moon phases", "researcher"),
            Task("w", "write the report", "writer", needs=("r1", "r2")),
        ],
        agents=AGENTS,
    )


OUTCOMES = {
    "r1": TaskOutcome("r1", "ok", result="High tide 06:12. " * 100),
    "r2": TaskOutcome("r2", "failed", error="the source was unreachable"),
}
GOOD_PATCH = json.dumps(
    {
        "add": [
            {"id": "r3", "objective": "moon phases from another source", "agent": "researcher"}
        ],
        "change": [{"id": "w", "needs": ["r1", "r3"]}],
        "reason": "r2 failed",
    }
)


async def test_patch_prompt_shows_statuses_results_failures_and_frozen() -> None:
    planner, model = planner_with(lambda m: GOOD_PATCH, result_chars=100)
    patch = await planner.propose_patch("Report on tides.", running_graph(), OUTCOMES, {"x"})
    assert isinstance(patch, Patch) and patch.reason == "r2 failed"
    text = model.conversations[0][1].content
    assert "Report on tides." in text
    assert "- r1 [agent: researcher; status: ok; needs: nothing]" in text
    assert "- r2 [agent: researcher; status: failed; needs: nothing]" in text
    assert "failure: the source was unreachable" in text
    assert "- w [agent: writer; status: pending; needs: r1, r2]" in text
    assert "[cut: 1699 characters in all]" in text  # the result is bounded
    assert "may not be removed or changed: r1, r2." in text
    assert "New tasks may need the tasks that finished (r1)" in text
    assert "answer NONE" in text


async def test_patch_proposal_valid_applies_through_the_refiner() -> None:
    planner, _ = planner_with(lambda m: "Here you go:\n```json\n" + GOOD_PATCH + "\n```")
    refine = planner.refiner("Report on tides.")
    g = running_graph()
    view = Refinement(g, OUTCOMES, frozenset())
    proposal = await refine(view)
    assert proposal is not None and proposal.patch["add"][0]["id"] == "r3"
    new = proposal.graph
    assert new.version == g.version + 1
    assert list(new.tasks) == ["r1", "r2", "w", "r3"] and new["w"].needs == ("r1", "r3")


@pytest.mark.parametrize(
    "answer", ["NONE", "none.", "`NONE`", "No change is needed: NONE", '{"reason": "all fine"}']
)
async def test_patch_proposal_none(answer: str) -> None:
    planner, _ = planner_with(lambda m: answer)
    assert await planner.propose_patch("g", running_graph(), OUTCOMES, ()) is None
    assert await planner.refiner("g")(Refinement(running_graph(), OUTCOMES, frozenset())) is None


async def test_patch_invalid_json_then_valid() -> None:
    def answer(messages: list[Message]) -> str:
        return '{"add": [{"id": "r3"}' if turn(messages) == 1 else GOOD_PATCH

    planner, model = planner_with(answer)
    patch = await planner.propose_patch("g", running_graph(), OUTCOMES, ())
    assert patch is not None and patch.add[0].id == "r3"
    reask = model.conversations[1][-1].content
    assert "not a valid patch: the JSON is malformed" in reask


async def test_patch_that_never_validates_raises() -> None:
    planner, model = planner_with(lambda m: '{"remove": "w"}', max_attempts=2)
    with pytest.raises(WorkflowError, match="could not propose a valid patch") as err:
        await planner.propose_patch("g", running_graph(), OUTCOMES, ())
    assert "remove: Input should be a valid list" in str(err.value)
    assert len(model.conversations) == 2


def test_planner_arguments_are_checked() -> None:
    from counterpoint.errors import ConfigError

    agent = Agent("p", model="x", tracer=False)
    with pytest.raises(ConfigError, match="candidates must be at least 1"):
        Planner(agent, candidates=0)
