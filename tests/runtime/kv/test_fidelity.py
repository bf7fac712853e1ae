"""Fidelity measures: greedy agreement and KL between next-token distributions."""

from __future__ import annotations

import math

import pytest
import torch

from counterpoint.runtime.kv.fidelity import compare_logits


def test_identical_logits_agree_everywhere_with_zero_kl() -> None:
    logits = torch.randn(6, 50)
    fid = compare_logits(logits, logits.clone())
    assert fid.identical and fid.agreed == 6 and fid.tokens == 6
    assert fid.token_agreement == 1.0
    assert fid.mean_kl == pytest.approx(0.0, abs=1e-6) and fid.first_kl == pytest.approx(
        0.0, abs=1e-6
    )


def test_agreement_counts_leading_positions_and_kl_is_reference_first() -> None:
    ref = torch.tensor([[0.0, 0.0, -9.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    cand = ref.clone()
    cand[0] = torch.tensor([math.log(3.0), 0.0, -9.0])  # same argmax, different distribution
    cand[2] = torch.tensor([5.0, 0.0, 0.0])  # argmax differs at position 2
    fid = compare_logits(ref, cand)
    assert fid.agreed == 2 and not fid.identical
    assert fid.token_agreement == pytest.approx(0.75)
    # KL([.5, .5] || [.75, .25]) = .5·ln(4/3), ignoring the ~0 third token
    assert fid.first_kl == pytest.approx(0.5 * math.log(4 / 3), rel=1e-3)
    assert fid.mean_kl > fid.first_kl / 4
    assert fid.as_dict()["agreed"] == 2


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError):
        compare_logits(torch.zeros(2, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError):
        compare_logits(torch.zeros(0, 5), torch.zeros(0, 5))
