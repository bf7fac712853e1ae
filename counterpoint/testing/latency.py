"""The latency model of AsyncLM (arXiv 2412.07017, section 6), the benchmarks' yardstick.

G is the time to generate a call, E the time to execute it. For independent calls the paper gives
``L_sync = ΣG + ΣE``, ``L_parallel = ΣG + max E`` and, with calls written longest-first (LPT),
``L_async = max_f (E(f) + Σ_{g: E(g) ≥ E(f)} G(g))``. For dependent calls (chains, the multi-step
parallel set) the same idealised machines are simulated: one generator writing calls one after the
other, unbounded tool concurrency, zero runtime overhead. Each bound then adds the final answer's
generation time.

The order rule used by the async simulation — among the calls ready to be written, the one whose
chain has the most execution time left goes first (LPT) — is also the rule the benchmark's scripted
model follows, so the bound and the measurement describe the same schedule.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PlannedCall",
    "bound_async",
    "bound_parallel",
    "bound_sync",
    "lpt_order",
    "paper_bound_async",
]


@dataclass(frozen=True)
class PlannedCall:
    """A call in a workload: its name, generation time and execution time (seconds)."""

    name: str
    gen_s: float
    exec_s: float


Chain = Sequence[PlannedCall]


def bound_sync(chains: Sequence[Chain], final_s: float = 0.0) -> float:
    """Every call written, then run to completion, one after another."""
    return sum(c.gen_s + c.exec_s for chain in chains for c in chain) + final_s


def bound_parallel(chains: Sequence[Chain], final_s: float = 0.0) -> float:
    """Turns: write every ready call, run them together, wait for the slowest, repeat."""
    total = 0.0
    depth = max((len(chain) for chain in chains), default=0)
    for step in range(depth):
        layer = [chain[step] for chain in chains if step < len(chain)]
        total += sum(c.gen_s for c in layer) + max(c.exec_s for c in layer)
    return total + final_s


def _remaining(chain: Chain, step: int) -> float:
    return sum(c.exec_s for c in chain[step:])


def lpt_order(chains: Sequence[Chain], ready: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Order ready (chain, step) pairs: most remaining execution time first (LPT), then index."""
    return sorted(ready, key=lambda cs: (-_remaining(chains[cs[0]], cs[1]), cs[0]))


def bound_async(chains: Sequence[Chain], final_s: float = 0.0) -> float:
    """The ideal asynchronous schedule, simulated event by event.

    The generator writes ready calls back to back in LPT order; a call's result arrives ``exec_s``
    after it is written; the next call of its chain becomes ready then (and is written once the
    generator finishes the call it is writing). When nothing is ready the generator waits. The
    final answer starts when every result has arrived and the generator is free.
    """
    ready: list[tuple[int, int]] = [(i, 0) for i, chain in enumerate(chains) if chain]
    arrivals: list[tuple[float, int, int]] = []  # (time, chain, step finished)
    t = 0.0
    last_result = 0.0
    while ready or arrivals:
        if ready:
            chain_i, step = lpt_order(chains, ready)[0]
            ready.remove((chain_i, step))
            call = chains[chain_i][step]
            t += call.gen_s
            heapq.heappush(arrivals, (t + call.exec_s, chain_i, step))
        else:
            t = max(t, arrivals[0][0])
        while arrivals and arrivals[0][0] <= t:
            at, chain_i, step = heapq.heappop(arrivals)
            last_result = max(last_result, at)
            if step + 1 < len(chains[chain_i]):
                ready.append((chain_i, step + 1))
    return max(t, last_result) + final_s


def paper_bound_async(calls: Sequence[PlannedCall]) -> float:
    """The paper's closed form for independent calls under LPT (Theorem 6.1's L_async)."""
    return max(
        (f.exec_s + sum(g.gen_s for g in calls if g.exec_s >= f.exec_s) for f in calls),
        default=0.0,
    )
