"""The AOV graph: validation on construction and on every change, and its structure."""

from __future__ import annotations

import itertools

import pytest

from counterpoint.agents.agent import Agent
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.testing.scripted import ScriptedModel

AGENT = Agent("worker", model=ScriptedModel(["ok"]), tracer=False)


def t(tid: str, *needs: str) -> Task:
    return Task(tid, f"do {tid}", AGENT, needs=needs)


def diamond() -> Graph:
    return Graph([t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c")])


def test_structure_of_a_diamond() -> None:
    g = diamond()
    assert g.topological_order() == ["a", "b", "c", "d"]
    assert g.layers() == [["a"], ["b", "c"], ["d"]]
    assert g.sources() == ["a"] and g.sinks() == ["d"]
    assert g.successors("a") == ("b", "c")
    assert g.remaining_path() == {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}
    assert g.critical_path_length() == 3.0
    assert g.critical_path() in (["a", "b", "d"], ["a", "c", "d"])
    assert g.degrees() == {"a": 2, "b": 2, "c": 2, "d": 2}
    assert g.descendants("a") == ["b", "c", "d"]
    assert g.ancestors("d") == ["a", "b", "c"]


def test_weighted_critical_path() -> None:
    g = diamond()
    weights = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0}
    assert g.critical_path(weights) == ["a", "b", "d"]
    assert g.critical_path_length(weights) == 7.0


def test_a_cycle_is_named_in_dependency_order() -> None:
    with pytest.raises(WorkflowError) as err:
        Graph([t("a", "c"), t("b", "a"), t("c", "b"), t("x")])
    assert set(err.value.ids) == {"a", "b", "c"}
    message = str(err.value)
    assert "cycle" in message
    # each arrow points from a task to one that needs it
    chain = message.split(": ", 1)[1].split(" (")[0].split(" -> ")
    assert chain[0] == chain[-1]
    graph_needs = {"a": "c", "b": "a", "c": "b"}
    for before, after in itertools.pairwise(chain):
        assert graph_needs[after] == before


def test_self_need_dangling_duplicate_and_missing_agent() -> None:
    with pytest.raises(WorkflowError, match="needs itself"):
        Graph([t("a", "a")])
    with pytest.raises(WorkflowError, match=r"unknown task.*'zz'") as err:
        Graph([t("a"), t("b", "zz")])
    assert err.value.ids == ("b", "zz")
    with pytest.raises(WorkflowError, match="duplicate task id 'a'"):
        Graph([t("a"), t("a")])
    with pytest.raises(WorkflowError, match="no agent"):
        Graph([Task("a", "x")])
    with pytest.raises(WorkflowError, match=r"unknown agent.*'ghost'.*known: writer"):
        Graph([Task("a", "x", "ghost")], agents={"writer": AGENT})
    with pytest.raises(WorkflowError, match="non-empty"):
        Task("", "x", AGENT)
    with pytest.raises(WorkflowError, match="twice"):
        Task("a", "x", AGENT, needs=("b", "b"))


def test_a_refused_change_leaves_the_graph_as_it_was() -> None:
    g = diamond()
    version = g.version
    with pytest.raises(WorkflowError, match="cycle"):
        g.replace(t("a", "d"))
    with pytest.raises(WorkflowError, match="unknown task"):
        g.remove("b")  # d still needs b
    with pytest.raises(WorkflowError, match="duplicate"):
        g.add(t("a"))
    assert g.version == version
    assert [x.id for x in g] == ["a", "b", "c", "d"]
    assert g["a"].needs == ()


def test_changes_bump_the_version_and_keep_order() -> None:
    g = diamond()
    g.add(t("e", "d"))
    g.replace(t("d", "b"))
    assert g.version == 2
    assert g.successors("c") == ()
    assert g.sinks() == ["c", "e"]
    g.update([t("x"), t("y", "x")])
    assert g.topological_order() == ["x", "y"]
    assert g.to_dicts()[1] == {"id": "y", "objective": "do y", "agent": "worker", "needs": ["x"]}


def test_named_agents_resolve() -> None:
    g = Graph([Task("a", "x", "writer")], agents={"writer": AGENT})
    assert g.agent_of("a") is AGENT
    with pytest.raises(WorkflowError, match="no task 'nope'"):
        g["nope"]


def test_copy_is_independent() -> None:
    g = diamond()
    twin = g.copy()
    twin.add(t("e"))
    assert "e" in twin and "e" not in g
