"""AOV workflows: scheduling overhead, makespan against the critical path, LangGraph side by side,
and KV reuse between agents on the embedded model.

Every figure is measured in this run:

- ``overhead_us_per_task``: no-op tasks on a random DAG of 10,000 nodes through the scheduler
  (no trace, no checkpoint), wall time / N; ``overhead_vs_plain_asyncio_ratio`` against the same
  DAG run by hand with a future per node;
- ``makespan_vs_critical_path_max`` / ``_median``: random DAGs (widths 1-32, depths 1-20), task
  latencies drawn deterministically from 30-500 ms (scaled by ``--scale``; the ratios are against
  the same scaled latencies), unbounded concurrency: makespan over the heaviest path's latency;
- ``makespan_langgraph_vs_counterpoint_*``: the same DAGs and latencies as a LangGraph
  ``StateGraph`` (a node per task, a join edge per multi-parent task), supersteps against
  dispatch-when-ready; plus a hand-built unbalanced graph where supersteps must lose;
- ``workflow_time_reuse_vs_dense`` and ``last_agent_ttft_reuse_vs_dense``: a 4-agent workflow on
  the embedded model (two analysts, a critic and a writer that both read both analyses) with
  ``kv_reuse="anchors"`` against ``kv_reuse="dense"`` (``--no-model`` skips it).

Run: ``python bench/workflow.py [--quick] [--no-model]``; the last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import random
import statistics
import sys
import time
from typing import Annotated, Any, TypedDict

from counterpoint import Agent, ScriptedModel, Task, Workflow
from counterpoint.agents.workflow import TaskContext
from counterpoint.core.events import BaseEvent, KVReuse, RunStarted, TokenEvent

NOOP_AGENT = Agent("noop", model=ScriptedModel("x"), tracer=False)


def random_dag(rng: random.Random, n: int) -> list[list[int]]:
    """needs[i] for a DAG of n nodes: up to 3 parents among the 50 before each node."""
    return [rng.sample(range(max(0, i - 50), i), min(i, rng.randint(0, 3))) for i in range(n)]


def layered_dag(rng: random.Random, width: int, depth: int) -> list[list[int]]:
    """A DAG in ``depth`` layers of 1..``width`` nodes; each node needs 1-3 of the layer above."""
    layers: list[list[int]] = []
    needs: list[list[int]] = []
    for d in range(depth):
        size = rng.randint(1, width)
        layer = list(range(len(needs), len(needs) + size))
        for _ in layer:
            above = layers[-1] if layers else []
            k = min(len(above), rng.randint(1, 3))
            needs.append(sorted(rng.sample(above, k)) if above and d else [])
        layers.append(layer)
    return needs


def workflow_of(needs: list[list[int]]) -> Workflow:
    return Workflow(
        [
            Task(f"t{i}", "noop", NOOP_AGENT, needs=[f"t{j}" for j in ns])
            for i, ns in enumerate(needs)
        ]
    )


def critical_path(needs: list[list[int]], latency: list[float]) -> float:
    finish: list[float] = []
    for i, ns in enumerate(needs):
        finish.append(latency[i] + max((finish[j] for j in ns), default=0.0))
    return max(finish)


# -- overhead ------------------------------------------------------------------------------------


async def plain_asyncio(needs: list[list[int]]) -> float:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in needs]

    async def node(i: int) -> None:
        for j in needs[i]:
            await futures[j]
        futures[i].set_result("")

    t0 = time.perf_counter()
    await asyncio.gather(*(node(i) for i in range(len(needs))))
    return time.perf_counter() - t0


async def counterpoint_noop(wf: Workflow) -> float:
    async def noop(task: Task, ctx: TaskContext) -> str:
        return ""

    t0 = time.perf_counter()
    result = await wf.run(durable=False, tracer=False, runner=noop)
    elapsed = time.perf_counter() - t0
    assert result.status == "ok" and len(result.outcomes) == len(wf)
    return elapsed


def overhead(n: int, reps: int) -> dict[str, float]:
    needs = random_dag(random.Random(7), n)
    wf = workflow_of(needs)
    ours, plain = [], []
    for _ in range(reps):
        plain.append(asyncio.run(plain_asyncio(needs)))
        ours.append(asyncio.run(counterpoint_noop(wf)))
    us = statistics.median(ours) / n * 1e6
    base = statistics.median(plain) / n * 1e6
    print(f"overhead: {us:.1f} us/task (plain asyncio {base:.1f} us/task), N={n}, reps={reps}")
    return {
        "overhead_us_per_task": round(us, 1),
        "overhead_vs_plain_asyncio_ratio": round(us / base, 2),
    }


# -- makespans -----------------------------------------------------------------------------------


async def makespan_counterpoint(needs: list[list[int]], latency: list[float]) -> float:
    wf = workflow_of(needs)

    async def sleep(task: Task, ctx: TaskContext) -> str:
        await asyncio.sleep(latency[int(task.id[1:])])
        return ""

    t0 = time.perf_counter()
    result = await wf.run(durable=False, tracer=False, runner=sleep)
    assert result.status == "ok"
    return time.perf_counter() - t0


class _State(TypedDict):
    ran: Annotated[list[str], operator.add]


def langgraph_app(needs: list[list[int]], latency: list[float]) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(_State)

    def node(i: int) -> Any:
        async def run(state: _State) -> dict[str, list[str]]:
            await asyncio.sleep(latency[i])
            return {"ran": [f"t{i}"]}

        return run

    children: dict[int, int] = {i: 0 for i in range(len(needs))}
    for i, ns in enumerate(needs):
        graph.add_node(f"t{i}", node(i))
        for j in ns:
            children[j] += 1
    for i, ns in enumerate(needs):
        if not ns:
            graph.add_edge(START, f"t{i}")
        elif len(ns) == 1:
            graph.add_edge(f"t{ns[0]}", f"t{i}")
        else:
            graph.add_edge([f"t{j}" for j in ns], f"t{i}")  # a join: waits for every parent
    for i, count in children.items():
        if count == 0:
            graph.add_edge(f"t{i}", END)
    return graph.compile()


async def makespan_langgraph(needs: list[list[int]], latency: list[float]) -> float:
    app = langgraph_app(needs, latency)
    t0 = time.perf_counter()
    out = await app.ainvoke({"ran": []}, {"recursion_limit": 10_000})
    elapsed = time.perf_counter() - t0
    ran = out["ran"]
    assert sorted(ran) == sorted(f"t{i}" for i in range(len(needs))), "LangGraph ran a node twice"
    return elapsed


def unbalanced() -> tuple[list[list[int]], list[float]]:
    """A fast chain of 5 beside one slow sibling: supersteps make each link wait for it."""
    needs = [[], [], [0], [2], [3], [4], [1, 5]]
    latency = [0.05, 0.5, 0.05, 0.05, 0.05, 0.05, 0.05]
    return needs, latency


def makespans(n_dags: int, scale: float, with_langgraph: bool) -> dict[str, Any]:
    rng = random.Random(11)
    ours: list[float] = []
    ratios_lg: list[float] = []
    worst_gap = (0.0, 0.0)
    for k in range(n_dags):
        width, depth = rng.randint(1, 32), rng.randint(1, 20)
        needs = layered_dag(rng, width, depth)
        latency = [rng.uniform(0.030, 0.500) * scale for _ in needs]
        bound = critical_path(needs, latency)
        mine = asyncio.run(makespan_counterpoint(needs, latency))
        ours.append(mine / bound)
        line = f"dag {k}: {len(needs)} tasks, width<={width}, depth {depth}: {mine / bound:.4f}x cp"
        if with_langgraph:
            theirs = asyncio.run(makespan_langgraph(needs, latency))
            ratios_lg.append(theirs / mine)
            sums = sum(latency)
            gap = theirs / mine
            if gap > worst_gap[0]:
                worst_gap = (gap, sums)
            line += f", langgraph {theirs / bound:.4f}x cp"
        print(line)
    out: dict[str, Any] = {
        "makespan_vs_critical_path_max": round(max(ours), 4),
        "makespan_vs_critical_path_median": round(statistics.median(ours), 4),
        "dags": n_dags,
        "latency_scale": scale,
    }
    if with_langgraph:
        needs, latency = unbalanced()
        latency = [x * scale for x in latency]
        mine = asyncio.run(makespan_counterpoint(needs, latency))
        theirs = asyncio.run(makespan_langgraph(needs, latency))
        print(f"unbalanced: counterpoint {mine:.3f} s, langgraph {theirs:.3f} s")
        out |= {
            "makespan_langgraph_vs_counterpoint_median": round(statistics.median(ratios_lg), 3),
            "makespan_langgraph_vs_counterpoint_max": round(max(ratios_lg), 3),
            "makespan_langgraph_vs_counterpoint_unbalanced": round(theirs / mine, 3),
        }
    return out


# -- KV reuse on the embedded model --------------------------------------------------------------

TEXT = (
    "The river Arno rises on Mount Falterona and flows west through Florence and Pisa to the "
    "Ligurian Sea. In November 1966 it flooded Florence, damaging thousands of books and works "
    "of art; volunteers from many countries came to rescue them. Today dams and overflow basins "
    "upstream lower the risk, and the river is a favourite place for rowing clubs."
)


def model_workflow(model: Any) -> Workflow:
    from counterpoint.runtime.backends.base import SamplingParams
    from counterpoint.runtime.session import Limits

    params, limits = SamplingParams(max_tokens=24), Limits(max_tokens=24)

    def agent(name: str, role: str) -> Agent:
        return Agent(name, role, model=model, params=params, limits=limits, tracer=False)

    analyst = agent("analyst", "You summarise one aspect of a text in one sentence.")
    critic = agent("critic", "You compare two summaries in one sentence.")
    writer = agent("writer", "You merge summaries into one sentence.")
    return Workflow(
        [
            Task("history", f"Summarise the history in this text: {TEXT}", analyst),
            Task("today", f"Summarise what the text says about today: {TEXT}", analyst),
            Task("critique", "Compare the two summaries.", critic, needs=["history", "today"]),
            Task(
                "merge",
                "Merge the two summaries, using the critique.",
                writer,
                needs=["history", "today", "critique"],
            ),
        ],
        goal="A one-sentence report on the river text.",
        name="bench-report",
    )


async def timed_model_run(model: Any, policy: str) -> dict[str, Any]:
    events: list[BaseEvent] = []
    wf = model_workflow(model)
    t0 = time.perf_counter()
    result = await wf.run(durable=False, tracer=events.append, kv_reuse=policy)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    assert result.status == "ok", result.error
    merge_run = result.outcomes["merge"].agent_run_id
    started = next(e.t for e in events if isinstance(e, RunStarted) and e.run_id == merge_run)
    first = next(e.t for e in events if isinstance(e, TokenEvent) and e.run_id == merge_run)
    reuse = [e for e in events if isinstance(e, KVReuse) and e.run_id == merge_run]
    return {
        "wall_s": wall,
        "last_ttft_s": first - started,
        "last_reused_tokens": sum(e.reused_tokens for e in reuse),
        "last_prompt_tokens": sum(e.prompt_tokens for e in reuse),
    }


def kv_reuse(reps: int) -> dict[str, Any]:
    from counterpoint.runtime.backends.registry import resolve_model

    base = resolve_model("embedded")
    runs: dict[str, list[dict[str, Any]]] = {"anchors": [], "dense": []}
    asyncio.run(timed_model_run(base, "dense"))  # warm-up: weights, kernels
    for _ in range(reps):
        for policy in ("dense", "anchors"):
            runs[policy].append(asyncio.run(timed_model_run(base, policy)))

    def med(policy: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[policy]))

    out = {
        "workflow_time_reuse_vs_dense": round(med("anchors", "wall_s") / med("dense", "wall_s"), 3),
        "last_agent_ttft_reuse_vs_dense": round(
            med("anchors", "last_ttft_s") / med("dense", "last_ttft_s"), 3
        ),
        "last_agent_reused_tokens": med("anchors", "last_reused_tokens"),
        "last_agent_prompt_tokens": med("anchors", "last_prompt_tokens"),
        "model_reps": reps,
    }
    for policy in ("dense", "anchors"):
        print(
            f"{policy}: workflow {med(policy, 'wall_s'):.2f} s, last agent TTFT "
            f"{med(policy, 'last_ttft_s'):.3f} s, reused {med(policy, 'last_reused_tokens'):.0f}"
            f"/{med(policy, 'last_prompt_tokens'):.0f} tokens"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer DAGs and reps (~3 min)")
    parser.add_argument("--no-model", action="store_true", help="skip the embedded-model part")
    parser.add_argument("--scale", type=float, default=None, help="latency scale (default 1.0)")
    args = parser.parse_args(argv)
    try:
        import langgraph  # noqa: F401

        with_langgraph = True
    except ImportError:
        print("langgraph is not installed (pip install -e '.[bench]'): skipping the comparison")
        with_langgraph = False
    quick = args.quick
    scale = args.scale if args.scale is not None else 1.0
    result: dict[str, Any] = {}
    result |= overhead(10_000, 3 if quick else 5)
    result |= makespans(6 if quick else 16, scale, with_langgraph)
    if not args.no_model:
        result |= kv_reuse(1 if quick else 3)
    print("RESULT " + json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
