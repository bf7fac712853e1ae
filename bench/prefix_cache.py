"""Time to first token of a repeated agent run, with the local backend's prefix cache on and off.

The workload is the demo's agent: its instructions, the CML protocol and two tools in the system
message, then a different question each run (what consecutive runs of one agent, or eval cases
sharing a system prompt, look like). Each repetition starts one run with the cache on (after a
warm-up run that fills it) and one with it off, alternating which goes first; the figure is the
median of the per-repetition ratios off/on. Both decode the same greedy tokens (checked).

Last line: ``RESULT {json}`` with ``ttft_prefix_cache_speedup`` (and the TTFTs, the tokens reused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from counterpoint._demo import INSTRUCTIONS, demo_tools
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel
from counterpoint.tools.toolset import Toolset

QUESTIONS = [
    "What is the weather in Paris?",
    "Is it raining in Rome right now?",
    "How warm is it in Tokyo?",
    "Should I take an umbrella in London today?",
    "What is the temperature in Oslo?",
    "Weather in Madrid and in Lisbon?",
]


async def _run(model: TransformersModel, question: str) -> tuple[float, list[int], int]:
    tools = Toolset(demo_tools()).specs()
    messages = [
        Message(role="system", content=INSTRUCTIONS),
        Message(role="user", content=question),
    ]
    decoder = await model.start(messages, SamplingParams(max_tokens=4), tools=tools)
    assert isinstance(decoder, TransformersDecoder)
    ids = []
    while (token := await decoder.step()) is not None:
        ids.append(token.id)
    ttft = decoder.ttft_s or 0.0
    reused = decoder.reused_tokens
    await decoder.close()
    return ttft, ids, reused


async def main_async(reps: int) -> dict[str, object]:
    base = TransformersModel.load()
    on = base
    off = TransformersModel(base.hf_model, base.tokenizer, prefix_cache=False)
    await _run(on, "Warm up: weather in Berlin?")  # fills the cache with the shared prefix
    ratios, ttft_on, ttft_off, reused = [], [], [], []
    for rep in range(reps):
        question = QUESTIONS[rep % len(QUESTIONS)]
        order = (on, off) if rep % 2 == 0 else (off, on)
        results = {}
        for model in order:
            results[id(model)] = await _run(model, question)
        t_on, ids_on, n_reused = results[id(on)]
        t_off, ids_off, _ = results[id(off)]
        if ids_on != ids_off:
            raise SystemExit(f"prefix cache changed the greedy tokens for {question!r}")
        ratios.append(t_off / t_on)
        ttft_on.append(t_on)
        ttft_off.append(t_off)
        reused.append(n_reused)
        print(
            f"{question!r}: off {t_off * 1000:.0f} ms, on {t_on * 1000:.0f} ms, {n_reused} reused"
        )
    off.close()
    on.close()
    return {
        "ttft_prefix_cache_speedup": round(statistics.median(ratios), 2),
        "ttft_on_s_median": round(statistics.median(ttft_on), 4),
        "ttft_off_s_median": round(statistics.median(ttft_off), 4),
        "tokens_reused_median": statistics.median(reused),
        "reps": reps,
        "identical_greedy_tokens": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="3 repetitions")
    args = parser.parse_args()
    result = asyncio.run(main_async(3 if args.quick else args.reps))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
