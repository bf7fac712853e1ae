"""The OpenAI-compatible HTTP backend against a real llama.cpp server on loopback.

Measures, on the embedded SmolLM2-135M GGUF served by ``llama-cpp-python[server]``:

- ``server_tokens_per_s``: streamed decode rate through OpenAIModel (first token to last);
- ``server_ttft_ms``: time to first token of a fresh request (no shared prefix with the last one);
- ``restart_vs_fresh_ttft_ratio``: TTFT of an async restart (``extend`` on the raw-completions
  decoder: the same context plus an interrupt, served from the server's prefix cache) over the TTFT
  of a fresh request on a context of the same length;
- ``embedded_tokens_per_s``: the in-process TransformersModel's decode rate on the same model.

Each figure is the median of a few runs. Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from counterpoint.protocol.cml import format_interrupt
from counterpoint.runtime.backends.base import Decoder, Message, SamplingParams
from counterpoint.runtime.backends.openai import OpenAIModel
from tests.runtime.backends._llama_server import LlamaServer

SYSTEM = (
    "You are a helpful assistant with tools. Call a tool by writing "
    "[CALL] id [HEAD] name(arg=value) [END]; results arrive as [INTR] id [HEAD] value [END]. "
    "Tools: get_weather(city: str) returns the weather; get_time(tz: str) returns the time; "
    "search(query: str) searches the web; calculator(expression: str) evaluates arithmetic. "
)


def messages(nonce: str, question: str) -> list[Message]:
    """A realistic agent prompt; the nonce at the very start defeats the server's prefix cache."""
    return [
        Message(role="system", content=f"[session {nonce}] {SYSTEM * 3}"),
        Message(role="user", content=question),
    ]


async def decode_rate(decoder: Decoder, tokens: int) -> float:
    """Tokens per second from the first token to the last (prefill excluded)."""
    first: float | None = None
    count = 0
    for _ in range(tokens):
        token = await decoder.step()
        if token is None:
            break
        count += 1
        if first is None:
            first = time.perf_counter()
    elapsed = time.perf_counter() - (first or time.perf_counter())
    await decoder.close()
    return (count - 1) / elapsed if count > 1 and elapsed > 0 else 0.0


async def server_figures(server: LlamaServer, runs: int, tokens: int) -> dict[str, float]:
    rates: list[float] = []
    fresh: list[float] = []
    restarts: list[float] = []
    greedy_decode = SamplingParams(max_tokens=tokens, stop=())
    async with OpenAIModel(server.model, base_url=server.base_url) as model:
        warm = await model.start_completion("Hello", SamplingParams(max_tokens=4))
        await decode_rate(warm, 4)
        for run in range(runs):
            prompt = model.render(messages(uuid.uuid4().hex, "Write a short story about a robot."))
            decoder = await model.start_completion(prompt, greedy_decode)
            rates.append(await decode_rate(decoder, tokens))

            # Async restart: generate a little, inject an interrupt, time the first token after it.
            prompt = model.render(messages(uuid.uuid4().hex, "What is the weather in Paris?"))
            decoder = await model.start_completion(prompt, SamplingParams(max_tokens=64, stop=()))
            for _ in range(16):
                await decoder.step()
            interrupt = format_interrupt(f"c{run}", '{"city": "Paris", "temp_c": 17}')
            await decoder.extend(interrupt)
            await decoder.step()
            restarts.append(decoder.restarts[0])
            context = decoder.context
            await decoder.close()

            # A fresh request on a context of the same length (different first token: no cache).
            other = await model.start_completion(
                "#" + context[1:], SamplingParams(max_tokens=2, stop=())
            )
            await other.step()
            fresh.append(other.ttfts[0])
            await other.close()
    return {
        "server_tokens_per_s": statistics.median(rates),
        "server_ttft_ms": statistics.median(fresh) * 1000,
        "restart_ttft_ms": statistics.median(restarts) * 1000,
        "restart_vs_fresh_ttft_ratio": statistics.median(restarts) / statistics.median(fresh),
    }


async def embedded_figures(runs: int, tokens: int) -> dict[str, float]:
    from counterpoint.runtime.backends.transformers import TransformersModel

    model = await TransformersModel.aload()
    try:
        rates = []
        for _ in range(runs):
            prompt = model.render(messages("x", "Write a short story about a robot."))
            decoder = await model.start(prompt, SamplingParams(max_tokens=tokens, stop=()))
            rates.append(await decode_rate(decoder, tokens))
        return {"embedded_tokens_per_s": statistics.median(rates)}
    finally:
        model.close()


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    args = parser.parse_args(argv)

    with LlamaServer.start(threads=args.threads) as server:
        figures = await server_figures(server, args.runs, args.tokens)
    figures.update(await embedded_figures(args.runs, args.tokens))
    for key, value in figures.items():
        print(f"{key:>30}: {value:8.2f}")
    speedup = figures["server_tokens_per_s"] / max(figures["embedded_tokens_per_s"], 1e-9)
    print(f"{'server_vs_embedded_decode':>30}: {speedup:8.2f}x")
    print("RESULT " + json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
