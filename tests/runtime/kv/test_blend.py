"""Selective recompute (CacheBlend) on the real embedded model: exact at ratio 1, closer to the
dense KV as the ratio grows, the most deviating tokens first, and wired into the reuse policies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from transformers import DynamicCache

from counterpoint.errors import ConfigError
from counterpoint.runtime.backends.base import SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.runtime.kv import Content, KVReuseConfig, KVReuseModel, PromptBuilder
from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv.blend import blend, supports_blend
from counterpoint.runtime.kv.fidelity import forward_logits
from counterpoint.runtime.kv.rope import Rotary

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def base() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load(dtype="float32")
    yield loaded
    loaded.close()


def _dense(base: TransformersModel, ids: list[int]) -> KVBlock:
    cache = DynamicCache(config=base.hf_model.config)
    forward_logits(base.hf_model, ids, 1, cache)
    return KVBlock.from_cache(cache)


def _reused(base: TransformersModel) -> tuple[list[int], KVBlock, KVBlock, int]:
    """A prompt ``a + b`` whose ``b`` part is KV computed alone and rotated into place."""
    a = base.encode("The quick brown fox jumps over the lazy dog. " * 3)
    b = base.encode("Paris is the capital of France and Berlin that of Germany. " * 2)
    ids = a + b
    dense = _dense(base, ids)
    alone = _dense(base, b)
    moved = KVBlock(Rotary.of(base.hf_model).rotate(alone.keys, len(a)), alone.values)
    return ids, KVBlock.cat([dense.slice(0, len(a)), moved]), dense, len(a)


def _error(x: KVBlock, ref: KVBlock) -> float:
    return float((x.keys - ref.keys).abs().mean() + (x.values - ref.values).abs().mean())


def test_full_recompute_is_the_dense_prefill(base: TransformersModel) -> None:
    assert supports_blend(base.hf_model)
    ids, reused, dense, start = _reused(base)
    assert _error(reused, dense) > 1e-2  # reuse without correction is off
    blended, report = blend(base.hf_model, ids, reused, range(start, len(ids)), 1.0)
    assert report.candidates == len(ids) - start
    assert report.recomputed == tuple(range(start, len(ids)))
    assert float((blended.keys - dense.keys).abs().max()) < 1e-4
    assert float((blended.values - dense.values).abs().max()) < 1e-4
    assert _error(reused, dense) > 1e-2  # the input block is left as it was


def test_a_partial_recompute_picks_the_most_deviating_tokens(base: TransformersModel) -> None:
    ids, reused, dense, start = _reused(base)
    errors = []
    for ratio in (0.0, 0.1, 0.3):
        blended, report = blend(base.hf_model, ids, reused, range(start, len(ids)), ratio)
        errors.append(_error(blended, dense))
        assert len(report.recomputed) == -(-int(ratio * 100) * report.candidates // 100)
    assert errors[0] < _error(reused, dense)  # the probe layers alone are exact
    assert errors[0] > errors[1] > errors[2]
    _, report = blend(base.hf_model, ids, reused, range(start, len(ids)), 0.1)
    # the tokens right after the new context deviate most (they attend to it most)
    assert start in report.recomputed
    assert report.max_deviation >= report.mean_deviation > 0
    # ``keep`` positions are always recomputed
    _, forced = blend(base.hf_model, ids, reused, range(start, len(ids)), 0.0, keep=[len(ids) - 1])
    assert forced.recomputed == (len(ids) - 1,)


def test_bad_arguments_are_config_errors(base: TransformersModel) -> None:
    ids, reused, _, start = _reused(base)
    with pytest.raises(ConfigError, match="ratio"):
        blend(base.hf_model, ids, reused, range(start, len(ids)), 1.5)
    with pytest.raises(ConfigError, match="ids"):
        blend(base.hf_model, ids[:-1], reused, range(start, len(ids)), 0.1)
    with pytest.raises(ConfigError, match="recompute_ratio"):
        KVReuseConfig(recompute_ratio=-0.1)
    assert not supports_blend(object())


async def test_the_shift_policy_blends_reused_calls(base: TransformersModel) -> None:
    system = "You answer in one short sentence."
    shared = Content("doc", "Mars looks red because iron oxide, rust, covers its surface dust.")
    first = PromptBuilder().system(system).user(shared, "\n\nWhat colour is Mars?")
    second = PromptBuilder().system(system).user("Read this first.\n\n", shared, "\n\nWhy red?")
    plain = KVReuseModel(base, "shift")
    blended = KVReuseModel(base, "shift", config=KVReuseConfig(recompute_ratio=0.5))
    heads = KVReuseModel(
        base, "shift", config=KVReuseConfig(recompute_ratio=0.25, recompute_select="head")
    )
    for model in (plain, blended, heads):
        for builder in (first, second):
            decoder = await model.start(builder.render(model), SamplingParams(max_tokens=2))
            while await decoder.step() is not None:
                pass
            await decoder.close()
    assert plain.calls[-1].reused and blended.calls[-1].reused
    # the blended call computed more than the plain one: half the reused tokens again
    extra = blended.calls[-1].computed_tokens - plain.calls[-1].computed_tokens
    assert extra >= blended.calls[-1].reused_tokens // 2 > 0
    # heads: about a quarter of each reused segment, from its start
    extra = heads.calls[-1].computed_tokens - plain.calls[-1].computed_tokens
    assert 0 < extra < blended.calls[-1].computed_tokens - plain.calls[-1].computed_tokens
    with pytest.raises(ConfigError, match="recompute_select"):
        KVReuseConfig(recompute_select="random")  # type: ignore[arg-type]
