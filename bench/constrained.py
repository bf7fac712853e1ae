"""Grammar-constrained call blocks on the embedded model: what the constraint costs, what
jump-forward saves, and how long a grammar takes to compile.

- ``constrained_vs_free_tokens_per_s_ratio``: decode tokens/s of a constrained decoder against an
  unconstrained one on the same prompt, both with ``tool_choice="required"`` (so both write call
  blocks) and jump-forward off (every token is one forward pass; the constrained one also
  computes a grammar mask for each token it samples inside a block). The two are interleaved
  token by token, alternating which goes first, so a shared machine's noise hits both alike.
  Target >= 0.95. The same with jump-forward on is reported beside it.
- ``call_block_jump_forward_speedup``: the time to write the same first call block (greedy,
  ``tool_choice="required"``) token by token under the constraint, over the time with
  jump-forward (forced tokens appended in one prefill chunk); the median over prompts and
  repetitions, alternating the order. The two must write identical text (checked). Target >= 1.5.
- ``grammar_compile_ms_10_tools`` / ``_100_tools``: building the Lark grammar from synthetic JSON
  schemas (generated here, with strings, integers, numbers, booleans, enums, lists, nested
  objects and optional parameters), compiling it with llguidance, and the first mask.
- the grammar mask's time per token: over the constrained decodes, and walking a call through
  the 100-tool grammar.

About two minutes on 2 shared cores (``--quick``: well under one). Last line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from counterpoint.core.calls import ToolSpec
from counterpoint.runtime.backends._grammar import call_grammar
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel
from counterpoint.tools import Toolset, tool


@tool
def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
    """The current weather in a city."""
    return {"city": city, "temp_c": 17}


@tool
def convert_currency(amount: float, source: str, target: str) -> float:
    """Convert an amount of money from one currency to another."""
    return amount


@tool
def find_recipes(ingredients: list[str], max_minutes: int = 30, vegetarian: bool = False) -> str:
    """Recipes that use the given ingredients."""
    return ""


TOOLS = Toolset(get_weather, convert_currency, find_recipes)
SYSTEM = "You are a helpful assistant. Answer briefly."
QUESTIONS = [
    "What is the weather in Lisbon, and in Oslo?",
    "How much is 250 euros in Japanese yen?",
    "I have eggs, spinach and cheese. What can I cook in 20 minutes?",
]


def chat(question: str) -> list[Message]:
    return [Message(role="system", content=SYSTEM), Message(role="user", content=question)]


# ----------------------------------------------------------------------------- decode speed


async def start(
    model: TransformersModel, question: str, *, constrained: bool, jump: bool, tokens: int
) -> TransformersDecoder:
    model.constrained = constrained
    try:
        params = SamplingParams(max_tokens=tokens, tool_choice="required")
        decoder = await model.start(chat(question), params, tools=TOOLS.specs())
    finally:
        model.constrained = True
    decoder.jump_forward = jump
    return decoder


async def paired_speed(
    model: TransformersModel, question: str, tokens: int, jump: bool
) -> tuple[float, float, list[float]]:
    """Seconds for ``tokens`` tokens: (constrained, free), and the constrained decoder's masks."""
    on = await start(model, question, constrained=True, jump=jump, tokens=tokens)
    off = await start(model, question, constrained=False, jump=False, tokens=tokens)
    seconds = {"on": 0.0, "off": 0.0}
    counts = {"on": 0, "off": 0}
    for i in range(tokens):
        for which in ("on", "off") if i % 2 == 0 else ("off", "on"):
            decoder = on if which == "on" else off
            began = time.perf_counter()
            token = await decoder.step()
            seconds[which] += time.perf_counter() - began
            counts[which] += token is not None
    masks = list(on.constraint.mask_s) if on.constraint is not None else []
    await on.close()
    await off.close()
    return counts["on"] / seconds["on"], counts["off"] / seconds["off"], masks


# ----------------------------------------------------------------------------- jump-forward


async def first_block(
    model: TransformersModel, question: str, jump: bool
) -> tuple[str, float, int]:
    """Write the first call block; return its text, the seconds it took and the forward passes."""
    decoder = await start(model, question, constrained=True, jump=jump, tokens=64)
    passes = decoder.forward_passes
    text = ""
    began = time.perf_counter()
    while "[END]" not in text and (token := await decoder.step()) is not None:
        text += token.text
    seconds = time.perf_counter() - began
    passes = decoder.forward_passes - passes
    await decoder.close()
    return text, seconds, passes


# ----------------------------------------------------------------------------- compile time


def synthetic_tools(count: int, seed: int) -> list[ToolSpec]:
    """``count`` tools with varied, made-up schemas (no public benchmark's functions)."""
    rng = random.Random(seed)
    verbs = ["get", "list", "create", "update", "find", "send", "check", "plan", "book", "score"]
    nouns = ["order", "ticket", "invoice", "route", "sensor", "garden", "lesson", "shipment"]
    kinds: list[dict[str, Any]] = [
        {"type": "string"},
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
        {"enum": ["low", "medium", "high"]},
        {"type": "array", "items": {"type": "string"}},
        {"type": "array", "items": {"type": "integer"}},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
        },
        {"type": "object", "additionalProperties": {"type": "integer"}},
    ]
    tools = []
    for i in range(count):
        name = f"{rng.choice(verbs)}_{rng.choice(nouns)}_{i}"
        properties: dict[str, Any] = {}
        for j in range(rng.randint(1, 6)):
            properties[f"{rng.choice(nouns)}_{j}"] = rng.choice(kinds)
        required = [p for p in properties if rng.random() < 0.6]
        tools.append(
            ToolSpec(
                name=name,
                parameters={"type": "object", "properties": properties, "required": required},
            )
        )
    return tools


def compile_ms(model: TransformersModel, count: int, seed: int) -> float:
    """Milliseconds from JSON schemas to a compiled grammar's first mask."""
    specs = synthetic_tools(count, seed)
    began = time.perf_counter()
    grammar = call_grammar(specs)
    matcher = model.grammars.matcher(grammar)
    matcher.compute_bitmask()
    return (time.perf_counter() - began) * 1000


def mask_walk_us(model: TransformersModel, count: int) -> list[float]:
    """Mask seconds per token (µs) writing one call through a ``count``-tool grammar."""
    specs = synthetic_tools(count, seed=7)
    spec = specs[count // 2]
    properties = spec.parameters["properties"]
    examples = {
        "string": '"Lisbon harbour"',
        "integer": "42",
        "number": "-3.25",
        "boolean": "True",
    }
    parts = []
    for name in spec.parameters["required"]:
        schema = properties[name]
        if "enum" in schema:
            value = '"medium"'
        elif "anyOf" in schema:
            value = "None"
        elif schema.get("type") == "array":
            value = '["a", "b"]' if schema["items"]["type"] == "string" else "[1, 2]"
        elif schema.get("type") == "object":
            value = '{"lat": 1.5, "lon": 2.5}' if "properties" in schema else '{"a": 1}'
        else:
            value = examples[schema["type"]]
        parts.append(f"{name}={value}")
    body = f" {spec.name}({', '.join(parts)}) [END]"
    matcher = model.grammars.matcher(call_grammar(specs))
    import numpy as np

    out = []
    for token_id in model.encode(body):
        began = time.perf_counter()
        bits = matcher.compute_bitmask()
        mask = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")
        out.append((time.perf_counter() - began) * 1e6)
        assert mask[token_id], (body, token_id)
        assert matcher.consume_token(token_id), matcher.get_error()
    assert matcher.is_stopped()
    return out


# ----------------------------------------------------------------------------- main


async def main_async(reps: int, tokens: int) -> dict[str, Any]:
    model = TransformersModel.load()
    await first_block(model, QUESTIONS[0], True)  # warm-up: compiles, fills the prefix cache
    await paired_speed(model, QUESTIONS[0], 4, False)

    ratios, ratios_jf, masks = [], [], []
    for rep in range(reps):
        question = QUESTIONS[rep % len(QUESTIONS)]
        on, off, mask = await paired_speed(model, question, tokens, jump=False)
        ratios.append(on / off)
        masks.extend(mask)
        on, off, _ = await paired_speed(model, question, tokens, jump=True)
        ratios_jf.append(on / off)
        print(f"decode rep {rep}: constrained/free {ratios[-1]:.3f}, with jump-forward "
              f"{ratios_jf[-1]:.3f}", file=sys.stderr)  # fmt: skip

    speedups, identical = [], True
    passes: dict[bool, list[int]] = {True: [], False: []}
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(reps):
        for question in QUESTIONS:
            order = (True, False) if rep % 2 == 0 else (False, True)
            runs = {jump: await first_block(model, question, jump) for jump in order}
            identical &= runs[True][0] == runs[False][0]
            for jump in (True, False):
                seconds[jump].append(runs[jump][1])
                passes[jump].append(runs[jump][2])
            speedups.append(runs[False][1] / runs[True][1])
            print(f"block {runs[True][0]!r}: {runs[False][1]:.2f} s token by token, "
                  f"{runs[True][1]:.2f} s jump-forward, passes {runs[False][2]} -> "
                  f"{runs[True][2]}", file=sys.stderr)  # fmt: skip

    compile_10 = statistics.median(compile_ms(model, 10, seed) for seed in range(3))
    compile_100 = statistics.median(compile_ms(model, 100, 100 + seed) for seed in range(3))
    walk = mask_walk_us(model, 100)
    mask_us = [m * 1e6 for m in masks]
    model.close()
    return {
        "constrained_vs_free_tokens_per_s_ratio": round(statistics.median(ratios), 3),
        "constrained_vs_free_tokens_per_s_ratio_with_jump_forward": round(
            statistics.median(ratios_jf), 3
        ),
        "call_block_jump_forward_speedup": round(statistics.median(speedups), 3),
        "call_block_identical_text": identical,
        "call_block_s_token_by_token": round(statistics.median(seconds[False]), 3),
        "call_block_s_jump_forward": round(statistics.median(seconds[True]), 3),
        "call_block_forward_passes_token_by_token": statistics.median(passes[False]),
        "call_block_forward_passes_jump_forward": statistics.median(passes[True]),
        "grammar_compile_ms_10_tools": round(compile_10, 2),
        "grammar_compile_ms_100_tools": round(compile_100, 2),
        "mask_us_per_token_median": round(statistics.median(mask_us), 1) if mask_us else None,
        "mask_us_per_token_p90": round(sorted(mask_us)[int(0.9 * (len(mask_us) - 1))], 1)
        if mask_us
        else None,
        "mask_us_per_token_100_tools_median": round(statistics.median(walk), 1),
        "masked_tokens": len(mask_us),
        "reps": reps,
        "decode_tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="repetitions (default 2)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per decode-speed run")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 24 tokens")
    args = parser.parse_args()
    reps, tokens = (1, 24) if args.quick else (args.reps, args.tokens)
    result = asyncio.run(main_async(reps, tokens))
    for key, value in result.items():
        print(f"{key}: {value}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
