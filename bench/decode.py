"""Decode and prefill speed of the embedded model: raw transformers loop vs ``Decoder.step()``.

For fp32 and bf16 this measures
- greedy decode tokens/s of (a) a raw transformers forward loop on a ``DynamicCache`` and (b)
  ``TransformersDecoder.step()`` (worker thread, incremental detokenization, sampling code). The
  two run side by side on the same prompt and are interleaved token by token (alternating which
  goes first), so the noise of a shared machine hits both alike; per-token medians are compared;
- prefill seconds for 128 / 512 / 1024-token prompts (``Decoder`` start, ``logits_to_keep=1``);
- how many greedy tokens bf16 and fp32 agree on (is bf16 still sane?);
- for the default dtype, raw decode tokens/s and 512-token prefill at 1 and at 2 torch threads.

Everything else runs at the thread count ``TransformersModel.load`` configures. Medians over a few
repetitions; about two to three minutes on 2 shared cores: ``.venv/bin/python bench/decode.py``.
The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import torch
from transformers import DynamicCache

from counterpoint.runtime.backends._loading import resolve_dtype
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel, cache_argument

REPS = 3
DECODE_TOKENS = 24
THREAD_TOKENS = 8
PREFILL_LENGTHS = (128, 512, 1024)
DTYPES = ("float32", "bfloat16")
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
FILLER = (
    "The committee met on a grey morning to review the harbour accounts, the state of the "
    "breakwater, the new timetable for the ferries and the complaints of the fishermen about "
    "the price of ice. Each item was read aloud, discussed at length and put to a vote. "
)


class RawLoop:
    """A bare greedy decode loop: one forward pass per token on a DynamicCache."""

    def __init__(self, model: TransformersModel, ids: list[int]) -> None:
        self.hf = model.hf_model
        self.cache = DynamicCache(config=self.hf.config)
        self.arg = cache_argument(self.hf)
        with torch.inference_mode():
            out = self.hf(
                input_ids=torch.tensor([ids]),
                use_cache=True,
                logits_to_keep=1,
                **{self.arg: self.cache},
            )
        self.ids = [int(out.logits[0, -1].argmax())]

    def step(self) -> int:
        with torch.inference_mode():
            out = self.hf(
                input_ids=torch.tensor([[self.ids[-1]]]),
                use_cache=True,
                logits_to_keep=1,
                **{self.arg: self.cache},
            )
        self.ids.append(int(out.logits[0, -1].argmax()))
        return self.ids[-1]


async def paired_decode(
    model: TransformersModel, ids: list[int], count: int
) -> tuple[list[float], list[float], bool, list[int]]:
    """Decode ``count`` tokens with both loops, token by token; return their per-token seconds."""
    raw = RawLoop(model, ids)
    decoder = await model.start_tokens(ids, SamplingParams(max_tokens=count + 1))
    first = await decoder.step()  # sampled from the prefill logits, like raw.ids[0]
    dec_ids = [first.id] if first is not None else []
    raw_s: list[float] = []
    dec_s: list[float] = []
    for i in range(count):
        for which in ("raw", "dec") if i % 2 == 0 else ("dec", "raw"):
            began = time.perf_counter()
            if which == "raw":
                raw.step()
                raw_s.append(time.perf_counter() - began)
            else:
                token = await decoder.step()
                dec_s.append(time.perf_counter() - began)
                if token is not None:
                    dec_ids.append(token.id)
    await decoder.close()
    return raw_s, dec_s, raw.ids == dec_ids, dec_ids


async def prefill_seconds(model: TransformersModel, ids: list[int]) -> float:
    decoder = await model.start_tokens(ids, SamplingParams(max_tokens=1))
    seconds = decoder.last_prefill_s
    await decoder.close()
    assert seconds is not None
    return seconds


def prompt_ids(model: TransformersModel, text: str) -> list[int]:
    prompt = model.render([Message(role="user", content=text)])
    return model.encode(prompt.text, special_tokens=True)


def filler_ids(model: TransformersModel, length: int) -> list[int]:
    return prompt_ids(model, FILLER * (1 + length // 40))[:length]


async def measure(dtype: str) -> dict[str, Any]:
    model = TransformersModel.load(dtype=dtype)
    prompt = prompt_ids(model, PROMPT)
    await paired_decode(model, prompt, 2)  # warm-up
    raw_s: list[float] = []
    dec_s: list[float] = []
    same = True
    dec_ids: list[int] = []
    for _ in range(REPS):
        raw, dec, agree, dec_ids = await paired_decode(model, prompt, DECODE_TOKENS)
        raw_s += raw
        dec_s += dec
        same = same and agree
    prefill: dict[str, float] = {}
    for length in PREFILL_LENGTHS:
        ids = filler_ids(model, length)
        times = [await prefill_seconds(model, ids) for _ in range(REPS)]
        prefill[str(length)] = round(statistics.median(times), 3)
    text = model.tokenizer.decode(dec_ids)
    model.close()
    raw_tps = 1.0 / statistics.median(raw_s)
    dec_tps = 1.0 / statistics.median(dec_s)
    return {
        "raw_tokens_per_s": round(raw_tps, 2),
        "decoder_tokens_per_s": round(dec_tps, 2),
        "decoder_vs_raw": round(dec_tps / raw_tps, 3),
        "prefill_s": prefill,
        "same_tokens": same,
        "greedy_ids": dec_ids,
        "text": text,
    }


async def thread_scaling(dtype: str) -> dict[str, dict[str, float]]:
    """Raw decode tokens/s and 512-token prefill seconds at 1 and at 2 torch threads."""
    configured = torch.get_num_threads()
    model = TransformersModel.load(dtype=dtype)
    prompt = prompt_ids(model, PROMPT)
    long_prompt = filler_ids(model, 512)
    per_token: dict[int, list[float]] = {1: [], 2: []}
    prefill: dict[int, list[float]] = {1: [], 2: []}
    try:
        for rep in range(REPS):
            for threads in (1, 2) if rep % 2 == 0 else (2, 1):
                torch.set_num_threads(threads)
                raw = RawLoop(model, prompt)
                for _ in range(THREAD_TOKENS):
                    began = time.perf_counter()
                    raw.step()
                    per_token[threads].append(time.perf_counter() - began)
                prefill[threads].append(await prefill_seconds(model, long_prompt))
    finally:
        torch.set_num_threads(configured)
        model.close()
    return {
        str(n): {
            "raw_tokens_per_s": round(1.0 / statistics.median(per_token[n]), 2),
            "prefill_512_s": round(statistics.median(prefill[n]), 3),
        }
        for n in (1, 2)
    }


async def main() -> None:
    results = {dtype: await measure(dtype) for dtype in DTYPES}
    default = str(resolve_dtype("auto")).removeprefix("torch.")
    by_threads: dict[str, Any] = await thread_scaling(default)
    faster = max(DTYPES, key=lambda d: results[d]["decoder_tokens_per_s"])
    fp32_ids, bf16_ids = (results[d]["greedy_ids"] for d in DTYPES)
    agree = next(
        (i for i, (a, b) in enumerate(zip(fp32_ids, bf16_ids, strict=False)) if a != b),
        min(len(fp32_ids), len(bf16_ids)),
    )

    print(f"threads={torch.get_num_threads()} decode={DECODE_TOKENS} tokens x {REPS} reps")
    head = f"{'dtype':<10}{'raw tok/s':>11}{'step tok/s':>12}{'ratio':>8}"
    head += "".join(f"{'prefill ' + str(n):>15}" for n in PREFILL_LENGTHS)
    print(head)
    for dtype in DTYPES:
        r = results[dtype]
        row = f"{dtype:<10}{r['raw_tokens_per_s']:>11}{r['decoder_tokens_per_s']:>12}"
        row += f"{r['decoder_vs_raw']:>8}"
        row += "".join(f"{r['prefill_s'][str(n)]:>14}s" for n in PREFILL_LENGTHS)
        print(row)
    for dtype in DTYPES:
        print(f"{dtype} greedy: {results[dtype]['text']!r}")
    print(f"bf16 and fp32 greedy agree on the first {agree} of {len(fp32_ids)} tokens")
    print(f"faster measured: {faster}; default ('auto'): {default}")
    for n, row in by_threads.items():
        print(
            f"{default} at {n} thread(s): raw {row['raw_tokens_per_s']} tok/s, "
            f"prefill 512 {row['prefill_512_s']}s"
        )

    summary = {
        "decoder_vs_raw_tokens_per_s_ratio": results[default]["decoder_vs_raw"],
        "decoder_vs_raw_by_dtype": {d: results[d]["decoder_vs_raw"] for d in DTYPES},
        "tokens_per_s": {
            d: {
                "raw": results[d]["raw_tokens_per_s"],
                "decoder": results[d]["decoder_tokens_per_s"],
            }
            for d in DTYPES
        },
        "prefill_s": {d: results[d]["prefill_s"] for d in DTYPES},
        "decoder_matches_raw_greedy": all(results[d]["same_tokens"] for d in DTYPES),
        "bf16_fp32_greedy_agreement_tokens": agree,
        "faster_dtype": faster,
        "default_dtype": default,
        "threads": torch.get_num_threads(),
        "by_threads": by_threads,
    }
    sys.stdout.flush()
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
