"""Flow's two measures of a candidate graph, and its choice among candidates by z-score.

- :func:`parallelism`: how many tasks run side by side on average (higher is better).
- :func:`dependency_complexity`: how unevenly the dependencies are spread (lower is better).
- :func:`choose`: the candidate with the lowest ``z(C) − z(P)`` across the candidates.

:func:`flow_parallelism_original` reproduces Flow's own (double-counting) computation of
``P_avg``, for comparison only.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from counterpoint.agents.workflow.graph import Graph, WorkflowError

__all__ = [
    "Score",
    "choose",
    "dependency_complexity",
    "flow_parallelism_original",
    "parallelism",
    "score_all",
]


def parallelism(graph: Graph) -> float:
    """Flow's average parallelism ``P_avg``, computed correctly: ``|V| / L``.

    ``L`` is the critical-path length counted in *nodes* (tasks), which is also the number of
    layers of the longest-path layering (:meth:`Graph.layers`). With unit-time tasks started as
    soon as their needs are done, step ``t`` runs exactly layer ``S_t``, so Flow's definition
    ``P_avg = (1/T) Σ_t |S_t|`` with ``T = L`` steps gives ``Σ_t |S_t| = |V|`` (every task
    counted once): ``P_avg = |V| / L``.

    A chain gives 1.0; ``n`` independent tasks give ``n``; the diamond ``a; b, c need a; d needs
    b, c`` gives 4/3; the diamond with a tail ``e`` needing ``d`` gives 5/4 = 1.25 (Flow's code:
    7/4 = 1.75, see :func:`flow_parallelism_original`). An empty graph gives 0.0.
    """
    if len(graph) == 0:
        return 0.0
    return len(graph) / graph.critical_path_length()


def dependency_complexity(graph: Graph) -> float:
    """Flow's dependency complexity ``C_dep``: the population standard deviation of the vertex
    degrees (needs plus dependents; :meth:`Graph.degrees`). 0.0 for an empty graph."""
    degrees = list(graph.degrees().values())
    if not degrees:
        return 0.0
    return statistics.pstdev(degrees)


def flow_parallelism_original(graph: Graph, *, max_visits: int = 100_000) -> float:
    """``P_avg`` as Flow's own code computes it (``Workflow.calculate_average_parallelism``).

    A breadth-first walk from the sources that enqueues a task once per parent it is reached
    from, and records it in the step of its current depth each time it is dequeued. A task with
    several parents is therefore counted once per path that reaches it (and so is everything
    below it): the diamond gives (1 + 2 + 2) / 3 = 5/3, the diamond with a tail gives
    (1 + 2 + 2 + 2) / 4 = 7/4 = 1.75 where :func:`parallelism` gives 1.25.

    For comparison only: the walk visits every path, which grows exponentially with stacked
    diamonds, so it stops with :class:`WorkflowError` after ``max_visits`` visits.
    """
    depth = dict.fromkeys(graph.tasks, 0)
    queue = deque(graph.sources())
    steps: dict[int, int] = defaultdict(int)
    visits = 0
    while queue:
        current = queue.popleft()
        visits += 1
        if visits > max_visits:
            raise WorkflowError(
                f"Flow's parallelism walk visited more than {max_visits} tasks (it counts every "
                "path); use parallelism() instead"
            )
        steps[depth[current]] += 1
        for nxt in graph.successors(current):
            depth[nxt] = depth[current] + 1
            queue.append(nxt)
    counts = list(steps.values())
    return sum(counts) / len(counts) if counts else 0.0


@dataclass(frozen=True)
class Score:
    """One candidate's measures, their z-scores across the candidates, and its score
    ``z_complexity − z_parallelism`` (lowest wins)."""

    parallelism: float
    complexity: float
    z_parallelism: float
    z_complexity: float
    score: float


_TIE = 1e-9
"""Scores closer than this are equal (the first candidate of equals wins)."""


def _z_scores(values: Sequence[float]) -> list[float]:
    """Standard scores against the population mean and std; all 0.0 when the std is 0."""
    mean = statistics.fmean(values)
    std = statistics.pstdev(values)
    if std <= 1e-12 * max(1.0, abs(mean)):
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]


def score_all(candidates: Sequence[Graph]) -> list[Score]:
    """Every candidate's :class:`Score` (z-scores are taken across ``candidates``)."""
    ps = [parallelism(g) for g in candidates]
    cs = [dependency_complexity(g) for g in candidates]
    if not candidates:
        return []
    zp, zc = _z_scores(ps), _z_scores(cs)
    return [
        Score(parallelism=p, complexity=c, z_parallelism=a, z_complexity=b, score=b - a)
        for p, c, a, b in zip(ps, cs, zp, zc, strict=True)
    ]


def choose(candidates: Sequence[Graph]) -> tuple[int, list[Score]]:
    """Flow's selection: the index of the candidate with the lowest ``z(C) − z(P)`` (the first
    of equals, within 1e-9), and every candidate's score.

    z-scores use the population mean and standard deviation across the candidates; a measure
    that is the same for all of them contributes 0 (so a single candidate scores 0 and wins).
    """
    if not candidates:
        raise WorkflowError("there are no candidate graphs to choose from")
    scores = score_all(candidates)
    best = 0
    for i, s in enumerate(scores):
        if s.score < scores[best].score - _TIE:
            best = i
    return best, scores
