"""The lean one-token decode step gives bit-for-bit the model's own forward, in fp32 and bf16.

``TransformersModel.lean_decode`` (on by default for Llama models) runs decode steps without
``model.forward``; these tests hold it to the same logits, the same cached keys and values, and
the same greedy tokens as transformers' own forward and as a plain Hugging Face greedy loop.
Where the lean step pads one-row projections to two rows (``LeanDecode.mode() == "padded"``, on
CPUs whose one-row matmul rounds apart from a batch's), the reference steps the model's forward on
two copies of the sequence (one prefill, its cache repeated), whose rows take a batch's kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from counterpoint.runtime.backends._attention import PACKED_SDPA
from counterpoint.runtime.backends._lean import LeanDecode
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import (
    TransformersDecoder,
    TransformersModel,
    cache_argument,
    forward_logits,
)

PROMPTS = [
    "What is the capital of France?",
    "Write a poem about the sea.",
    "List three fruits, one per line.",
]
STEPS = 16
pytestmark = pytest.mark.model


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def model(request: pytest.FixtureRequest) -> Iterator[TransformersModel]:
    loaded = TransformersModel.load(dtype=request.param)
    yield loaded
    loaded.close()


def _ids(model: TransformersModel, text: str) -> list[int]:
    prompt = model.render([Message(role="user", content=text)])
    return model.encode(prompt.text, special_tokens=True)


def _copies(model: TransformersModel) -> int:
    """How many copies of a sequence the reference forward runs: 2 where the lean step pads."""
    lean = LeanDecode.build(model.hf_model)
    return 2 if lean is not None and lean.mode() == "padded" else 1


def _copied(cache: DynamicCache, copies: int) -> DynamicCache:
    """``cache`` with its one sequence repeated ``copies`` times along the batch."""
    if copies > 1:
        for layer in cache.layers:
            layer.keys = layer.keys.repeat(copies, 1, 1, 1)
            layer.values = layer.values.repeat(copies, 1, 1, 1)
    return cache


def _hf_greedy(model: TransformersModel, ids: list[int], count: int, copies: int = 1) -> list[int]:
    """A plain Hugging Face greedy loop: one ``model.forward`` per token on a DynamicCache (the
    prompt prefilled once; each step on ``copies`` copies of the sequence, reading the first)."""
    hf = model.hf_model
    cache = DynamicCache(config=hf.config)
    arg = cache_argument(hf)
    out: list[int] = []
    with torch.inference_mode():
        logits = hf(input_ids=torch.tensor([ids]), use_cache=True, **{arg: cache}).logits
        _copied(cache, copies)
        for _ in range(count):
            token = int(logits[0, -1].argmax())
            if token in model.eos_token_ids:
                break
            out.append(token)
            rows = torch.tensor([[token]] * copies)
            logits = hf(input_ids=rows, use_cache=True, **{arg: cache}).logits
    return out


async def _decoder_greedy(model: TransformersModel, ids: list[int], count: int) -> list[int]:
    decoder = await model.start_tokens(ids, SamplingParams(max_tokens=count))
    out = []
    while (token := await decoder.step()) is not None:
        out.append(token.id)
    await decoder.close()
    return out


def test_the_embedded_model_has_a_lean_step(model: TransformersModel) -> None:
    assert model.lean_decode
    assert LeanDecode.build(object()) is None


@pytest.mark.parametrize("attention", [PACKED_SDPA, "sdpa"])
def test_lean_step_is_bit_identical_to_the_forward(
    model: TransformersModel, attention: str
) -> None:
    hf = model.hf_model
    lean = LeanDecode.build(hf)
    assert lean is not None
    copies = _copies(model)
    ids = _ids(model, PROMPTS[0])
    ours, theirs = DynamicCache(config=hf.config), DynamicCache(config=hf.config)
    hf.set_attn_implementation(attention)
    try:
        _step_against_forward(hf, lean, ids, ours, theirs, copies)
    finally:
        hf.set_attn_implementation(PACKED_SDPA)


def _step_against_forward(
    hf: Any, lean: LeanDecode, ids: list[int], ours: DynamicCache, theirs: DynamicCache, copies: int
) -> None:
    arg = cache_argument(hf)
    with torch.inference_mode():
        for cache in (ours, theirs):
            hf(input_ids=torch.tensor([ids]), use_cache=True, **{arg: cache})
        _copied(theirs, copies)
        token = ids[-1]
        for _ in range(STEPS):
            assert lean.fits(ours)
            got = lean.step(token, ours)
            want = hf(
                input_ids=torch.tensor([[token]] * copies),
                use_cache=True,
                logits_to_keep=1,
                **{arg: theirs},
            ).logits[0]
            assert torch.equal(got, want)
            for a, b in zip(ours.layers, theirs.layers, strict=True):
                assert torch.equal(a.keys, b.keys[:1]) and torch.equal(a.values, b.values[:1])
            token = int(want[-1].argmax())


async def test_decoder_greedy_tokens_match_a_plain_hf_loop_and_the_old_path(
    model: TransformersModel,
) -> None:
    copies = _copies(model)
    for text in PROMPTS:
        ids = _ids(model, text)
        want = _hf_greedy(model, ids, STEPS)
        model.lean_decode = False
        try:
            before = await _decoder_greedy(model, ids, STEPS)
        finally:
            model.lean_decode = True
        after = await _decoder_greedy(model, ids, STEPS)
        assert before == want, text
        assert after == (want if copies == 1 else _hf_greedy(model, ids, STEPS, copies)), text


async def test_extend_then_decode_matches_the_old_path(model: TransformersModel) -> None:
    if _copies(model) == 2:
        pytest.skip(
            "this CPU's one-row matmul rounds apart from a batch's, so the lean step pads and "
            "the old path (one-row forward) differs by design; the padded step is held to the "
            "forward on two copies above and to batches with interrupts in test_batching.py"
        )
    # No prefix cache: a prompt prefilled in two chunks may round differently in bf16.
    model = TransformersModel(model.hf_model, model.tokenizer, prefix_cache=False)
    runs: dict[bool, list[int]] = {}
    for lean in (False, True):
        model.lean_decode = lean
        try:
            decoder = await model.start(
                [Message(role="user", content=PROMPTS[1])], SamplingParams(max_tokens=40)
            )
            assert isinstance(decoder, TransformersDecoder)
            ids = [t.id for _ in range(8) if (t := await decoder.step()) is not None]
            await decoder.extend(" and the wind")
            while (token := await decoder.step()) is not None:
                ids.append(token.id)
            runs[lean] = ids
            await decoder.close()
        finally:
            model.lean_decode = True
    model.close()
    assert runs[True] == runs[False]


def test_hooks_and_changed_weights_keep_the_models_own_semantics(model: TransformersModel) -> None:
    hf = model.hf_model
    lean = LeanDecode.build(hf)
    assert lean is not None
    cache = DynamicCache(config=hf.config)
    with torch.inference_mode():
        hf(input_ids=torch.tensor([_ids(model, PROMPTS[0])]), use_cache=True, cache=cache)
    assert lean.fits(cache)
    hook = hf.model.layers[3].mlp.register_forward_hook(lambda *args: None)
    try:
        assert not lean.fits(cache)  # a hook would be skipped: the model's forward runs instead
    finally:
        hook.remove()
    assert lean.fits(cache)
    if lean._packed:  # bf16: a weight changed in place is packed again before the next step
        packed = lean._packed[0]
        with torch.no_grad():
            packed.module.weight.mul_(1)
        assert lean.fits(cache) and packed.current()


class _Refusing:
    """A projection whose kernel refuses the probe's rows."""

    weight = torch.zeros(4, 8, dtype=torch.bfloat16)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no kernel for these rows")


def test_a_projection_whose_kernel_fails_the_probe_counts_as_differing() -> None:
    from counterpoint.runtime.backends._lean import _row_invariance

    assert _row_invariance(_Refusing()) == ((4, 8), False, False)


@pytest.mark.parametrize("attention", [PACKED_SDPA, "sdpa"])
def test_a_pass_of_several_tokens_is_bit_identical_to_the_forward(
    model: TransformersModel, attention: str
) -> None:
    """``LeanDecode.feed``: a prompt on an empty cache, then short and long passes on it, keeping
    one, two, all or no rows of logits, give the forward's logits and keys and values bit for
    bit."""
    hf = model.hf_model
    lean = LeanDecode.build(hf)
    assert lean is not None and lean.feeds_exactly()
    arg = cache_argument(hf)
    ids = _ids(model, PROMPTS[1])
    more = model.encode(" The sea is wide and deep, and the wind is cold tonight." * 12)
    ours, theirs = DynamicCache(config=hf.config), DynamicCache(config=hf.config)
    before = hf.config._attn_implementation
    hf.set_attn_implementation(attention)
    try:
        assert lean.feeds_exactly()  # probed on this attention too
        with torch.inference_mode():
            for part, keep in ((ids, 1), (more[:5], 2), (more[5:9], 4), (more[9:], 0)):
                got = lean.feed(part, ours, keep)
                want = hf(
                    input_ids=torch.tensor([part]),
                    use_cache=True,
                    logits_to_keep=max(1, keep),
                    **{arg: theirs},
                ).logits[0]
                assert got.shape == (keep, hf.config.vocab_size)
                assert torch.equal(got, want[want.shape[0] - keep :]), (len(part), keep)
                for a, b in zip(ours.layers, theirs.layers, strict=True):
                    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    finally:
        hf.set_attn_implementation(before)
    assert len(more) > 100  # the last pass is a long one


def _count_feeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every ``LeanDecode.feed`` pass from now on (the feed still runs)."""
    fed: list[int] = []
    feed = LeanDecode.feed

    def counting(self: LeanDecode, ids: Any, cache: DynamicCache, keep: int) -> torch.Tensor:
        fed.append(len(ids))
        return feed(self, ids, cache, keep)

    monkeypatch.setattr(LeanDecode, "feed", counting)
    return fed


async def test_passes_of_several_tokens_run_lean_and_change_no_token(
    model: TransformersModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt, an extension and the steps after them: the same tokens whether passes of
    several tokens run the lean feed or the model's forward (``lean_feed``), and the feed does
    run them; a probe that fails sends them to the forward too."""
    fresh = TransformersModel(model.hf_model, model.tokenizer, prefix_cache=False)
    shared = LeanDecode.of(model.hf_model)
    threads = (torch.get_num_threads(), fresh.prefill_threads)
    assert shared is not None and shared.feeds_exactly(threads)  # probed before counting
    fed = _count_feeds(monkeypatch)
    runs: dict[str, list[int]] = {}
    for lean in ("on", "off", "probe fails"):
        fresh.lean_feed = lean != "off"
        if lean == "probe fails":
            monkeypatch.setattr(LeanDecode, "feeds_exactly", lambda self, threads=(): False)
        decoder = await fresh.start(
            [Message(role="user", content=PROMPTS[2])], SamplingParams(max_tokens=30)
        )
        ids = [t.id for _ in range(6) if (t := await decoder.step()) is not None]
        await decoder.extend("\nbanana, cherry and")
        while (token := await decoder.step()) is not None:
            ids.append(token.id)
        await decoder.close()
        runs[lean] = ids
        if lean == "on":  # the prompt (in pieces at its message boundaries) and the extension
            assert len(fed) >= 2 and min(fed) > 1, fed
            counted = len(fed)
    fresh.close()
    assert len(fed) == counted  # none with lean_feed off or the probe failed
    assert runs["on"] == runs["off"] == runs["probe fails"]


def test_a_feed_that_differs_from_the_forward_is_not_used(model: TransformersModel) -> None:
    hf = model.hf_model
    for broken in ("rounds apart", "raises"):
        lean = LeanDecode.build(hf)
        assert lean is not None
        feed = lean.feed

        def wrong(
            ids: Any, cache: DynamicCache, keep: int, how: str = broken, feed: Any = feed
        ) -> torch.Tensor:
            if how == "raises":
                raise TypeError("an argument this transformers version does not take")
            return feed(ids, cache, keep) + 1.0  # bf16: a factor near 1 could round away

        lean.feed = wrong  # type: ignore[method-assign]
        assert not lean.feeds_exactly(), broken


def test_the_backends_forward_logits_are_the_forwards(
    model: TransformersModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``forward_logits`` (what KV reuse prefills with): several tokens through the feed (on an
    empty cache and on a filled one), one through the model's forward, all bit for bit what the
    forward gives and leaves; ``lean=False`` keeps to the forward."""
    hf = model.hf_model
    arg = cache_argument(hf)
    ids = _ids(model, PROMPTS[0])
    fed = _count_feeds(monkeypatch)
    shared = LeanDecode.of(hf)
    assert shared is not None and shared.feeds_exactly()
    fed.clear()  # the probe's own feeds
    ours, theirs = DynamicCache(config=hf.config), DynamicCache(config=hf.config)
    for part, keep in ((ids[:-5], 3), (ids[-5:-1], 2), (ids[-1:], 1)):
        got = forward_logits(hf, part, keep, ours)
        with torch.inference_mode():
            want = hf(
                input_ids=torch.tensor([part]), use_cache=True, logits_to_keep=keep, **{arg: theirs}
            ).logits[0]
        assert torch.equal(got, want)
    for a, b in zip(ours.layers, theirs.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert fed == [len(ids) - 5, 4]
    forward_logits(hf, ids, 1, DynamicCache(config=hf.config), lean=False)
    assert fed == [len(ids) - 5, 4]
    with pytest.raises(ValueError, match="at least one row"):
        forward_logits(hf, ids, 0, ours)
