"""KV-reuse policies end to end on the real embedded model (fp32, short prompts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from counterpoint.agents.agent import Agent
from counterpoint.errors import ConfigError
from counterpoint.runtime.backends.base import Decoder, Message, Model, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.runtime.kv import (
    Content,
    KVCallStats,
    KVReuseConfig,
    KVReuseDecoder,
    KVReuseModel,
    PromptBuilder,
    agent_output_key,
)
from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv.fidelity import forward_logits
from counterpoint.runtime.session import Limits
from counterpoint.runtime.tracing import SpanKind, SQLiteTracer, query

pytestmark = pytest.mark.model

QUESTION = "Which planet is known as the red planet, and why does it look red?"
SYSTEM = "You are a careful astronomy tutor. Answer in one short sentence."


@pytest.fixture(scope="module")
def base() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load(dtype="float32")
    yield loaded
    loaded.close()


def prompt_for(model: KVReuseModel, system: str, *parts: str | Content) -> PromptBuilder:
    return PromptBuilder().system(system).user(*parts)


async def generate(decoder: Decoder, limit: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < limit and (token := await decoder.step()) is not None:
        ids.append(token.id)
    return ids


async def test_exact_policies_reuse_the_shared_prefix_and_match_dense(
    base: TransformersModel,
) -> None:
    dense, prefix = KVReuseModel(base, "dense"), KVReuseModel(base, "prefix")
    assert isinstance(dense, Model) and dense.name.endswith("[kv:dense]")
    outputs = {}
    for model in (dense, prefix):
        for question in ("What is a comet?", QUESTION):
            builder = prompt_for(model, SYSTEM, Content("user:q", question))
            decoder = await model.start(builder.render(model), SamplingParams(max_tokens=6))
            assert isinstance(decoder, Decoder)
            first = decoder.last_logits
            assert first is not None
            outputs[(model.policy, question)] = (await generate(decoder, 6), first.clone())
            await decoder.close()
    second = prefix.calls[-1]
    assert second.mode == "prefix" and second.reused_tokens >= 10  # the system prompt
    assert second.exact_tokens == second.reused_tokens
    assert dense.calls[-1].reused_tokens == 0 and dense.prefix_cache.nbytes == 0
    assert (
        second.ttft_s > 0 and second.computed_tokens == second.prompt_tokens - second.reused_tokens
    )
    for question in ("What is a comet?", QUESTION):
        ids_d, logits_d = outputs[("dense", question)]
        ids_p, logits_p = outputs[("prefix", question)]
        assert ids_d == ids_p
        assert torch.allclose(logits_d, logits_p, atol=1e-3)


async def test_a_measured_anchor_reconstructs_the_dense_cache(base: TransformersModel) -> None:
    """Same prompt twice, prefix cache emptied in between: the second call is assembled from the
    skeleton, the stored content and the anchor's own measured deviation, and must equal dense."""
    model = KVReuseModel(base, "anchors")
    builder = prompt_for(model, SYSTEM, "Question: ", Content("user:q", QUESTION), "\nBe brief.")
    first = await model.start(builder.render(model), SamplingParams(max_tokens=2))
    assert first.stats.mode == "dense" and first.stats.anchor_decision == "dense:warm-up"
    (report,) = first.stats.contents
    assert report.source == "computed" and report.recorded and report.slot == "user"
    await first.close()
    model.prefix_cache.clear()
    second = await model.start(builder.render(model), SamplingParams(max_tokens=2))
    assert second.stats.mode == "reuse" and second.stats.anchor_decision == "reuse"
    assert second.stats.contents[0].corrected_by == 1
    assert second.stats.reused_tokens == second.stats.prompt_tokens - 1  # only the last token
    ids = second.plan.ids
    cache = second.inner.cache
    assert cache is not None
    assembled = KVBlock.from_cache(cache, 0, len(ids))
    fresh = await base.run_in_worker(lambda: _dense_kv(base, ids))
    scale = float(fresh.keys.abs().max())
    assert float((assembled.keys - fresh.keys).abs().max()) <= 1e-3 * scale
    assert float((assembled.values - fresh.values).abs().max()) <= 1e-3 * float(
        fresh.values.abs().max()
    )
    logits = second.last_logits
    reference = await base.run_in_worker(lambda: forward_logits(base.hf_model, ids, 1))
    assert logits is not None and torch.allclose(logits.float(), reference[0], atol=1e-2)
    await second.close()


def _dense_kv(base: TransformersModel, ids: list[int]) -> KVBlock:
    from transformers import DynamicCache

    cache = DynamicCache(config=base.hf_model.config)
    forward_logits(base.hf_model, ids, 1, cache)
    return KVBlock.from_cache(cache)


async def test_anchors_warm_up_then_reuse_upstream_outputs(base: TransformersModel) -> None:
    seen: list[KVCallStats] = []
    model = KVReuseModel(base, "anchors", on_call=seen.append)
    questions = ["What is a comet?", "What is a moon?", "What is a star?"]
    decoders: list[KVReuseDecoder] = []
    for r, question in enumerate(questions):
        q = Content(f"user:r{r}", question)
        first = await model.start(
            prompt_for(model, "You answer in five words.", q).render(model),
            SamplingParams(max_tokens=8),
        )
        await generate(first, 8)
        await first.close()
        assert first.published is not None and first.published.origin == "generated"
        assert first.published.kv is not None and first.published.length > 0
        answer = Content(agent_output_key("a", r), first.published.text)
        second = await model.start(
            prompt_for(model, "You check answers.", q, "\nAnswer: ", answer).render(model),
            SamplingParams(max_tokens=4),
        )
        await generate(second, 4)
        await second.close()
        decoders += [first, second]
    modes = [d.stats.mode for d in decoders]
    assert modes[:4] == ["dense"] * 4  # two warm-up rounds: every placeholder gets anchors
    assert modes[5] == "reuse"  # the third consumer reuses the question and the answer
    sources = [c.source for c in decoders[5].stats.contents]
    assert sources == ["prefilled", "generated"]
    assert all(c.corrected_by == 2 for c in decoders[5].stats.contents)
    assert [s.mode for s in seen] == modes
    summary = model.summary()
    assert summary["calls"] == 6 and 0 < summary["reuse_rate"] < 1
    assert len(model.anchors.anchors("user")) == 2
    assert len(model.anchors.anchors("agent:a")) == 2


async def test_shift_reuses_an_agents_output_and_traces_a_kv_reuse_span(
    base: TransformersModel, tmp_path: Path
) -> None:
    with SQLiteTracer(tmp_path / "traces.db") as tracer:
        model = KVReuseModel(
            base, "shift", config=KVReuseConfig(fidelity_every=1, fidelity_tokens=4)
        )
        limits = Limits(max_tokens=10)
        model.share("user:q", QUESTION)
        writer = Agent("writer", SYSTEM, model=model, mode="sync", limits=limits, tracer=tracer)
        first = await writer.run(QUESTION)
        # the question is new: computed in place (exact), the template after it reused
        assert first.text and model.calls[-1].contents[0].source == "computed"
        assert model.calls[-1].mode == "reuse"
        rendered = model.render([Message(role="user", content=f"{QUESTION}\n\n{first.text}")])
        keys = [s.key for s in rendered.segments if s.kind == "content"]
        assert keys[0] == "user:q" and keys[1] is not None and keys[1].startswith("out:")
        checker = Agent(
            "checker", "Check the answer.", model=model, mode="sync", limits=limits, tracer=tracer
        )
        second = await checker.run(f"{QUESTION}\n\nAnswer to check: {first.text}")
        tracer.flush()
        stats = model.calls[-1]
        assert stats.mode == "reuse" and stats.reused
        assert [c.source for c in stats.contents] == ["prefilled", "generated"]
        assert stats.reused_tokens == stats.prompt_tokens - 1
        assert stats.fidelity is not None and stats.fidelity.tokens == min(
            4, stats.generated_tokens
        )
        (span,) = query.spans_of(tracer.store, second.run_id, kind=SpanKind.KV_REUSE)
        attrs = span.attributes
        assert attrs["counterpoint.kv.policy"] == "shift"
        assert attrs["counterpoint.kv.mode"] == "reuse"
        assert attrs["counterpoint.kv.tokens_reused"] == stats.reused_tokens
        assert attrs["counterpoint.kv.ttft_s"] == pytest.approx(stats.ttft_s)
        assert attrs["counterpoint.kv.fidelity"]["tokens"] == stats.fidelity.tokens
        assert span.start_s >= 0 and span.end_s is not None and span.end_s > span.start_s
        assert model.summary()["fidelity_measured"] == 2


async def test_teacher_forcing_returns_the_logits_of_every_forced_token(
    base: TransformersModel,
) -> None:
    model = KVReuseModel(base, "dense")
    prompt = prompt_for(model, SYSTEM, Content("user:q", QUESTION)).render(model)
    decoder = await model.start(prompt, SamplingParams(max_tokens=8))
    forced = [base.encode(" Mars")[0], base.encode(" is")[0], base.encode(" red")[0]]
    logits = await decoder.force(forced, keep_logits=3)
    assert logits is not None and logits.shape == (3, base.hf_model.config.vocab_size)
    assert decoder.generated_tokens == 3 and decoder.inner.generated_ids == tuple(forced)
    assert decoder.last_logits is not None and torch.equal(decoder.last_logits, logits[-1])
    ids = [*decoder.plan.ids, *forced]
    reference = await base.run_in_worker(lambda: forward_logits(base.hf_model, ids, 3))
    assert torch.allclose(logits.float(), reference, atol=1e-3)
    await decoder.close()
    assert decoder.published is not None and decoder.published.ids == tuple(forced)


def test_bad_settings_are_config_errors(base: TransformersModel) -> None:
    with pytest.raises(ConfigError, match="policy"):
        KVReuseModel(base, "magic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="top_p"):
        KVReuseConfig(top_p=0)
    with pytest.raises(ConfigError):
        KVReuseModel(base).share("", "x")
