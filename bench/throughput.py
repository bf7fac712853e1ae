"""Throughput of the local backend, every figure measured side by side in one run.

On the embedded SmolLM2-135M-Instruct (the default dtype, the thread count
``TransformersModel.load`` configures):

- single-stream greedy decode tokens/s of (a) a raw transformers forward loop on a
  ``DynamicCache``, (b) ``Decoder.step()`` as it is now (the lean one-token step), (c)
  ``Decoder.step()`` as it was before (``model.lean_decode = False``: every pass through
  ``model.forward``, the pre-change stepping loop kept as a baseline) and (d) llama.cpp's server
  on the same GGUF (``llama-cpp-python[server]``, loopback, as many threads as torch uses),
  interleaved round by round with the order rotating, so a shared machine's noise hits all alike.
  Each rate counts from the first token to the last (prefill excluded). (a) and (c) run on
  transformers' ``sdpa`` attention, as before the packed one-token attention of
  ``counterpoint.runtime.backends._attention``; (b) on the model as loaded. The same four again
  after about 1,000 tokens of context (``long_context_*``), where attention weighs most;
- aggregate tokens/s of 1, 2, 4 and 8 concurrent sessions on one ``TransformersModel`` (all
  prefilled first, then stepped together with ``asyncio.gather``; the session counts interleaved
  rep by rep), and whether every session's greedy tokens equal that prompt's tokens decoded alone
  (what batched decoding must keep);
- time to first token of a second run of the same agent, prefix cache on against off
  (``bench/prefix_cache.py``'s workload, on and off alternating);
- the prefill of the ~1,000-token prompt on one thread against ``prefill_threads`` (every
  core; decode steps keep one free), alternating, and whether the greedy tokens after it agree;
- passes of several tokens through the lean feed (``LeanDecode.feed``) against
  ``model.forward`` (``model.lean_feed``), alternating: the ~1,000-token prefill and a ~40-token
  extension (an injected result), and whether the greedy tokens after them agree;
- the async speedup on the real model with this decoder: teacher-forced replay of the parallel
  set (``bench/_replay.py``), sync against async;
- eval throughput: cases per minute of ``run_bfcl`` on the same BFCL ``simple_python`` cases in
  ``sync`` mode at concurrency 4 against 1 (one loaded model for both), at 4 with prefill on
  one thread against every core, and whether every verdict is the same.

Batched decoding is what makes the aggregate and eval figures grow: the decoders that want a
token in the same tick share one forward pass (``TransformersModel.batch_decode``); its number of
ticks and steps is reported as the mean batch size.

``--quick`` halves the repetitions and tokens. If llama.cpp's server cannot start, its figures are
``null`` with the reason in ``llamacpp_error``. Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.decode import RawLoop
from bench.prefix_cache import QUESTIONS
from bench.prefix_cache import _run as agent_run
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel

STORY = "Write a long story about a lighthouse keeper who finds a message in a bottle."
SESSION_PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle works, part by part.",
    "Describe a busy market in a small town on a Saturday morning.",
    "Write a letter to a friend about your holiday in the mountains.",
    "List ten things to pack for a camping trip and say why each matters.",
    "Tell the history of the printing press in a few paragraphs.",
    "Write a recipe for a vegetable soup, step by step.",
    "Describe the life cycle of a butterfly.",
]
# About 1,000 tokens of context, as a BFCL case with its tools or an agent's history has.
NOTES = " ".join(
    f"Note {i}: the {c} crate in aisle {i % 7} holds {i * 3} jars of {c} jam."
    for i, c in enumerate(["plum", "fig", "pear", "quince", "cherry", "apricot"] * 7)
)
LONG_QUESTION = f"{NOTES}\nWrite a long story about the keeper of this storeroom."
CONCURRENCY = (1, 2, 4, 8)
RESULT_TEXT = (
    '\n[INTR] c1 [HEAD] {"function": "get_weather", "status": "ok", "result": '
    '{"city": "Paris", "temp_c": 17, "sky": "clear"}} [END]\n'
)
"""An injected result, as the session formats one (about 40 tokens)."""


def prompt_ids(model: TransformersModel, text: str) -> list[int]:
    return model.encode(
        model.render([Message(role="user", content=text)]).text, special_tokens=True
    )


def _rate(count: int, first: float | None, last: float) -> float:
    """Tokens per second from the first token to the last."""
    return (count - 1) / (last - first) if first is not None and count > 1 and last > first else 0.0


@contextlib.contextmanager
def plain_sdpa(model: TransformersModel) -> Iterator[None]:
    """Run the model on transformers' own ``sdpa`` attention, as it ran before the packed
    one-token attention (``counterpoint.runtime.backends._attention``)."""
    hf = model.hf_model
    previous = hf.config._attn_implementation
    hf.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        hf.set_attn_implementation(previous)


async def raw_rate(
    model: TransformersModel, ids: list[int], tokens: int
) -> tuple[float, list[int]]:
    # The raw loop runs in the model's worker thread too, as the decoder's passes do.
    def run() -> tuple[float, list[int]]:
        with plain_sdpa(model):
            loop = RawLoop(model, ids)
            first = time.perf_counter()
            for _ in range(tokens - 1):
                loop.step()
            return _rate(tokens, first, time.perf_counter()), loop.ids

    return await model.run_in_worker(run)


async def decoder_rate(
    model: TransformersModel, ids: list[int], tokens: int, *, lean: bool
) -> tuple[float, list[int]]:
    """The decoder now (``lean``), or as it was before: every pass through ``model.forward``
    on transformers' ``sdpa``."""
    model.lean_decode = lean
    before = contextlib.nullcontext() if lean else plain_sdpa(model)
    try:
        before.__enter__()
        decoder = await model.start_tokens(ids, SamplingParams(max_tokens=tokens))
        out: list[int] = []
        first: float | None = None
        while (token := await decoder.step()) is not None:
            out.append(token.id)
            if first is None:
                first = time.perf_counter()
        last = time.perf_counter()
        await decoder.close()
    finally:
        model.lean_decode = True
        before.__exit__(None, None, None)
    return _rate(len(out), first, last), out


async def llamacpp_rate(server: Any, text: str, tokens: int) -> float:
    from counterpoint.runtime.backends.openai import OpenAIModel

    async with OpenAIModel(server.model, base_url=server.base_url) as remote:
        decoder = await remote.start_completion(text, SamplingParams(max_tokens=tokens))
        count = 0
        first: float | None = None
        while await decoder.step() is not None:
            count += 1
            if first is None:
                first = time.perf_counter()
        last = time.perf_counter()
        await decoder.close()
    return _rate(count, first, last)


def start_llamacpp(threads: int) -> tuple[Any, str | None]:
    """llama.cpp's server on the embedded GGUF, or ``(None, reason)``."""
    try:
        from tests.runtime.backends._llama_server import LlamaServer, llama_cpp_available

        if not llama_cpp_available():
            return None, "llama_cpp is not importable (pip install 'llama-cpp-python[server]')"
        return LlamaServer.start(threads=threads), None
    except Exception as exc:  # any failure to start is reported, not raised
        return None, f"{type(exc).__name__}: {exc}"[:300]


async def single_stream(
    model: TransformersModel, server: Any, reps: int, tokens: int, question: str = STORY
) -> dict[str, Any]:
    ids = prompt_ids(model, question)
    text = model.render([Message(role="user", content=question)]).text
    variants = ["raw", "after", "before"] + (["llamacpp"] if server is not None else [])
    rates: dict[str, list[float]] = {v: [] for v in variants}
    greedy: dict[str, list[int]] = {}
    await decoder_rate(model, ids, 4, lean=True)  # warm-up
    await decoder_rate(model, ids, 4, lean=False)
    if server is not None:
        await llamacpp_rate(server, text, 4)
    for rep in range(reps):
        shift = rep % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            if variant == "raw":
                rate, out = await raw_rate(model, ids, tokens)
            elif variant == "llamacpp":
                rate, out = await llamacpp_rate(server, text, tokens), []
            else:
                rate, out = await decoder_rate(model, ids, tokens, lean=variant == "after")
            rates[variant].append(rate)
            if out:
                greedy.setdefault(variant, out)
    median = {v: statistics.median(r) for v, r in rates.items()}
    n = min(len(greedy[v]) for v in ("raw", "after", "before"))
    return {
        "tokens_per_s": median,
        "rates": rates,
        # raw and before run the same kernels; after may round apart in rare low bits (packed
        # one-token attention, padded one-row projections), so its tokens may part later on
        "same_greedy_tokens": greedy["raw"][:n] == greedy["before"][:n],
        "after_same_greedy_tokens": greedy["after"][:n] == greedy["before"][:n],
    }


async def concurrent_sessions(
    model: TransformersModel, count: int, prompts: list[list[int]], tokens: int
) -> tuple[float, list[list[int]]]:
    """Aggregate tokens/s of ``count`` sessions stepping together on one model."""
    decoders = [
        await model.start_tokens(prompts[i], SamplingParams(max_tokens=tokens))
        for i in range(count)
    ]

    async def drain(decoder: Any) -> list[int]:
        out = []
        while (token := await decoder.step()) is not None:
            out.append(token.id)
        return out

    began = time.perf_counter()
    outs = await asyncio.gather(*(drain(d) for d in decoders))
    elapsed = time.perf_counter() - began
    for decoder in decoders:
        await decoder.close()
    return sum(len(o) for o in outs) / elapsed, list(outs)


async def aggregate(model: TransformersModel, reps: int, tokens: int) -> dict[str, Any]:
    prompts = [prompt_ids(model, p) for p in SESSION_PROMPTS]
    alone = [(await decoder_rate(model, ids, tokens, lean=True))[1] for ids in prompts]
    rates: dict[int, list[float]] = {n: [] for n in CONCURRENCY}
    match = True
    for rep in range(reps):
        order = CONCURRENCY if rep % 2 == 0 else tuple(reversed(CONCURRENCY))
        for n in order:
            rate, outs = await concurrent_sessions(model, n, prompts, tokens)
            rates[n].append(rate)
            match = match and all(outs[i] == alone[i] for i in range(n))
    median = {n: statistics.median(r) for n, r in rates.items()}
    return {"tokens_per_s": median, "sessions_match_alone": match}


async def ttft(model: TransformersModel, reps: int) -> dict[str, Any]:
    off = TransformersModel(model.hf_model, model.tokenizer, prefix_cache=False)
    await agent_run(model, "Warm up: weather in Berlin?")  # fills the cache with the prefix
    ratios: list[float] = []
    on_s: list[float] = []
    off_s: list[float] = []
    for rep in range(reps):
        question = QUESTIONS[rep % len(QUESTIONS)]
        pair = (model, off) if rep % 2 == 0 else (off, model)
        got = {id(m): await agent_run(m, question) for m in pair}
        t_on, t_off = got[id(model)][0], got[id(off)][0]
        ratios.append(t_off / t_on)
        on_s.append(t_on)
        off_s.append(t_off)
    off.close()
    return {
        "speedup": statistics.median(ratios),
        "on_s": statistics.median(on_s),
        "off_s": statistics.median(off_s),
    }


async def replay(tasks: int) -> dict[str, Any]:
    """Teacher-forced replay of the parallel set, sync against async (the real decoder)."""
    from bench._replay import _run as replay_run
    from counterpoint.testing.workloads import parallel_set

    model = TransformersModel.load()
    chosen = parallel_set(tasks)
    await replay_run(model, chosen[0], "async", False)  # warm-up
    totals = {"sync": 0.0, "async": 0.0}
    for task in chosen:
        for mode in ("sync", "async"):
            totals[mode] += await replay_run(model, task, mode, False)  # type: ignore[arg-type]
    model.close()
    return {"speedup": totals["sync"] / totals["async"], **totals}


async def prefill_rate(model: TransformersModel, reps: int) -> dict[str, Any]:
    """Prefill of the ~1,000-token prompt on one thread against ``model.prefill_threads``
    (alternating), and whether the greedy tokens after it agree."""
    ids = prompt_ids(model, LONG_QUESTION)
    threads = model.prefill_threads
    seconds: dict[int, list[float]] = {1: [], threads: []}
    tokens: dict[int, list[int]] = {}
    try:
        for _ in range(reps):
            for count in seconds:
                model.prefill_threads = count
                decoder = await model.start_tokens(ids, SamplingParams(max_tokens=16))
                seconds[count].append(decoder.last_prefill_s or 0.0)
                out = []
                while (token := await decoder.step()) is not None:
                    out.append(token.id)
                tokens.setdefault(count, out)
                await decoder.close()
    finally:
        model.prefill_threads = threads
    one, many = statistics.median(seconds[1]), statistics.median(seconds[threads])
    return {
        "threads": threads,
        "one_s": one,
        "many_s": many,
        "speedup": one / many if many else 0.0,
        "same_greedy_tokens": tokens[1] == tokens[threads],
    }


async def feed_rate(model: TransformersModel, reps: int) -> dict[str, Any]:
    """Passes of several tokens through the lean feed against ``model.forward``
    (``model.lean_feed``), alternating: the prefill of the ~1,000-token prompt and an extension of
    an injected result after a few tokens; and whether the greedy tokens after both agree."""
    ids = prompt_ids(model, LONG_QUESTION)
    seconds: dict[bool, dict[str, list[float]]] = {
        on: {"prefill": [], "extend": []} for on in (True, False)
    }
    tokens: dict[bool, list[int]] = {}
    try:
        for _ in range(reps):
            for on in (True, False):
                model.lean_feed = on
                decoder = await model.start_tokens(ids, SamplingParams(max_tokens=16))
                seconds[on]["prefill"].append(decoder.last_prefill_s or 0.0)
                out = [t.id for _ in range(4) if (t := await decoder.step()) is not None]
                await decoder.extend(RESULT_TEXT)
                seconds[on]["extend"].append(decoder.last_prefill_s or 0.0)
                while (token := await decoder.step()) is not None:
                    out.append(token.id)
                tokens.setdefault(on, out)
                await decoder.close()
    finally:
        model.lean_feed = True
    median = {on: {k: statistics.median(v) for k, v in d.items()} for on, d in seconds.items()}
    return {
        "extension_tokens": len(model.encode(RESULT_TEXT)) + 1,  # and the pending token
        "seconds": median,
        "prefill_speedup": median[False]["prefill"] / median[True]["prefill"],
        "extend_speedup": median[False]["extend"] / median[True]["extend"],
        "same_greedy_tokens": tokens[True] == tokens[False],
    }


async def eval_rate(cases: int) -> dict[str, Any]:
    """Cases per minute of run_bfcl at concurrency 4 against 1, on one loaded model; and at 4
    with prefill on one thread (``prefill_threads=1``) against its default."""
    import tempfile

    from counterpoint.evals._models import case_models
    from counterpoint.evals.runner import EvalConfig, run_bfcl
    from counterpoint.runtime.tracing import SQLiteTracer

    config = EvalConfig(categories=("simple_python",), modes=("sync",), limit=cases, max_tokens=96)
    source = case_models("embedded")
    model = getattr(source, "model", None)
    threads = getattr(model, "prefill_threads", 1)
    per_min: dict[str, float] = {}
    verdicts: dict[str, list[tuple[str, bool, str | None]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, concurrency, prefill in (("1", 1, threads), ("4", 4, threads), ("4_one", 4, 1)):
            if model is not None:
                model.prefill_threads = prefill
            tracer = SQLiteTracer(Path(folder) / f"{label}.db")
            began = time.perf_counter()
            outcome = await run_bfcl(config, tracer, concurrency=concurrency, models=source)
            elapsed = time.perf_counter() - began
            tracer.close()
            per_min[label] = len(outcome.results) / elapsed * 60
            verdicts[label] = sorted(
                (r.case_id, r.correct, r.failure_reason) for r in outcome.results
            )
    if model is not None:
        model.prefill_threads = threads
    return {
        "cases_per_min": per_min,
        "same_verdicts": verdicts["1"] == verdicts["4"] == verdicts["4_one"],
        "correct": sum(v[1] for v in verdicts["1"]),
        "cases": len(verdicts["1"]),
    }


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half the repetitions and tokens")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--llama-threads", type=int, default=0, help="default: torch's threads")
    args = parser.parse_args(argv)
    reps, tokens, agg_tokens, ttft_reps = (2, 24, 8, 2) if args.quick else (4, 48, 16, 4)

    began = time.perf_counter()
    model = TransformersModel.load(dtype=args.dtype)
    threads = torch.get_num_threads()
    server, llama_error = start_llamacpp(args.llama_threads or threads)
    try:
        single = await single_stream(model, server, reps, tokens)
        long = await single_stream(model, server, reps, tokens, LONG_QUESTION)
    finally:
        if server is not None:
            server.stop()
    long_tokens = len(prompt_ids(model, LONG_QUESTION))
    ticks0, steps0 = model.batch_stats
    rows0 = model.batched_rows
    agg = await aggregate(model, reps, agg_tokens)
    ticks, steps = (b - a for a, b in zip((ticks0, steps0), model.batch_stats, strict=True))
    batched = model.batched_rows - rows0
    first = await ttft(model, ttft_reps)
    prefill = await prefill_rate(model, reps + 1)
    fed = await feed_rate(model, reps + 1)
    model.close()
    replayed = await replay(3 if args.quick else 6)
    evals = await eval_rate(12 if args.quick else 20)

    tps = single["tokens_per_s"]
    llama = tps.get("llamacpp")
    agg_tps = agg["tokens_per_s"]
    long_tps = long["tokens_per_s"]
    long_llama = long_tps.get("llamacpp")
    for name, rate in tps.items():
        print(f"single stream {name:>9}: {rate:7.2f} tok/s  (reps {single['rates'][name]})")
    for name, rate in long_tps.items():
        print(f"at {long_tokens} tokens {name:>9}: {rate:7.2f} tok/s  (reps {long['rates'][name]})")
    for n, rate in agg_tps.items():
        print(f"{n} concurrent sessions: {rate:7.2f} tok/s in total")
    print(f"mean batch size in the aggregate runs: {steps / max(1, ticks):.2f}")
    print(f"TTFT prefix cache off {first['off_s']:.3f}s, on {first['on_s']:.3f}s")
    print(
        f"prefill of {long_tokens} tokens: 1 thread {prefill['one_s']:.3f}s, "
        f"{prefill['threads']} threads {prefill['many_s']:.3f}s"
    )
    feed_s = fed["seconds"]
    print(
        f"lean feed against model.forward: prefill {feed_s[True]['prefill']:.3f}s vs "
        f"{feed_s[False]['prefill']:.3f}s, extension of {fed['extension_tokens']} tokens "
        f"{feed_s[True]['extend']:.3f}s vs {feed_s[False]['extend']:.3f}s"
    )
    print(f"replay, parallel set: sync {replayed['sync']:.2f}s, async {replayed['async']:.2f}s")
    print(f"eval cases/min: {evals['cases_per_min']}, same verdicts: {evals['same_verdicts']}")
    if llama_error:
        print(f"llama.cpp: {llama_error}")

    summary = {
        "dtype": str(model.dtype).removeprefix("torch."),
        "threads": threads,
        "raw_tokens_per_s": round(tps["raw"], 2),
        "decoder_tokens_per_s": round(tps["after"], 2),
        "decoder_before_tokens_per_s": round(tps["before"], 2),
        "llamacpp_tokens_per_s": round(llama, 2) if llama is not None else None,
        "llamacpp_error": llama_error,
        "decoder_vs_raw_tokens_per_s_ratio": round(tps["after"] / tps["raw"], 3),
        "decoder_vs_before_tokens_per_s_ratio": round(tps["after"] / tps["before"], 3),
        "decoder_vs_llamacpp_tokens_per_s_ratio": (
            round(tps["after"] / llama, 3) if llama else None
        ),
        "same_greedy_tokens_raw_before": single["same_greedy_tokens"],
        "same_greedy_tokens_after_before": single["after_same_greedy_tokens"],
        "long_context_tokens": long_tokens,
        "long_context_tokens_per_s": {k: round(v, 2) for k, v in long_tps.items()},
        "long_context_decoder_vs_before_ratio": round(long_tps["after"] / long_tps["before"], 3),
        "long_context_decoder_vs_llamacpp_ratio": (
            round(long_tps["after"] / long_llama, 3) if long_llama else None
        ),
        "long_context_same_greedy_tokens_raw_before": long["same_greedy_tokens"],
        "long_context_same_greedy_tokens_after_before": long["after_same_greedy_tokens"],
        "aggregate_tokens_per_s": {str(n): round(r, 2) for n, r in agg_tps.items()},
        "aggregate_2_vs_single_ratio": round(agg_tps[2] / agg_tps[1], 3),
        "aggregate_4_vs_single_ratio": round(agg_tps[4] / agg_tps[1], 3),
        "aggregate_8_vs_single_ratio": round(agg_tps[8] / agg_tps[1], 3),
        "aggregate_sessions_match_alone": agg["sessions_match_alone"],
        "aggregate_mean_batch_size": round(steps / max(1, ticks), 2),
        # steps that ran as rows of one batched pass (0 where this CPU's batches are not exact)
        "aggregate_batched_share": round(batched / max(1, steps), 3),
        "ttft_prefix_cache_speedup": round(first["speedup"], 2),
        "ttft_prefix_cache_on_s": round(first["on_s"], 4),
        "ttft_prefix_cache_off_s": round(first["off_s"], 4),
        "prefill_threads": prefill["threads"],
        "prefill_threads_speedup": round(prefill["speedup"], 3),
        "prefill_threads_same_greedy_tokens": prefill["same_greedy_tokens"],
        "lean_feed_prefill_speedup": round(fed["prefill_speedup"], 3),
        "lean_feed_extend_speedup": round(fed["extend_speedup"], 3),
        "lean_feed_extension_tokens": fed["extension_tokens"],
        "lean_feed_same_greedy_tokens": fed["same_greedy_tokens"],
        "replay_speedup_async_vs_sync_parallel_set": round(replayed["speedup"], 3),
        "eval_cases_per_min": {str(k): round(v, 2) for k, v in evals["cases_per_min"].items()},
        "eval_cases_per_min_ratio": round(
            evals["cases_per_min"]["4"] / evals["cases_per_min"]["1"], 3
        ),
        "eval_prefill_threads_ratio": round(
            evals["cases_per_min"]["4"] / evals["cases_per_min"]["4_one"], 3
        ),
        "eval_same_verdicts": evals["same_verdicts"],
        "eval_correct": f"{evals['correct']}/{evals['cases']}",
        "quick": args.quick,
        "wall_s": round(time.perf_counter() - began, 1),
    }
    sys.stdout.flush()
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
