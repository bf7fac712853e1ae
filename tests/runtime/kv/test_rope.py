"""RoPE re-rotation: algebra on random keys, and on the real model against a fresh prefill."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from transformers import DynamicCache

from counterpoint.errors import ConfigError
from counterpoint.runtime.backends.transformers import TransformersModel, cache_argument
from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv.rope import Rotary, rotate_half

TEXT = (
    "The lighthouse keeper climbed the spiral stairs at dusk, wound the clockwork, trimmed the "
    "wick and wrote the weather in the log: wind north-west, sea moderate, visibility good."
)


def test_rotations_compose_invert_and_preserve_norms() -> None:
    rot = Rotary(1.0 / (10000 ** (torch.arange(0, 8, 2, dtype=torch.float32) / 8)), head_dim=8)
    keys = torch.randn(3, 2, 5, 8)
    assert torch.allclose(rot.rotate(rot.rotate(keys, 7), 11), rot.rotate(keys, 18), atol=1e-5)
    assert torch.allclose(rot.rotate(rot.rotate(keys, 300), -300), keys, atol=1e-5)
    assert torch.allclose(rot.rotate(keys, 9).norm(dim=-1), keys.norm(dim=-1), atol=1e-5)
    assert rot.rotate(keys, 0) is keys
    per_token = rot.rotate(keys, torch.tensor([0, 1, 2, 3, 4]))
    assert torch.allclose(per_token[:, :, 3], rot.rotate(keys[:, :, 3:4], 3)[:, :, 0], atol=1e-6)
    # a 2-d channel pair rotates by exactly δ·θ
    unit = torch.zeros(1, 1, 1, 8)
    unit[..., 0] = 1.0
    moved = rot.rotate(unit, 2)
    assert torch.allclose(
        moved[0, 0, 0, [0, 4]],
        torch.tensor([torch.cos(torch.tensor(2.0)), torch.sin(torch.tensor(2.0))]),
    )
    assert torch.equal(
        rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.tensor([-3.0, -4.0, 1.0, 2.0])
    )
    half = rot.rotate(keys.to(torch.bfloat16), 5)
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError):
        rot.rotate(keys, torch.tensor([1, 2]))
    with pytest.raises(ConfigError):
        Rotary(torch.ones(2), head_dim=8)  # partial RoPE


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load(dtype="float32")
    yield loaded
    loaded.close()


def prefill(model: TransformersModel, ids: list[int], offset: int) -> KVBlock:
    """KV of ``ids`` prefilled with positions ``offset, offset + 1, ...``."""
    hf = model.hf_model
    cache = DynamicCache(config=hf.config)
    positions = torch.arange(len(ids))[None] + offset
    with torch.inference_mode():
        hf(
            input_ids=torch.tensor([ids]),
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{cache_argument(hf): cache},
        )
    return KVBlock.from_cache(cache)


@pytest.mark.model
def test_a_rotated_segment_matches_a_fresh_prefill_at_the_new_position(
    model: TransformersModel,
) -> None:
    """Same tokens and same preceding tokens, only the positions differ (via position_ids)."""
    ids = model.encode(TEXT)
    split = len(ids) // 2  # the segment is the second half; the first half precedes it
    p, q = 0, 517
    at_p = prefill(model, ids, p).slice(split)
    at_q = prefill(model, ids, q).slice(split)
    rotary = Rotary.of(model.hf_model)
    moved = rotary.rotate(at_p.keys, q - p)
    scale = float(at_q.keys.abs().max())
    error = float((moved - at_q.keys).abs().max())
    assert error <= 1e-4 * scale, (error, scale)
    assert float((at_p.values - at_q.values).abs().max()) <= 1e-4 * float(at_q.values.abs().max())
    # and it is the rotation that did it: unrotated keys are far off
    assert float((at_p.keys - at_q.keys).abs().max()) > 0.1 * scale
    # back again: q -> p
    back = rotary.rotate(at_q.keys, p - q)
    assert float((back - at_p.keys).abs().max()) <= 1e-4 * scale


@pytest.mark.model
def test_the_model_rotary_is_found_and_unsupported_kinds_are_refused(
    model: TransformersModel,
) -> None:
    rotary = Rotary.of(model.hf_model)
    assert rotary.head_dim == 64 and rotary.inv_freq.numel() == 32

    fake = SimpleNamespace(config=SimpleNamespace(rope_parameters={"rope_type": "dynamic"}))
    with pytest.raises(ConfigError, match="dynamic"):
        Rotary.of(fake)
