"""The latency model: the simulation agrees with the paper's closed forms and theorems."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.testing.latency import (
    PlannedCall,
    bound_async,
    bound_parallel,
    bound_sync,
    paper_bound_async,
)

times = st.floats(min_value=0.001, max_value=1.0, allow_nan=False)
calls = st.lists(
    st.builds(PlannedCall, name=st.just("f"), gen_s=times, exec_s=times), min_size=1, max_size=8
)


def test_hand_computed_example() -> None:
    a, b = PlannedCall("a", 0.1, 0.5), PlannedCall("b", 0.1, 0.2)
    chains = [[a], [b]]
    assert bound_sync(chains) == pytest.approx(0.9)
    assert bound_parallel(chains) == pytest.approx(0.7)
    # write a (0.1), write b (0.2); a done at 0.6, b at 0.4
    assert bound_async(chains) == pytest.approx(0.6)
    assert bound_async(chains, final_s=0.05) == pytest.approx(0.65)


def test_chains_wait_for_their_predecessor() -> None:
    x1, x2 = PlannedCall("x1", 0.1, 0.3), PlannedCall("x2", 0.1, 0.3)
    y = PlannedCall("y", 0.1, 0.05)
    # x1 written by 0.1, y by 0.2 (done 0.25); x1 done 0.4 -> x2 written 0.4..0.5, done 0.8
    assert bound_async([[x1, x2], [y]]) == pytest.approx(0.8)
    assert bound_parallel([[x1, x2], [y]]) == pytest.approx(0.2 + 0.3 + 0.1 + 0.3)
    assert bound_sync([[x1, x2], [y]]) == pytest.approx(0.95)


@settings(max_examples=200, deadline=None)
@given(calls)
def test_simulation_matches_the_closed_form_for_independent_calls(cs: list[PlannedCall]) -> None:
    assert bound_async([[c] for c in cs]) == pytest.approx(paper_bound_async(cs))


@settings(max_examples=200, deadline=None)
@given(st.lists(calls, min_size=1, max_size=4))
def test_theorem_6_1_async_le_parallel_le_sync(chains: list[list[PlannedCall]]) -> None:
    s, p, a = bound_sync(chains), bound_parallel(chains), bound_async(chains)
    assert p <= s + 1e-9
    if all(len(c) == 1 for c in chains):  # the theorem is stated for independent calls
        assert a <= p + 1e-9
