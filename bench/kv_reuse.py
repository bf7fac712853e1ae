"""KV reuse across a fully connected group of agents: dense vs prefix vs shift vs anchors.

The setting of KVCOMM's TTFT benchmark (arXiv 2510.12872), scaled to two shared CPU cores: five
agents in a fully connected group, each receiving the user input plus every predecessor's output.
The paper uses 1K-token inputs, 512-token agent prefixes and 512-token outputs; here the input is
256 tokens, each agent's prefix (chat header and role) about 128 and each output 64 (half the
paper's output ratio, to keep the run under ten minutes; ``--output-tokens 128`` keeps it exact).
Inputs are real text: the docstrings of Python standard-library modules, one per round, with a
question about them. Several rounds (different inputs) let the anchor pool warm up.

Per round and agent position, the dense policy decodes the answer greedily (the reference); every
other policy then starts on the *same* prompt (same token ids: the references' answers are the
upstream content), its TTFT is measured, and the reference answer is teacher-forced on it in one
pass. That gives its next-token distributions on the reference's tokens, compared with the
reference's: greedy agreement (all first N = 32 positions have the same argmax, i.e. greedy
decoding would produce the same first 32 tokens) and the mean KL divergence. The forced answer's
KV (as produced in that policy's context) is what downstream agents of that policy reuse.

Variants: ``prefix`` (exact prefix reuse), ``shift`` (naive reuse: stored KV re-rotated, no
correction) and ``anchors`` (KVCOMM: rotation plus offsets interpolated from the anchor pool, and
dense prefill for content that must become an anchor), all recomputing only the last prompt token
as KVCOMM does; with ``shift_tail`` / ``anchors_tail`` the same recomputing the prompt's whole last
template segment (``recompute_tail``; ``--no-tail`` skips them). The ``*_blendN`` variants add
CacheBlend's selective recompute (``recompute_ratio``: N% of the reused tokens, those whose
second-layer KV deviates most, recomputed through every layer; ``--blend 0.05,0.1``), and the
``*_headN`` variants recompute the first N% of each reused segment instead (no probe);
``--only a,b`` runs only those variants (and dense). The anchor entropy threshold is
γ = 1 as in KVCOMM's TTFT benchmark (``--gamma``; the library default is KVCOMM's 0.3, which
makes more inputs anchors, hence more dense calls).

TTFT is measured from ``start`` to the first token's logits, inside one process; the variants of
one agent call run back to back so that the machine's noise hits all alike. Reported per agent
position: the median TTFT over the rounds after the two warm-up rounds (the anchor pool needs two
anchors per placeholder before it shares anything), and the speedup at the fifth agent also as a
ratio of medians and of means over all rounds (the mean counts the warm-up's dense calls).
Reuse rate is reuse-mode calls over all calls (KVCOMM's definition), over all rounds, warm-up
included.

Run: ``.venv/bin/python bench/kv_reuse.py`` (about 5–8 minutes; ``--rounds 3`` for a smoke run).
The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from counterpoint.runtime.backends.base import SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.runtime.kv import (
    Content,
    KVReuseConfig,
    KVReuseModel,
    Policy,
    PromptBuilder,
    agent_output_key,
    compare_logits,
)

AGENTS = 5
WARMUP_ROUNDS = 2
MODULES = [
    *("argparse", "csv", "json", "re", "unittest", "heapq", "ftplib", "copy", "statistics"),
    *("itertools", "hashlib", "struct", "io", "ssl", "socket", "uuid", "socketserver", "wave"),
    *("fileinput", "plistlib", "configparser", "pydoc", "doctest", "smtplib", "os"),
]
QUESTION = "\n\nQuestion: what is this module for, and which function would you call first?"
ROLES = [
    (
        "Analyst",
        "You are the Analyst of a team of five assistants that answer questions about software "
        "documentation. You read the document the user gives you with care, find the passage "
        "that answers the question, and explain it in plain words. You quote names of functions "
        "and classes exactly as they are written. You never invent functions that the document "
        "does not mention, and when the document is silent you say so. Keep your answer short: "
        "three or four sentences at most, without lists or headings, and without repeating the "
        "question.",
    ),
    (
        "Critic",
        "You are the Critic of a team of five assistants that answer questions about software "
        "documentation. You read the document and the answers of your teammates, and you point "
        "out what is wrong, missing or unclear in them, with a reason taken from the document. "
        "You are polite but direct; you do not praise. If an answer is correct you confirm it in "
        "one sentence and add one detail it missed. Keep your answer short: three or four "
        "sentences at most, without lists or headings, and without repeating the question.",
    ),
    (
        "Teacher",
        "You are the Teacher of a team of five assistants that answer questions about software "
        "documentation. Your job is to explain the answer to a beginner who has never used the "
        "module: say what problem it solves, give a one-line example of a call, and explain any "
        "word a beginner might not know. Build on what your teammates wrote and correct them "
        "where they were wrong. Keep your answer short: three or four sentences at most, "
        "without lists or headings, and without repeating the question.",
    ),
    (
        "Skeptic",
        "You are the Skeptic of a team of five assistants that answer questions about software "
        "documentation. You look for pitfalls: edge cases, errors a user will meet, security or "
        "performance traps, and places where the teammates' answers are too confident. Name "
        "one concrete risk and how to avoid it, citing the document where you can. Keep your "
        "answer short: three or four sentences at most, without lists or headings, and without "
        "repeating the question.",
    ),
    (
        "Judge",
        "You are the Judge of a team of five assistants that answer questions about software "
        "documentation. You read the document and every answer of your teammates, and you write "
        "the final answer the user will see: correct, complete and brief. Keep what the team "
        "agreed on, settle their disagreements with the document, and drop anything the "
        "document does not support. Keep your answer short: three or four sentences at most, "
        "without lists or headings, and without repeating the question.",
    ),
]


@dataclass
class Call:
    """One agent call under one policy."""

    ttft_s: float
    mode: str
    identical: bool
    agreed: int
    mean_kl: float
    token_agreement: float


@dataclass
class Tally:
    """Every call of one variant, by round and agent position."""

    calls: dict[tuple[int, int], Call] = field(default_factory=dict)

    def ttft(self, position: int, rounds: range) -> float:
        """Median TTFT at ``position`` over ``rounds`` (medians: the machine is shared)."""
        return statistics.median(self.calls[(r, position)].ttft_s for r in rounds)

    def mean_ttft(self, position: int, rounds: range) -> float:
        """Mean TTFT at ``position`` over ``rounds`` (warm-up's dense calls weigh in fully)."""
        return statistics.fmean(self.calls[(r, position)].ttft_s for r in rounds)

    def all_calls(self) -> list[Call]:
        return list(self.calls.values())


def variants(args: argparse.Namespace) -> dict[str, tuple[Policy, KVReuseConfig]]:
    """The measured variants: name -> (policy, settings). ``dense`` is the reference."""
    chosen: dict[str, tuple[Policy, KVReuseConfig]] = {
        "dense": ("dense", KVReuseConfig()),
        "prefix": ("prefix", KVReuseConfig()),
        "shift": ("shift", KVReuseConfig()),
        "anchors": ("anchors", KVReuseConfig(gamma=args.gamma)),
    }
    if args.tail:
        chosen["shift_tail"] = ("shift", KVReuseConfig(recompute_tail=True))
        chosen["anchors_tail"] = ("anchors", KVReuseConfig(gamma=args.gamma, recompute_tail=True))
    for ratio in args.blend:
        tag = f"{ratio * 100:g}".replace(".", "_")
        blended = KVReuseConfig(gamma=args.gamma, recompute_ratio=ratio)
        chosen[f"anchors_blend{tag}"] = ("anchors", blended)
        chosen[f"anchors_head{tag}"] = (
            "anchors",
            KVReuseConfig(gamma=args.gamma, recompute_ratio=ratio, recompute_select="head"),
        )
        if args.tail:
            chosen[f"anchors_tail_head{tag}"] = (
                "anchors",
                KVReuseConfig(
                    gamma=args.gamma,
                    recompute_tail=True,
                    recompute_ratio=ratio,
                    recompute_select="head",
                ),
            )
            chosen[f"anchors_tail_blend{tag}"] = (
                "anchors",
                KVReuseConfig(gamma=args.gamma, recompute_tail=True, recompute_ratio=ratio),
            )
            chosen[f"shift_tail_blend{tag}"] = (
                "shift",
                KVReuseConfig(recompute_tail=True, recompute_ratio=ratio),
            )
    if args.only:
        keep = {"dense", *args.only}
        unknown = keep - set(chosen)
        if unknown:
            raise SystemExit(f"unknown variant(s) {sorted(unknown)}; known: {sorted(chosen)}")
        chosen = {name: v for name, v in chosen.items() if name in keep}
    return chosen


def make_input(model: TransformersModel, module: str, tokens: int) -> str:
    """A document plus a question, exactly ``tokens`` tokens long."""
    doc = (importlib.import_module(module).__doc__ or "").strip()
    doc_ids = model.encode(doc)
    budget = tokens - len(model.encode(QUESTION)) - len(model.encode("Document:\n"))
    for cut in range(budget, budget - 40, -1):
        excerpt: str = model.tokenizer.decode(doc_ids[:cut])
        text = "Document:\n" + excerpt.rstrip() + QUESTION
        if len(model.encode(text)) == tokens:
            return text
    raise SystemExit(f"cannot cut the docstring of {module} to {tokens} tokens")


def build(position: int, question: Content, answers: list[Content]) -> PromptBuilder:
    """Agent ``position``'s prompt: its role, the input, every predecessor's answer."""
    name, role = ROLES[position]
    parts: list[str | Content] = [question]
    for i, answer in enumerate(answers):
        parts += [f"\n\n### Answer of the {ROLES[i][0]}:\n", answer]
    parts.append(f"\n\n### Your turn: answer as the {name}.")
    return PromptBuilder().system(role).user(*parts)


@dataclass
class Reference:
    """The dense call: its answer, first next-token logits, fed ids and prefix length."""

    call: Call
    answer: list[int]
    logits: torch.Tensor
    text: str
    ids: list[int]
    prefix: int


async def reference_call(
    model: KVReuseModel, builder: PromptBuilder, tokens: int, compare: int
) -> Reference:
    """The dense call: greedy answer, its first ``compare`` next-token logits, its TTFT."""
    decoder = await model.start(builder.render(model), SamplingParams(max_tokens=tokens))
    ids: list[int] = []
    logits: list[torch.Tensor] = []
    while (token := await decoder.step()) is not None:
        ids.append(token.id)
        if len(logits) < compare and decoder.last_logits is not None:
            logits.append(decoder.last_logits.float().clone())
    await decoder.close()
    published = decoder.published
    if published is None:
        raise SystemExit("the reference answer was empty")
    call = Call(decoder.ttft_s, decoder.stats.mode, True, len(logits), 0.0, 1.0)
    first = decoder.plan.pieces[0]
    prefix = first.length if first.kind == "template" else 0
    return Reference(call, ids, torch.stack(logits), published.text, decoder.plan.ids, prefix)


async def policy_call(
    model: KVReuseModel,
    builder: PromptBuilder,
    answer: list[int],
    reference: torch.Tensor,
    expected_ids: list[int],
) -> tuple[Call, str]:
    """Start on the prompt, teacher-force the reference answer, compare distributions."""
    decoder = await model.start(builder.render(model), SamplingParams(max_tokens=len(answer) + 1))
    if decoder.plan.ids != expected_ids:
        raise SystemExit(f"policy {model.policy} fed different token ids than dense")
    first = decoder.last_logits
    assert first is not None
    first = first.float().clone()
    forced = await decoder.force(answer, keep_logits=len(answer))
    assert forced is not None
    await decoder.close()
    n = reference.shape[0]
    candidate = torch.cat([first[None], forced[: n - 1].float()])
    fidelity = compare_logits(reference, candidate)
    published = decoder.published
    if decoder.stats.error:
        raise SystemExit(f"policy {model.policy}: {decoder.stats.error}")
    call = Call(
        decoder.ttft_s,
        decoder.stats.mode,
        fidelity.identical,
        fidelity.agreed,
        fidelity.mean_kl,
        fidelity.token_agreement,
    )
    return call, published.text if published is not None else ""


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = await TransformersModel.aload(dtype=args.dtype)
    chosen = variants(args)
    models = {
        name: KVReuseModel(base, policy, config=cfg) for name, (policy, cfg) in chosen.items()
    }
    tallies = {name: Tally() for name in chosen}
    if args.rounds > len(MODULES):
        raise SystemExit(f"at most {len(MODULES)} rounds")
    began = time.perf_counter()
    prefix_tokens: list[int] = []
    for r in range(args.rounds):
        question = Content(f"user:r{r}", make_input(base, MODULES[r], args.input_tokens))
        answers: list[Content] = []
        for j in range(AGENTS):
            builder = build(j, question, answers)
            ref = await reference_call(models["dense"], builder, args.output_tokens, args.compare)
            tallies["dense"].calls[(r, j)] = ref.call
            if r == 0:
                prefix_tokens.append(ref.prefix)
            for name in list(chosen)[1:]:
                call, text = await policy_call(
                    models[name], builder, ref.answer, ref.logits, ref.ids
                )
                if text != ref.text:
                    raise SystemExit(f"{name} published {text!r}, dense {ref.text!r}")
                tallies[name].calls[(r, j)] = call
            answers.append(Content(agent_output_key(ROLES[j][0], r), ref.text))
            line = "  ".join(_cell(name, tallies[name].calls[(r, j)]) for name in chosen)
            print(f"round {r} agent {j + 1} ({len(ref.ids):4d} tok): {line}", flush=True)
    elapsed = time.perf_counter() - began
    return report(args, tallies, prefix_tokens, elapsed)


def _cell(name: str, call: Call) -> str:
    """``name=TTFT`` and, for reuse variants, R/P/D (mode) and = / ~ (greedy agreement)."""
    text = f"{name}={call.ttft_s * 1000:5.0f}ms"
    if name != "dense":
        text += {"reuse": "R", "prefix": "P"}.get(call.mode, "D")
        text += "=" if call.identical else "~"
    return text


def report(
    args: argparse.Namespace,
    tallies: dict[str, Tally],
    prefix_tokens: list[int],
    elapsed: float,
) -> dict[str, Any]:
    names = list(tallies)
    warm = range(min(WARMUP_ROUNDS, args.rounds - 1), args.rounds)
    every = range(args.rounds)
    print()
    print(f"TTFT (ms) per agent position, median over rounds {warm.start}..{warm.stop - 1}:")
    print("agent " + "".join(f"{name:>13}" for name in names))
    for j in range(AGENTS):
        cells = "".join(f"{tallies[name].ttft(j, warm) * 1000:13.0f}" for name in names)
        print(f"{j + 1:5d} {cells}")
    result: dict[str, Any] = {
        "rounds": args.rounds,
        "warmup_rounds": warm.start,
        "agents": AGENTS,
        "input_tokens": args.input_tokens,
        "prefix_tokens_mean": round(statistics.fmean(prefix_tokens), 1),
        "output_tokens": args.output_tokens,
        "compare_tokens": args.compare,
        "gamma": args.gamma,
        "dtype": args.dtype,
        "elapsed_s": round(elapsed, 1),
    }
    print()
    print(
        "variant       speedup@5 (warm/all/mean-all)  reuse  greedy-agree (all/reused)  "
        "token-agree  mean KL (all/reused)"
    )
    dense = tallies["dense"]
    for name in names[1:]:
        tally = tallies[name]
        speed = dense.ttft(AGENTS - 1, warm) / tally.ttft(AGENTS - 1, warm)
        speed_all = dense.ttft(AGENTS - 1, every) / tally.ttft(AGENTS - 1, every)
        speed_mean = dense.mean_ttft(AGENTS - 1, every) / tally.mean_ttft(AGENTS - 1, every)
        calls = tally.all_calls()
        reused = [c for c in calls if c.mode == "reuse"]
        reuse_rate = len(reused) / len(calls)
        agree = sum(c.identical for c in calls) / len(calls)
        agree_reused = sum(c.identical for c in reused) / len(reused) if reused else None
        token_agree = statistics.fmean(c.token_agreement for c in calls)
        kl = statistics.fmean(c.mean_kl for c in calls)
        kl_reused = statistics.fmean(c.mean_kl for c in reused) if reused else None
        print(
            f"{name:13} {speed:8.2f}x / {speed_all:5.2f}x / {speed_mean:5.2f}x  {reuse_rate:6.0%}  "
            f"{agree:8.0%} / {_pct(agree_reused):>5}          {token_agree:6.1%}  "
            f"{kl:8.4f} / {_num(kl_reused)}"
        )
        result[f"ttft_speedup_agent5_{name}_vs_dense"] = round(speed, 2)
        result[f"ttft_speedup_agent5_{name}_vs_dense_all_rounds"] = round(speed_all, 2)
        result[f"ttft_speedup_agent5_{name}_vs_dense_mean_all_rounds"] = round(speed_mean, 2)
        result[f"reuse_rate_{name}"] = round(reuse_rate, 3)
        result[f"greedy_agreement_{name}"] = round(agree, 3)
        result[f"greedy_agreement_{name}_reused_calls"] = _round(agree_reused, 3)
        result[f"token_agreement_{name}"] = round(token_agree, 4)
        result[f"mean_kl_{name}"] = round(kl, 5)
        result[f"mean_kl_{name}_reused_calls"] = _round(kl_reused, 5)
    for j in range(AGENTS):
        result[f"ttft_ms_agent{j + 1}"] = {
            name: round(tallies[name].ttft(j, warm) * 1000, 1) for name in names
        }
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ratios(text: str) -> list[float]:
    values = [float(x) for x in text.split(",") if x.strip()]
    if any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError("ratios are in (0, 1]")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--input-tokens", type=int, default=256)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--compare", type=int, default=32, help="positions compared (N)")
    parser.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16")
    parser.add_argument(
        "--gamma", type=float, default=1.0, help="anchor entropy threshold (KVCOMM's TTFT bench: 1)"
    )
    parser.add_argument(
        "--blend",
        type=_ratios,
        default=[0.05, 0.1],
        help="selective-recompute ratios of the blend variants (comma-separated; '' for none)",
    )
    parser.add_argument(
        "--only", type=lambda s: [x for x in s.split(",") if x], default=[], help="variants to run"
    )
    parser.add_argument(
        "--no-tail",
        dest="tail",
        action="store_false",
        help="skip the variants that recompute the prompt's last segment",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.compare < 1 or args.output_tokens < args.compare:
        parser.error("need --rounds >= 1 and --output-tokens >= --compare >= 1")
    result = asyncio.run(run(args))
    print("RESULT " + json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
