"""Flow's measures (corrected parallelism, dependency complexity) and the z-score choice."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.agents.agent import Agent
from counterpoint.agents.workflow.graph import Graph, Task, WorkflowError
from counterpoint.agents.workflow.scoring import (
    choose,
    dependency_complexity,
    flow_parallelism_original,
    parallelism,
)
from counterpoint.testing.scripted import ScriptedModel

AGENT = Agent("worker", model=ScriptedModel(["ok"]), tracer=False)


def t(tid: str, *needs: str) -> Task:
    return Task(tid, f"do {tid}", AGENT, needs=needs)


def diamond() -> Graph:
    return Graph([t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c")])


def diamond_with_tail() -> Graph:
    return Graph([t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c"), t("e", "d")])


def chain(n: int) -> Graph:
    return Graph([t(f"t{i}", *([f"t{i - 1}"] if i else [])) for i in range(n)])


def fan(n: int) -> Graph:
    return Graph([t(f"t{i}") for i in range(n)])


def test_parallelism_is_tasks_over_critical_path_nodes() -> None:
    # longest-path layering [a] [b, c] [d]: 4 tasks over 3 steps
    assert parallelism(diamond()) == pytest.approx(4 / 3)
    # [a] [b, c] [d] [e]: 5 tasks over 4 steps
    assert parallelism(diamond_with_tail()) == pytest.approx(1.25)
    assert parallelism(chain(5)) == 1.0
    assert parallelism(fan(4)) == 4.0
    assert parallelism(Graph()) == 0.0


def test_flows_own_computation_double_counts_multi_parent_tasks() -> None:
    # d is reached from b and from c, so d (and e below it) are counted twice
    assert flow_parallelism_original(diamond()) == pytest.approx(5 / 3)  # [a] [b c] [d d]
    assert flow_parallelism_original(diamond_with_tail()) == pytest.approx(1.75)
    assert parallelism(diamond_with_tail()) == pytest.approx(1.25)
    # without multi-parent tasks the two agree
    assert flow_parallelism_original(chain(4)) == parallelism(chain(4)) == 1.0
    assert flow_parallelism_original(fan(3)) == parallelism(fan(3)) == 3.0


def test_flows_walk_is_bounded() -> None:
    # stacked diamonds: the walk visits every path (2**k of them)
    tasks = [t("s0")]
    for k in range(12):
        tasks += [t(f"l{k}", f"s{k}"), t(f"r{k}", f"s{k}"), t(f"s{k + 1}", f"l{k}", f"r{k}")]
    with pytest.raises(WorkflowError, match="parallelism"):
        flow_parallelism_original(Graph(tasks), max_visits=1000)


def test_dependency_complexity_is_population_std_of_degrees() -> None:
    assert dependency_complexity(diamond()) == 0.0  # every degree is 2
    # star: hub degree 3, leaves 1 -> mean 1.5, variance (2.25 + 3 * 0.25) / 4 = 0.75
    star = Graph([t("hub"), t("x", "hub"), t("y", "hub"), t("z", "hub")])
    assert dependency_complexity(star) == pytest.approx(math.sqrt(0.75))
    assert dependency_complexity(Graph()) == 0.0


def test_choose_by_z_scores() -> None:
    wide = fan(4)  # P = 4, C = 0
    line = chain(4)  # P = 1, C = std(1, 2, 2, 1) = 0.5
    star = Graph([t("hub"), t("x", "hub"), t("y", "hub"), t("z", "hub")])  # P = 2, C ≈ 0.87
    chosen, scores = choose([line, star, wide])
    assert chosen == 2
    assert [s.parallelism for s in scores] == [1.0, 2.0, 4.0]
    for s in scores:
        assert s.score == pytest.approx(s.z_complexity - s.z_parallelism)
    assert sum(s.z_parallelism for s in scores) == pytest.approx(0.0)
    assert scores[2].score == min(s.score for s in scores)


def test_choose_ties_zero_std_and_empty() -> None:
    chosen, scores = choose([chain(3), chain(3)])
    assert chosen == 0
    assert all(s.z_parallelism == s.z_complexity == s.score == 0.0 for s in scores)
    chosen, scores = choose([diamond()])
    assert chosen == 0 and scores[0].score == 0.0
    with pytest.raises(WorkflowError, match="no candidate"):
        choose([])


@st.composite
def dags(draw: st.DrawFn) -> Graph:
    n = draw(st.integers(1, 12))
    tasks = []
    for i in range(n):
        needs = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        tasks.append(t(f"t{i}", *(f"t{j}" for j in sorted(needs))))
    return Graph(tasks)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_parallelism_bounds_on_random_dags(graph: Graph) -> None:
    p = parallelism(graph)
    assert 1.0 <= p <= len(graph)
    assert p == pytest.approx(len(graph) / len(graph.layers()))
    assert dependency_complexity(graph) >= 0.0
    # Flow's walk counts every task at least once over at most as many steps
    assert flow_parallelism_original(graph) >= p - 1e-9


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 15))
def test_chain_is_one(n: int) -> None:
    assert parallelism(chain(n)) == 1.0
