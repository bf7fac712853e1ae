"""One-token attention with grouped query heads packed per key/value head (``_attention``): what
it computes, that prefill stays transformers' ``sdpa`` bit for bit, and that loaded models run it
in their own forward, which the lean step then matches (tests/runtime/backends/
test_lean_decode.py holds them bit for bit)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from counterpoint.runtime.backends._attention import (
    PACKED_SDPA,
    packed_decode,
    use_packed_attention,
)
from counterpoint.runtime.backends._lean import LeanDecode
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.backends.transformers import TransformersModel, cache_argument


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length", [1, 7, 300, 1100])
def test_packed_decode_is_grouped_query_attention(dtype: torch.dtype, length: int) -> None:
    generator = torch.Generator().manual_seed(length)
    q = torch.randn(2, 9, 1, 64, generator=generator).to(dtype)
    k = torch.randn(2, 3, length, 64, generator=generator).to(dtype)
    v = torch.randn(2, 3, length, 64, generator=generator).to(dtype)
    want = F.scaled_dot_product_attention(q, k, v, scale=0.125, enable_gqa=True)
    # query heads 0-2 read key/value head 0, 3-5 head 1, 6-8 head 2, as repeat_kv lays them out
    by_hand = torch.cat(
        [F.scaled_dot_product_attention(q[:, h : h + 1], k[:, h // 3 : h // 3 + 1],
                                        v[:, h // 3 : h // 3 + 1], scale=0.125)
         for h in range(9)],
        dim=1,
    )  # fmt: skip
    got = packed_decode(q, k, v, 0.125)
    assert got.shape == want.shape
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want.float(), atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(got.float(), by_hand.float(), atol=tolerance, rtol=tolerance)


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load(dtype="bfloat16")
    yield loaded
    loaded.close()


def _ids(model: TransformersModel, text: str) -> list[int]:
    return model.encode(
        model.render([Message(role="user", content=text)]).text, special_tokens=True
    )


@pytest.mark.model
def test_loaded_models_run_packed_attention(model: TransformersModel) -> None:
    assert model.hf_model.config._attn_implementation == PACKED_SDPA
    assert use_packed_attention(model.hf_model)  # already: nothing to do


@pytest.mark.model
def test_prefill_is_sdpa_bit_for_bit_and_a_step_agrees_within_rounding(
    model: TransformersModel,
) -> None:
    hf = model.hf_model
    arg = cache_argument(hf)
    ids = _ids(model, "Name three rivers of Europe and say which is longest.")
    runs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    try:
        for name in ("sdpa", PACKED_SDPA):
            hf.set_attn_implementation(name)
            cache = DynamicCache(config=hf.config)
            with torch.inference_mode():
                prefill = hf(input_ids=torch.tensor([ids]), use_cache=True, **{arg: cache}).logits
                token = int(prefill[0, -1].argmax())
                step = hf(input_ids=torch.tensor([[token]]), use_cache=True, **{arg: cache}).logits
            runs[name] = (prefill, step)
    finally:
        hf.set_attn_implementation(PACKED_SDPA)
    assert torch.equal(runs["sdpa"][0], runs[PACKED_SDPA][0])  # many tokens: sdpa itself
    torch.testing.assert_close(runs["sdpa"][1], runs[PACKED_SDPA][1], atol=0.1, rtol=0.02)
    assert int(runs["sdpa"][1][0, -1].argmax()) == int(runs[PACKED_SDPA][1][0, -1].argmax())


@pytest.mark.model
def test_the_lean_step_steps_aside_for_an_attention_it_does_not_run(
    model: TransformersModel,
) -> None:
    hf = model.hf_model
    lean = LeanDecode.build(hf)
    assert lean is not None
    cache = DynamicCache(config=hf.config)
    with torch.inference_mode():
        hf(input_ids=torch.tensor([_ids(model, "Hello")]), use_cache=True, cache=cache)
    assert lean.fits(cache)
    try:
        hf.set_attn_implementation("eager")
        assert not lean.fits(cache)  # the model's own forward runs instead
        assert not use_packed_attention(hf)  # eager is left as it is
        assert hf.config._attn_implementation == "eager"
    finally:
        hf.set_attn_implementation(PACKED_SDPA)
    assert lean.fits(cache)


def _tiny(kind: str, kv_heads: int) -> Any:
    import transformers

    config_cls = getattr(transformers, f"{kind}Config")
    model_cls = getattr(transformers, f"{kind}ForCausalLM")
    config = config_cls(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=kv_heads, attn_implementation="sdpa",
    )  # fmt: skip
    return model_cls(config).eval()


@pytest.mark.parametrize(
    ("kind", "kv_heads", "switched"),
    [("Llama", 2, True), ("Llama", 4, False), ("Mistral", 2, False)],
)
def test_only_llama_models_with_grouped_queries_are_switched(
    kind: str, kv_heads: int, switched: bool
) -> None:
    model = _tiny(kind, kv_heads)
    assert use_packed_attention(model) is switched
    assert model.config._attn_implementation == (PACKED_SDPA if switched else "sdpa")
    if switched:  # its one-token passes agree with sdpa's within rounding
        ids = torch.tensor([[1, 5, 9, 2]])
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=ids, cache=cache, use_cache=True)
            packed = model(input_ids=torch.tensor([[7]]), cache=cache, use_cache=True).logits
            model.set_attn_implementation("sdpa")
            cache = DynamicCache(config=model.config)
            model(input_ids=ids, cache=cache, use_cache=True)
            plain = model(input_ids=torch.tensor([[7]]), cache=cache, use_cache=True).logits
        torch.testing.assert_close(packed, plain)
