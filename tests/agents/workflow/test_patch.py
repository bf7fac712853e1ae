"""Refinement patches: what applies, what is refused and why, and that the original stays."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from counterpoint.agents.agent import Agent
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.patch import (
    Patch,
    PatchError,
    TaskChange,
    TaskSpec,
    apply_patch,
)
from counterpoint.testing.scripted import ScriptedModel

WRITER = Agent("writer", model=ScriptedModel(["ok"]), tracer=False)
CHECKER = Agent("checker", model=ScriptedModel(["ok"]), tracer=False)
AGENTS = {"writer": WRITER, "checker": CHECKER}


def graph() -> Graph:
    """a -> b -> d, a -> c -> d (by agent name)."""
    return Graph(
        [
            Task("a", "gather", "writer"),
            Task("b", "draft part 1", "writer", needs=("a",)),
            Task("c", "draft part 2", "writer", needs=("a",)),
            Task("d", "check both", "checker", needs=("b", "c")),
        ],
        agents=AGENTS,
    )


def spec(tid: str, *needs: str, agent: str = "writer") -> TaskSpec:
    return TaskSpec(id=tid, objective=f"do {tid}", agent=agent, needs=list(needs))


def test_apply_returns_a_new_graph_with_the_version_bumped() -> None:
    g = graph()
    patch = Patch(
        add=[spec("e", "a"), spec("f", "d", "e", agent="checker")],
        change=[TaskChange(id="c", objective="draft part 2, shorter", needs=["a", "e"])],
        reason="part 2 needs the summary",
    )
    new = apply_patch(g, patch, frozen={"a"})
    assert new is not g
    assert new.version == g.version + 1
    assert list(new.tasks) == ["a", "b", "c", "d", "e", "f"]
    assert new["c"].objective == "draft part 2, shorter"
    assert new["c"].needs == ("a", "e")
    assert new["f"].agent_name == "checker"
    # the original is untouched
    assert list(g.tasks) == ["a", "b", "c", "d"] and g["c"].needs == ("a",)


def test_remove_with_rewire_in_the_same_patch() -> None:
    patch = Patch(remove=["c"], change=[TaskChange(id="d", needs=["b"])])
    new = apply_patch(graph(), patch, frozen=())
    assert list(new.tasks) == ["a", "b", "d"] and new["d"].needs == ("b",)
    # or remove the dependent too
    new = apply_patch(graph(), Patch(remove=["c", "d"]), frozen=())
    assert list(new.tasks) == ["a", "b"]


def test_removing_a_needed_task_is_refused() -> None:
    with pytest.raises(PatchError, match=r"removes 'c', which task 'd' still needs") as err:
        apply_patch(graph(), Patch(remove=["c"]), frozen=())
    assert set(err.value.ids) == {"c", "d"}


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (Patch(remove=["a"]), r"removes task\(s\) 'a', which have started or ended"),
        (Patch(change=[TaskChange(id="b", objective="x")]), "changes task 'b', which has started"),
        (Patch(add=[spec("c")]), "adds task 'c', which exists"),
        (Patch(add=[spec("e"), spec("e")]), "adds task 'e' twice"),
        (Patch(remove=["zz"]), "removes unknown task"),
        (Patch(change=[TaskChange(id="zz", objective="x")]), "changes unknown task 'zz'"),
        (
            Patch(remove=["c", "d"], change=[TaskChange(id="c", objective="x")]),
            "both removes and changes task 'c'",
        ),
        (
            Patch(change=[TaskChange(id="c", objective="x"), TaskChange(id="c", agent="checker")]),
            "changes task 'c' twice",
        ),
    ],
)
def test_refusals_name_the_ids(patch: Patch, match: str) -> None:
    g = graph()
    with pytest.raises(PatchError, match=match):
        apply_patch(g, patch, frozen={"a", "b"})
    assert g.version == 0 and list(g.tasks) == ["a", "b", "c", "d"]


def test_an_invalid_result_is_refused() -> None:
    cycle = Patch(change=[TaskChange(id="c", needs=["a", "d"])])
    with pytest.raises(PatchError, match="cycle") as err:
        apply_patch(graph(), cycle, frozen=())
    assert set(err.value.ids) == {"c", "d"}
    with pytest.raises(PatchError, match="needs unknown task"):
        apply_patch(graph(), Patch(add=[spec("e", "nowhere")]), frozen=())
    with pytest.raises(PatchError, match="unknown agent"):
        apply_patch(graph(), Patch(add=[spec("e", agent="poet")]), frozen=())
    with pytest.raises(PatchError, match="lists a need twice"):
        apply_patch(graph(), Patch(add=[spec("e", "a", "a")]), frozen=())
    assert issubclass(PatchError, WorkflowError)


def test_new_tasks_may_need_frozen_ones_and_ids_may_be_reused_after_removal() -> None:
    new = apply_patch(graph(), Patch(add=[spec("e", "a", "b")]), frozen={"a", "b"})
    assert new["e"].needs == ("a", "b")
    # remove d and add a new d in the same patch
    redo = Patch(remove=["d"], add=[spec("d", "b", agent="checker")])
    new = apply_patch(graph(), redo, frozen={"a"})
    assert new["d"].needs == ("b",) and new["d"].objective == "do d"


def test_output_format_change_and_clear() -> None:
    g = apply_patch(graph(), Patch(change=[TaskChange(id="d", output_format="a list")]), ())
    assert g["d"].output_format == "a list"
    cleared = TaskChange.model_validate({"id": "d", "output_format": None})
    g = apply_patch(g, Patch(change=[cleared]), ())
    assert g["d"].output_format is None
    untouched = TaskChange.model_validate({"id": "d", "objective": "check"})
    assert "output_format" not in untouched.changes()


def test_patch_model() -> None:
    assert Patch().is_empty and Patch(reason="nothing to do").is_empty
    assert not Patch(remove=["x"]).is_empty
    parsed = Patch.model_validate(
        {"add": [{"id": "e", "objective": "o", "agent": "writer", "needs": ["a"]}]}
    )
    assert parsed.add[0].needs == ["a"]
    with pytest.raises(ValidationError, match="depends_on"):
        Patch.model_validate(
            {"add": [{"id": "e", "objective": "o", "agent": "writer", "depends_on": ["a"]}]}
        )
    with pytest.raises(ValidationError):
        TaskSpec.model_validate({"id": "", "objective": "o", "agent": "writer"})
