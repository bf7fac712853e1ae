"""KVCOMM's anchor math on small tensors, the online anchor decision and eviction."""

from __future__ import annotations

import math

import pytest
import torch

from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv.anchors import (
    AnchorPool,
    Deviation,
    anchor_entropy,
    blend_placeholder,
    blend_prefix,
    placeholder_weights,
    prefix_weights,
)


def t(rows: list[list[float]]) -> torch.Tensor:
    """A [layers=1, heads=1, tokens, dim] tensor from token rows."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def test_placeholder_weights_are_a_per_token_softmax_over_anchors() -> None:
    base = t([[0.0], [0.0]])
    near_first, near_second = t([[0.0], [2.0]]), t([[2.0], [0.0]])
    w = placeholder_weights(base, [near_first, near_second])
    close = 1 / (1 + math.exp(-2))
    assert torch.allclose(w, torch.tensor([[close, 1 - close], [1 - close, close]]))
    # temperature flattens; a shorter anchor gets no weight past its end
    flat = placeholder_weights(base, [near_first, near_second], temperature=100.0)
    assert (flat - 0.5).abs().max() < 0.01
    short = placeholder_weights(base, [near_first, t([[5.0]])])
    assert torch.allclose(short[:, 1], torch.tensor([1.0, 0.0]))
    assert short[1, 0] < 0.01


def test_prefix_weights_compare_the_last_tokens_channel_by_channel() -> None:
    base = t([[0.0, 0.0], [0.0, 0.0]])
    a = t([[9.0, 3.0], [0.0, 4.0]])  # channel 0 distance 9, channel 1 distance 5
    b = t([[0.0, 0.0], [3.0, 0.0]])  # channel 0 distance 3, channel 1 distance 0
    w = prefix_weights(base, [a, b])
    assert w.shape == (2, 1, 1, 2)
    assert math.isclose(float(w[0, 0, 0, 0]), 1 / (1 + math.exp(6)), rel_tol=1e-5)
    assert math.isclose(float(w[1, 0, 0, 1]), 1 / (1 + math.exp(-5)), rel_tol=1e-5)
    # a longer anchor is compared on its last L tokens; a shorter one scaled to L tokens
    longer = t([[7.0, 7.0], [9.0, 3.0], [0.0, 4.0]])
    assert torch.allclose(prefix_weights(base, [longer, b]), w)
    shorter = prefix_weights(base, [t([[3.0, 0.0]]), b])  # distance 3·√2 on channel 0
    assert math.isclose(
        float(shorter[0, 0, 0, 0]), 1 / (1 + math.exp(3 * math.sqrt(2) - 3)), rel_tol=1e-5
    )


def test_blends_are_weighted_sums_of_anchor_deviations() -> None:
    weights = torch.tensor([[0.25, 1.0], [0.75, 0.0]])
    d1, d2 = t([[4.0], [8.0], [99.0]]), t([[8.0], [1.0]])
    blended = blend_placeholder(weights, [d1, d2])
    assert torch.allclose(blended, t([[0.25 * 4 + 0.75 * 8], [8.0]]))
    pw = torch.tensor([[0.5, 0.0], [0.5, 1.0]])[:, None, None, :]  # [N=2, 1, 1, dim=2]
    deltas = torch.stack([t([[2.0, 10.0]]), t([[4.0, 20.0]])])
    assert torch.allclose(blend_prefix(pw, deltas), t([[3.0, 20.0]]))


def test_entropy_is_low_when_one_anchor_is_clearly_closest() -> None:
    cand = t([[0.0, 0.0]])
    probs, entropy = anchor_entropy(cand, [t([[0.0, 0.0]]), t([[30.0, 0.0]])])
    assert entropy < 1e-6 and float(probs[0]) > 0.999
    probs, entropy = anchor_entropy(cand, [t([[1.0, 0.0]])] * 4)
    assert math.isclose(entropy, 2.0, rel_tol=1e-6)


def kv(rows: list[list[float]]) -> KVBlock:
    return KVBlock(t(rows), t(rows))


def dev(content: float, following: float, tokens: int = 2, layers: int = 1) -> Deviation:
    c = torch.full((layers, 1, tokens, 1), content)
    f = torch.full((layers, 1, 1, 1), following)
    return Deviation(KVBlock(c, c.clone()), KVBlock(f, f.clone()))


def test_the_pool_warms_up_then_shares_near_content_and_anchors_novel_content() -> None:
    pool = AnchorPool(gamma=0.3)
    calls = 0

    def base_of(block: KVBlock):  # type: ignore[no-untyped-def]
        def get() -> KVBlock:
            nonlocal calls
            calls += 1
            return block

        return get

    first = pool.decide("user", "q1", base_of(kv([[0.0], [0.0]])))
    assert first.anchor and first.reason == "warm-up" and calls == 0
    pool.record("user", "q1", kv([[0.0], [0.0]]), "ctx", dev(1.0, 1.0))
    assert pool.decide("user", "q1", base_of(kv([[9.0], [9.0]]))) is first  # decided once
    assert pool.decide("user", "q2", base_of(kv([[50.0], [50.0]]))).reason == "warm-up"
    pool.record("user", "q2", kv([[50.0], [50.0]]), "ctx", dev(3.0, 3.0))
    near = pool.decide("user", "q3", base_of(kv([[1.0], [1.0]])))
    assert not near.anchor and near.reason == "shareable" and calls == 1
    assert near.entropy is not None and near.threshold == pytest.approx(0.3)
    assert [a.uses for a in pool.anchors("user")] == [1, 0]  # top-p of the similarity: q1
    novel = pool.decide("user", "q4", base_of(kv([[25.0], [25.0]])))  # equidistant: no clear match
    assert novel.anchor and novel.reason == "entropy"
    assert pool.needs_record("user", "q4", "ctx") and not pool.needs_record("user", "q3", "ctx")
    assert pool.needs_record("user", "q1", "other-ctx") and not pool.needs_record(
        "user", "q1", "ctx"
    )
    assert pool.covered("user", "ctx") and not pool.covered("user", "other-ctx")
    assert pool.promote("user", "q3").reason == "new-context"
    assert pool.needs_record("user", "q3", "ctx")


def test_estimates_interpolate_deviations_and_never_correct_layer_zero() -> None:
    pool = AnchorPool()
    base = KVBlock(torch.zeros(2, 1, 2, 1), torch.zeros(2, 1, 2, 1))
    pool.decide("s", "a", lambda: base)
    pool.record("s", "a", base, "ctx", dev(2.0, 5.0, layers=2))
    assert pool.estimate("s", "x", "unknown-ctx", base, 1) is None
    assert pool.estimate("s", "x", "ctx", base, 3) is None  # the following segment differs
    offsets = pool.estimate("s", "x", "ctx", base, 1)
    assert offsets is not None and offsets.anchors == 1
    assert torch.equal(offsets.content.keys[0], torch.zeros(1, 2, 1))  # layer 0
    assert torch.allclose(offsets.content.keys[1], torch.full((1, 2, 1), 2.0))
    assert torch.allclose(offsets.following.values[1], torch.full((1, 1, 1), 5.0))
    # two anchors: the nearer one dominates, token by token
    other = KVBlock(torch.full((2, 1, 2, 1), 40.0), torch.full((2, 1, 2, 1), 40.0))
    pool.record("s", "b", other, "ctx", dev(-2.0, -5.0, layers=2))
    near_b = pool.estimate("s", "y", "ctx", KVBlock(other.keys + 0.5, other.values + 0.5), 1)
    assert near_b is not None and near_b.anchors == 2
    assert torch.allclose(near_b.content.keys[1], torch.full((1, 2, 1), -2.0), atol=1e-4)


def test_eviction_drops_the_least_used_of_the_oldest_window() -> None:
    pool = AnchorPool(max_anchors=3, window=2)
    for key in ("a", "b", "c"):
        pool.record("s", key, kv([[0.0]]), "ctx", dev(0.0, 0.0, tokens=1))
    pool.anchors("s")[0].uses = 5  # "a" is old but used; "b" is old and unused
    pool.record("s", "d", kv([[0.0]]), "ctx", dev(0.0, 0.0, tokens=1))
    assert [a.key for a in pool.anchors("s")] == ["a", "c", "d"]
    assert pool.evictions == 1
    evicted = pool.decision("s", "b")
    assert evicted is not None and not evicted.anchor and evicted.reason == "evicted"
    pool.record("s", "b", kv([[0.0]]), "ctx2", dev(0.0, 0.0, tokens=1))  # not re-created
    assert [a.key for a in pool.anchors("s")] == ["a", "c", "d"]
    with pytest.raises(ValueError):
        AnchorPool(max_anchors=0)
