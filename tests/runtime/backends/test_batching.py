"""Batched decoding across sessions on the real embedded model: every session's greedy tokens are
those it gets alone, token for token, with 1, 2, 4 and 8 sessions of different lengths joining
and leaving, interrupts prefilled mid-stream, and long prefills chunked between the others' ticks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
import torch
from transformers import DynamicCache

from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.runtime.backends._lean import LeanDecode
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import (
    TransformersDecoder,
    TransformersModel,
    cache_argument,
)

pytestmark = pytest.mark.model

QUESTIONS = [
    "What is the capital of France?",
    "Write a poem about the sea.",
    "List three fruits, one per line.",
    "Explain photosynthesis to a child.",
    "Name two planets.",
    "How do I boil an egg?",
    "Say hello in Spanish.",
    "What is two plus two?",
]


@dataclass(frozen=True)
class Plan:
    """One session: its question, how many tokens, and where an interrupt is prefilled."""

    question: str
    tokens: int
    delay: float = 0.0  # seconds before it joins
    extend_at: int | None = None  # after this many tokens, prefill an interrupt
    extend_text: str = "\n[INTR] c1 [HEAD] 21 degrees and sunny [END]\n"


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load(dtype="bfloat16")
    yield loaded
    loaded.close()


async def run(model: TransformersModel, plan: Plan) -> list[int]:
    await asyncio.sleep(plan.delay)
    params = SamplingParams(max_tokens=plan.tokens, temperature=0.0)
    decoder = await model.start([Message(role="user", content=plan.question)], params)
    out: list[int] = []
    try:
        while (token := await decoder.step()) is not None:
            out.append(token.id)
            if plan.extend_at is not None and len(out) == plan.extend_at:
                await decoder.extend(plan.extend_text)
    finally:
        await decoder.close()
    return out


async def alone(model: TransformersModel, plans: Sequence[Plan]) -> list[list[int]]:
    return [await run(model, p) for p in plans]


async def together(model: TransformersModel, plans: Sequence[Plan]) -> list[list[int]]:
    return list(await asyncio.gather(*(run(model, p) for p in plans)))


def _ids(model: TransformersModel, question: str) -> list[int]:
    prompt = model.render([Message(role="user", content=question)])
    return model.encode(prompt.text, special_tokens=True)


def _prefilled(model: TransformersModel, ids: list[int]) -> DynamicCache:
    """A cache holding all of ``ids`` but the last (the one a step then feeds)."""
    hf = model.hf_model
    cache = DynamicCache(config=hf.config)
    with torch.inference_mode():
        hf(input_ids=torch.tensor([ids[:-1]]), use_cache=True, **{cache_argument(hf): cache})
    return cache


# ----------------------------------------------------------------------------- the batched step


def test_rows_of_a_batch_are_bit_for_bit_each_rows_own_in_bf16(model: TransformersModel) -> None:
    lean = LeanDecode.build(model.hf_model)
    assert lean is not None
    if not lean.batches_exactly():  # the model then steps sessions one by one (tests below hold)
        pytest.skip("this CPU's bf16 matmul gives a batch's rows other bits, padded or not")
    prompts = [_ids(model, q)[: 20 + 7 * i] for i, q in enumerate(QUESTIONS[:3])]
    alone_caches = [_prefilled(model, p) for p in prompts]
    batch_caches = [_prefilled(model, p) for p in prompts]
    with torch.inference_mode():
        singles = [lean.step(p[-1], c)[0] for p, c in zip(prompts, alone_caches, strict=True)]
        batch = lean.step_many([p[-1] for p in prompts], batch_caches)
    assert batch.shape == (3, singles[0].shape[-1])
    for row, single in enumerate(singles):
        assert torch.equal(batch[row], single)
    for a, b in zip(alone_caches, batch_caches, strict=True):
        for la, lb in zip(a.layers, b.layers, strict=True):
            assert torch.equal(la.keys, lb.keys) and torch.equal(la.values, lb.values)


class _OneRowApart:
    """A projection whose one-row calls come out other than the same row in a batch (as
    oneDNN's one-row bf16 kernel does for ``down_proj`` on some CPUs), made plain."""

    def __init__(self, linear: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.inner = linear
        self.weight = linear.weight if hasattr(linear, "weight") else linear.module.weight  # type: ignore[attr-defined]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out + 0.5 if x.shape[0] == 1 else out


def test_a_projection_whose_one_row_kernel_differs_is_padded_so_batches_stay_exact(
    model: TransformersModel,
) -> None:
    lean = LeanDecode.build(model.hf_model)
    assert lean is not None
    if not lean.batches_exactly():
        pytest.skip("this CPU's bf16 matmul gives a batch's rows other bits, padded or not")
    lean = LeanDecode.build(model.hf_model)  # a fresh one, probed after the change below
    assert lean is not None
    layer = list(lean._layers[2])
    apart = _OneRowApart(layer[11])  # down_proj of layer 2
    lean._linears[lean._linears.index(layer[11])] = apart
    layer[11] = apart
    lean._layers[2] = tuple(layer)
    assert lean.mode() == "padded"
    prompts = [_ids(model, q)[: 18 + 5 * i] for i, q in enumerate(QUESTIONS[:3])]
    alone_caches = [_prefilled(model, p) for p in prompts]
    batch_caches = [_prefilled(model, p) for p in prompts]
    with torch.inference_mode():
        singles = [lean.step(p[-1], c) for p, c in zip(prompts, alone_caches, strict=True)]
        batch = lean.step_many([p[-1] for p in prompts], batch_caches)
        one = lean.step_many([prompts[0][-1]], [_prefilled(model, prompts[0])])
    for row, single in enumerate(singles):
        assert torch.equal(batch[row], single[0])
    assert torch.equal(one[0], singles[0][0])


class _OneRowApartLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose one-token passes come out other than a batch's rows, in the model's
    own forward as in the lean step (made plain: +0.5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + 0.5 if x.numel() == x.shape[-1] else out


def test_a_one_token_piece_of_a_chunked_feed_takes_the_padded_step_too() -> None:
    """Where one-row steps are padded, the last token of a chunked feed gets the logits it gets
    fed on its own (as after a prefix-cache hit), not those of an unpadded one-row forward."""
    fresh = TransformersModel.load(dtype="bfloat16")
    try:
        hf = fresh.hf_model
        lean = LeanDecode.build(hf)
        if lean is None or not lean.batches_exactly():
            pytest.skip("this CPU's bf16 matmul gives a batch's rows other bits, padded or not")
        old = hf.model.layers[2].mlp.down_proj
        apart = _OneRowApartLinear(old.in_features, old.out_features, bias=False)
        apart.weight = old.weight
        hf.model.layers[2].mlp.down_proj = apart
        assert LeanDecode.of(hf) is not None and LeanDecode.of(hf).mode() == "padded"  # type: ignore[union-attr]
        fresh.prefill_chunk = 16
        feed = list(range(1000, 1017))  # 17 tokens: a piece of 16, then one of 1

        async def go() -> None:
            params = SamplingParams(max_tokens=4, temperature=0.0)
            whole = await fresh.start_tokens(_ids(fresh, QUESTIONS[0]), params)
            split = await fresh.start_tokens(_ids(fresh, QUESTIONS[0]), params)
            assert isinstance(whole, TransformersDecoder) and isinstance(split, TransformersDecoder)
            passes = whole.forward_passes
            at_once = await whole.force(feed, keep_logits=1)
            assert whole.forward_passes - passes == 2
            await split.force(feed[:16])
            alone = await split.force(feed[16:], keep_logits=1)
            assert at_once is not None and alone is not None
            assert torch.equal(at_once[-1], alone[-1])
            await whole.close()
            await split.close()

        asyncio.run(go())
    finally:
        fresh.close()


def test_fp32_rows_are_not_exact_as_they_are_and_sessions_keep_their_tokens() -> None:
    fp32 = TransformersModel.load(dtype="float32")
    try:
        lean = LeanDecode.build(fp32.hf_model)
        assert lean is not None
        # a batch of fp32 rows is never each row's own as it is (GEMM against GEMV); whether
        # padding makes it so depends on the CPU's BLAS: "alone" here
        assert lean.mode() != "rows"

        async def go() -> None:
            plans = [Plan(q, 6) for q in QUESTIONS[:3]]
            expected = await alone(fp32, plans)
            assert await together(fp32, plans) == expected  # stepped one by one, unchanged

        asyncio.run(go())
    finally:
        fp32.close()


def test_step_many_needs_one_cache_per_id(model: TransformersModel) -> None:
    lean = LeanDecode.build(model.hf_model)
    assert lean is not None
    with pytest.raises(ValueError, match="one cache per token id"):
        lean.step_many([1, 2], [DynamicCache(config=model.hf_model.config)])


# ----------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("sessions", [1, 2, 4, 8])
async def test_concurrent_sessions_match_each_session_alone(
    model: TransformersModel, sessions: int
) -> None:
    plans = [Plan(QUESTIONS[i], 6 + 5 * i) for i in range(sessions)]  # different lengths
    expected = await alone(model, plans)
    ticks0, steps0 = model.batch_stats
    rows0 = model.batched_rows
    got = await together(model, plans)
    ticks, steps = model.batch_stats[0] - ticks0, model.batch_stats[1] - steps0
    batched = model.batched_rows - rows0
    assert got == expected
    lean = LeanDecode.build(model.hf_model)
    exact = lean is not None and lean.batches_exactly()
    # batched passes only where a batch's rows are exact; there, sessions really share them
    assert (batched > 0) == (exact and sessions > 1), (batched, exact)
    assert all(len(g) > 0 for g in got)
    assert sum(map(len, got)) <= steps <= sum(map(len, got)) + sessions  # + the EOS steps
    if sessions > 1:
        # the steps really shared passes: about one tick per token of the longest session (one
        # by one, there would be a tick per step of every session)
        assert ticks <= max(len(g) for g in got) + sessions, (ticks, steps)


async def test_sessions_joining_late_and_interrupted_mid_stream_match_alone(
    model: TransformersModel,
) -> None:
    plans = [
        Plan(QUESTIONS[0], 24, extend_at=5),
        Plan(QUESTIONS[1], 30, delay=0.3),
        Plan(QUESTIONS[2], 18, extend_at=9, delay=0.1),
        Plan(QUESTIONS[3], 12),
        Plan(QUESTIONS[4], 26, extend_at=3, delay=0.6),
    ]
    expected = await alone(model, plans)
    assert await together(model, plans) == expected


async def test_a_long_prefill_lets_the_others_decode_between_its_chunks(
    model: TransformersModel,
) -> None:
    """A prompt of several prefill chunks does not stall a running session for all of it."""
    runner = await model.start(
        [Message(role="user", content=QUESTIONS[1])],
        SamplingParams(max_tokens=200, temperature=0.0),
    )
    long_question = " ".join(f"Fact {i}: the sky is blue." for i in range(120))
    assert len(_ids(model, long_question)) > 3 * model.prefill_chunk
    done = asyncio.Event()
    during: list[int] = []

    async def decode() -> None:
        while not done.is_set() and (token := await runner.step()) is not None:
            during.append(token.id)

    task = asyncio.create_task(decode())
    await asyncio.sleep(0.05)
    counted = len(during)
    joined = await model.start(
        [Message(role="user", content=long_question)], SamplingParams(max_tokens=4)
    )
    done.set()
    await task
    await joined.close()
    await runner.close()
    assert len(during) - counted >= 2  # tokens between the chunks of the other's prefill


async def test_a_session_past_the_context_is_refused_and_the_others_go_on(
    model: TransformersModel,
) -> None:
    limit = model.max_positions
    assert limit is not None
    plans = [Plan(QUESTIONS[0], 10), Plan(QUESTIONS[2], 10)]
    expected = await alone(model, plans)
    too_long = "word " * (limit + 10)

    async def refused() -> str:
        try:
            await model.start([Message(role="user", content=too_long)])
        except CounterpointError as exc:
            return str(exc)
        return "not refused"

    *got, message = await asyncio.gather(*(run(model, p) for p in plans), refused())
    assert got == expected
    assert f"past the {limit}" in message


async def test_a_cancelled_session_frees_its_place(model: TransformersModel) -> None:
    plans = [Plan(QUESTIONS[0], 12), Plan(QUESTIONS[3], 12)]
    expected = await alone(model, plans)
    victim = asyncio.create_task(run(model, Plan(QUESTIONS[1], 400)))
    others = asyncio.gather(*(run(model, p) for p in plans))
    await asyncio.sleep(0.4)
    victim.cancel()
    assert await others == expected
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert not [d for d in model._open_decoders() if not d.closed]


# ----------------------------------------------------------------------------- bounds


async def test_more_sessions_than_max_sequences_are_refused_with_the_limit(
    model: TransformersModel,
) -> None:
    small = TransformersModel(model.hf_model, model.tokenizer, max_sequences=2)
    try:
        first = await small.start([Message(role="user", content="Hi")])
        second = await small.start([Message(role="user", content="Hey")])
        with pytest.raises(CounterpointError, match=r"2 generations are open.*max_sequences"):
            await small.start([Message(role="user", content="Hello")])
        await first.close()
        third = await small.start([Message(role="user", content="Hello")])
        assert isinstance(third, TransformersDecoder)
        await second.close()
        await third.close()
    finally:
        small.close()


async def test_kv_bytes_past_the_budget_are_refused_before_any_pass(
    model: TransformersModel,
) -> None:
    budget = model.max_kv_bytes
    try:
        model.max_kv_bytes = 100 * 2**10  # ~4 tokens of this model's KV
        with pytest.raises(CounterpointError, match="max_kv_bytes"):
            await model.start([Message(role="user", content="Hi there")])
    finally:
        model.max_kv_bytes = budget
    assert not model._open_decoders()


def test_bounds_must_be_positive(model: TransformersModel) -> None:
    for name in ("max_batch", "max_sequences", "max_kv_bytes"):
        with pytest.raises(ConfigError, match=f"{name} must be a positive integer"):
            TransformersModel(model.hf_model, model.tokenizer, **{name: 0})
