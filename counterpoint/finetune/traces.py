"""Synthetic interaction traces: ideal asynchronous CML transcripts over the function library.

Each trace is what an ideal model would write under the runtime's ``async`` mode, built the way
AsyncLM built its fine-tuning data (arXiv 2412.07017, section 5):

1. A user question is composed from the library's templates: a DAG of 1-6 calls (independent
   calls, chains whose later calls copy a field of an earlier result, fan-outs, and mixes), or a
   request no function fits, or one the functions only partly cover.
2. The tools offered (the needed ones plus distractors) are listed in the system prompt exactly
   as the runtime renders it (:func:`counterpoint.protocol.build_system_prompt`), with an estimated
   latency per tool that varies from sample to sample.
3. A simulated clock replays the session: the model writes one token every 5-30 ms (a per-trace
   rate; tokens counted with :func:`counterpoint.testing.scripted_tokens`); it writes the ready
   call with the longest remaining critical path first (LPT on estimated latencies, which for
   chains is :func:`counterpoint.testing.lpt_order`'s rule); a call runs from the moment its block
   is closed for its (jittered) execution time; its result is injected, formatted by
   :func:`counterpoint.protocol.format_interrupts`, at the first safe point after it arrives (right
   after a block's ``[END]``, or after the newline the model writes when nothing arrived); the
   model writes ``[TRAP][END]`` when nothing is ready, and the clock jumps to the next result.
   A dependent call is written only after its inputs' interrupts, with the value copied.
4. The final answer states what the results said, and what could not be done.

Model-written text is trained on; injected interrupts are context only (the loss mask).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic_core import to_jsonable_python

from counterpoint.agents.agent import Agent
from counterpoint.core.calls import Call, CallResult, Interrupt, ToolSpec, UserInterrupt
from counterpoint.finetune import library
from counterpoint.finetune.library import Entry, Fake, Split, Template
from counterpoint.protocol import (
    TRAP,
    build_system_prompt,
    format_call,
    format_interrupts,
    neutralise_control,
)
from counterpoint.protocol.callsyntax import format_call_body
from counterpoint.testing import scripted_tokens
from counterpoint.tools import FunctionTool

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "SHAPES",
    "Catalog",
    "Kind",
    "Sample",
    "Segment",
    "TraceCall",
    "answer_facts",
    "facts_stated",
    "generate_sample",
    "render_value",
    "result_text",
]

Kind = Literal["calls", "partial", "no_call", "chat"]

DEFAULT_INSTRUCTIONS: str = inspect.signature(Agent.__init__).parameters["instructions"].default
"""The instructions an :class:`~counterpoint.agents.Agent` gets by default (most samples use
them)."""

_OTHER_INSTRUCTIONS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Use the functions when they help.",
    "You help users get things done. Keep answers short and factual.",
)
TOKEN_TIME_RANGE_S = (0.005, 0.030)
"""Seconds per generated token, drawn once per trace (AsyncLM: 5-30 ms)."""
LATENCY_FACTOR = 3.0
"""A tool's shown latency is its library latency times a factor in [1/3, 3], per sample."""
EXEC_JITTER = (0.8, 1.25)
"""A call's simulated run time is its shown latency times a factor in this range."""
BLOCKING_SHARE = 0.35
"""Share of call traces whose results come back the moment each block closes: what the model
sees in ``sync`` mode (the session runs each call before the model goes on) and with tools
faster than a token. The model learns to read a result already there, not only to wait for one."""
NEAR_MISS_SHARE = 0.5
"""Share of ``no_call`` and ``partial`` samples that offer one or two functions of the missed
request's own domain (a weather function when the forecast asked for is one no function gives):
the model learns that a function on the right topic is not yet one that does what was asked."""
MAX_TOOLS = 8


@dataclass(frozen=True)
class Segment:
    """A piece of the assistant's side of the context: written by the model (``train``) or
    injected by the runtime (an interrupt: context only)."""

    text: str
    train: bool


@dataclass(frozen=True)
class TraceCall:
    """One call of a trace and its simulated timeline (seconds since the first token)."""

    id: str
    name: str
    arguments: dict[str, Any]
    needs: tuple[str, ...]
    copied: dict[str, str]
    """Arguments copied from a result: parameter -> ``"call_id.field"``."""
    implied: tuple[str, ...]
    """Arguments the question implies without spelling their value (a flag, an order)."""
    asked_later: bool
    """Asked for by the user's interrupt, not by the first message."""
    estimated_s: float
    exec_s: float
    priority_s: float
    ready_s: float
    written_s: float
    arrives_s: float
    injected_s: float
    result: Any
    result_text: str


@dataclass(frozen=True)
class Sample:
    """One fine-tuning sample: the chat the runtime renders plus the assistant's CML transcript."""

    id: str
    split: Split
    kind: Kind
    shape: str
    instructions: str
    system: str
    user: str
    segments: tuple[Segment, ...]
    tools: tuple[str, ...]
    latencies: Mapping[str, float]
    calls: tuple[TraceCall, ...]
    token_time_s: float
    answer: str
    end_s: float
    templates: tuple[str, ...] = field(default=())
    """The templates the question was built from (to measure variety)."""
    user_interrupt: str | None = None
    """A message the user sent while the model worked (``[INTR] user [HEAD] ...``), if any."""
    user_interrupt_s: float | None = None
    """When it was sent (simulated seconds since the first token)."""
    schedule: str = "async"
    """``async``: results arrive after their (simulated) execution time; ``blocking``: each
    result right after its call block (see :data:`BLOCKING_SHARE`)."""
    tool_specs: tuple[ToolSpec, ...] = field(default=(), repr=False, compare=False)
    """The offered tools' specs with this sample's latencies (what :meth:`specs` returns)."""
    missed: str | None = None
    """In ``no_call`` and ``partial`` samples: the function the question asks for that is not
    offered (only its request is in the question)."""
    near_miss: bool = False
    """Whether functions of the missed one's own domain are offered (see
    :data:`NEAR_MISS_SHARE`)."""

    @property
    def transcript(self) -> str:
        """The assistant's side as it appears in context: model text and interrupts."""
        return "".join(s.text for s in self.segments)

    @property
    def generated(self) -> str:
        """What the model wrote (the trained spans), concatenated."""
        return "".join(s.text for s in self.segments if s.train)

    def messages(self) -> list[dict[str, str]]:
        """The chat the model starts from (system, user), as the runtime renders it."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    def specs(self) -> tuple[ToolSpec, ...]:
        """The offered tools' specs, with this sample's estimated latencies."""
        if self.tool_specs:
            return self.tool_specs
        return tuple(replace(_spec(n), estimated_latency_s=self.latencies[n]) for n in self.tools)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: chat messages (the assistant's content is the transcript),
        the loss mask as segments, and the trace's metadata."""
        return {
            "id": self.id,
            "split": self.split,
            "kind": self.kind,
            "shape": self.shape,
            "schedule": self.schedule,
            "missed": self.missed,
            "near_miss": self.near_miss,
            "messages": [*self.messages(), {"role": "assistant", "content": self.transcript}],
            "segments": [{"text": s.text, "train": s.train} for s in self.segments],
            "tools": list(self.tools),
            "latencies_s": dict(self.latencies),
            "token_time_s": self.token_time_s,
            "end_s": round(self.end_s, 6),
            "calls": [
                {
                    "id": c.id,
                    "name": c.name,
                    "arguments": c.arguments,
                    "needs": list(c.needs),
                    "copied": c.copied,
                    "implied": list(c.implied),
                    "asked_later": c.asked_later,
                    "estimated_s": c.estimated_s,
                    "exec_s": round(c.exec_s, 6),
                    "written_s": round(c.written_s, 6),
                    "arrives_s": round(c.arrives_s, 6),
                    "injected_s": round(c.injected_s, 6),
                    "result": c.result_text,
                }
                for c in self.calls
            ],
            "answer": self.answer,
            "user_interrupt": self.user_interrupt,
            "user_interrupt_s": self.user_interrupt_s,
        }


@functools.cache
def _spec(name: str) -> ToolSpec:
    return library.entry(name).tool.spec()


@dataclass(frozen=True, eq=False)
class Catalog:
    """The functions samples are drawn from.

    ``entries`` are the functions questions use and the system prompt offers; ``outside`` are
    functions for the requests no offered function fits (the ``partial`` and ``no_call``
    samples: a function of ``outside`` is asked for, never offered). The library's catalog of a
    split uses its own functions for both (an uncovered request comes from another domain);
    :mod:`counterpoint.finetune.usertools` builds one over a user's tools.
    """

    entries: tuple[Entry, ...]
    outside: tuple[Entry, ...] = ()
    name: str = "custom"

    def __post_init__(self) -> None:
        by_name = {e.name: e for e in (*self.outside, *self.entries)}
        consumers: dict[str, list[Entry]] = {}
        for e in self.entries:
            if e.then and len(e.sources) == 1:
                consumers.setdefault(e.sources[0], []).append(e)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_consumers", {k: tuple(v) for k, v in consumers.items()})
        object.__setattr__(self, "_specs", {})

    def entry(self, name: str) -> Entry:
        """The entry called ``name`` (``KeyError`` if there is none)."""
        found: Entry = self._by_name[name]  # type: ignore[attr-defined]
        return found

    def consumers(self, source: str) -> tuple[Entry, ...]:
        """The functions that can follow ``source`` in a chain."""
        found: tuple[Entry, ...] = self._consumers.get(source, ())  # type: ignore[attr-defined]
        return found

    def spec(self, name: str) -> ToolSpec:
        specs: dict[str, ToolSpec] = self._specs  # type: ignore[attr-defined]
        if name not in specs:
            specs[name] = self.entry(name).tool.spec()
        return specs[name]

    @property
    def has_chains(self) -> bool:
        return any(e.asks for e in self.entries if self.consumers(e.name))


@functools.cache
def library_catalog(split: Split) -> Catalog:
    """The catalog of one split of the project's library."""
    pool = library.entries(split)
    return Catalog(pool, pool, name=f"library/{split}")


# -- values and text -----------------------------------------------------------------------------


def result_text(value: Any) -> str:
    """A result as the executor hands it to the model: a ``str`` as is, else compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable_python(value), ensure_ascii=False, allow_nan=False)


def render_value(value: Any) -> str:
    """A value as a person writes it in a sentence: lists joined with "and", booleans as
    yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        items = [render_value(v) for v in value]
        if not items:
            return "none"
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return str(value)


def _fill(text: str, values: Mapping[str, Any]) -> str:
    return text.format_map({k: render_value(v) for k, v in values.items()})


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _decapitalise(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _strip_end(text: str) -> str:
    return text.rstrip(" .?!")


# -- the DAG -------------------------------------------------------------------------------------


@dataclass
class _Node:
    entry: Entry
    template: Template
    args: dict[str, Any]
    parents: list[int]
    copied: dict[str, tuple[int, str]]  # param -> (parent node, field)
    dependent: bool
    result: Any = None
    call_id: str = ""
    estimated_s: float = 0.0
    exec_s: float = 0.0
    priority_s: float = 0.0
    ready_s: float = 0.0
    written_s: float = -1.0
    arrives_s: float = math.inf
    injected_s: float = -1.0


def _enum(e: Entry, param: str) -> list[Any] | None:
    prop = e.tool.parameters.get("properties", {}).get(param, {})
    values = prop.get("enum") if isinstance(prop, dict) else None
    return list(values) if isinstance(values, list) else None


def _draw(rng: random.Random, e: Entry, param: str) -> Any:
    sampler = library.sampler_for(e, param)
    if sampler is not None:
        return sampler(rng)
    options = _enum(e, param)
    if options is not None:
        return rng.choice(options)
    raise LookupError(f"{e.name}: no sampler for parameter {param!r}")


def _node(rng: random.Random, e: Entry, *, dependent: bool = False) -> _Node:
    pool = e.then if dependent else e.asks
    template = rng.choice(pool)
    args: dict[str, Any] = {}
    for param in template.placeholders():
        args[param] = _draw(rng, e, param)
    args.update(template.fixed)
    return _Node(e, template, args, [], {}, dependent)


def _run(node: _Node) -> None:
    """Run the fake implementation as the executor does: on the validated arguments."""
    tool = node.entry.tool
    validated = tool.validate(node.args)
    if node.entry.result is not None:
        node.result = node.entry.result(validated)
    elif isinstance(tool, FunctionTool):
        node.result = tool.fn(**validated)
    else:
        raise LookupError(f"{node.entry.name}: no implementation to make a result with")


def _ordered_args(node: _Node) -> dict[str, Any]:
    """Arguments in the schema's order (as a model reading the signature writes them)."""
    order = list(node.entry.tool.parameters.get("properties", {}))
    return {k: node.args[k] for k in sorted(node.args, key=order.index)}


def _attach(child: _Node, parent_index: int, parent: _Node) -> None:
    for link in child.entry.links:
        if link.source == parent.entry.name:
            child.args[link.param] = parent.result[link.field]
            child.copied[link.param] = (parent_index, link.field)
    child.parents.append(parent_index)


def _chain(rng: random.Random, catalog: Catalog, length: int) -> list[Entry]:
    starts = [e for e in catalog.entries if e.asks and catalog.consumers(e.name)]
    chain = [rng.choice(starts)]
    while len(chain) < length:
        taken = {e.name for e in chain}
        nxt = [e for e in catalog.consumers(chain[-1].name) if e.name not in taken]
        if not nxt:
            break
        chain.append(rng.choice(nxt))
    return chain


@dataclass
class _Question:
    nodes: list[_Node] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)


_THEN = (", then ", " and then ", ", and after that ", " and ")
_JOIN = ("", "", "Also, ", "And ", "Then ", "Plus, ", "After that, ")


def _add_single(q: _Question, rng: random.Random, e: Entry) -> None:
    node = _node(rng, e)
    _run(node)
    q.nodes.append(node)
    q.sentences.append(_capitalise(_fill(node.template.text, node.args)))


def _listable(value: Any) -> bool:
    """A value a question can list with others ("Paris, Rome and Oslo")."""
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _add_enumerated(q: _Question, rng: random.Random, e: Entry, k: int) -> bool:
    """One sentence asking the same thing of ``k`` values ("the weather in Paris, Rome and
    Oslo"): ``k`` calls of ``e`` that differ in one argument. False (nothing added) when the
    template has no argument to list or too few distinct values come up."""
    first = _node(rng, e)
    params = [p for p in first.template.placeholders() if _listable(first.args.get(p))]
    if not params:
        return False
    param = rng.choice(params)
    values = [first.args[param]]
    others = {render_value(v) for p, v in first.args.items() if p != param}
    for _ in range(8 * k):
        if len(values) == k:
            break
        value = _draw(rng, e, param)
        text = render_value(value)
        if _listable(value) and text not in others | {render_value(v) for v in values}:
            values.append(value)
    if len(values) < 2:
        return False
    for value in values:
        node = _Node(e, first.template, {**first.args, param: value}, [], {}, False)
        _run(node)
        q.nodes.append(node)
    q.sentences.append(_capitalise(_fill(first.template.text, {**first.args, param: values})))
    return True


def _add_chain(q: _Question, rng: random.Random, chain: Sequence[Entry], fanout: bool) -> None:
    """A chain A -> B -> C (or, with ``fanout``, A -> B and A -> C)."""
    root = _node(rng, chain[0])
    _run(root)
    root_index = len(q.nodes)
    q.nodes.append(root)
    text = _strip_end(_fill(root.template.text, root.args))
    parent_index, parent = root_index, root
    for k, e in enumerate(chain[1:]):
        child = _node(rng, e, dependent=True)
        _attach(child, parent_index, parent)
        _run(child)
        q.nodes.append(child)
        clause = _fill(child.template.text, child.args)
        if fanout and k > 0:
            clause = clause.removeprefix("then ").removeprefix("and then ").removeprefix("and ")
            text += " and " + clause
        else:
            text += (", " if clause.startswith(("then", "and")) else rng.choice(_THEN)) + clause
        if not fanout:
            parent_index, parent = len(q.nodes) - 1, child
    q.sentences.append(_capitalise(text) + ".")


def _fanout(rng: random.Random, catalog: Catalog) -> list[Entry]:
    starts = [e for e in catalog.entries if e.asks and len(catalog.consumers(e.name)) >= 2]
    if not starts:
        return _chain(rng, catalog, 2)
    root = rng.choice(starts)
    return [root, *rng.sample(list(catalog.consumers(root.name)), 2)]


_QUESTION_WORDS = frozenset(
    {
        "what", "what's", "how", "how's", "who", "who's", "which", "when", "where", "is", "are",
        "do", "does", "did", "will", "can", "could", "should", "any", "has", "have", "was",
    }
)  # fmt: skip
_ASK_LEAD = ("Please ", "Can you ", "Could you ", "I need you to ", "Would you ")
_QUESTION_LEAD = ("Hey, ", "Quick question: ", "I wonder: ", "Tell me: ")
_SIGN_OFF = (" Thanks!", " Thank you.", " Thanks in advance.")


def _phrase(sentence: str, rng: random.Random) -> str:
    """Sometimes make a sentence politer or chattier (more surface forms per template)."""
    if rng.random() > 0.35 or not (sentence[:1].isupper() and sentence[1:2].islower()):
        return sentence
    first = sentence.split(" ", 1)[0].lower().rstrip(",")
    if sentence.endswith("?") or first in _QUESTION_WORDS:
        return rng.choice(_QUESTION_LEAD) + _decapitalise(sentence)
    lead = rng.choice(_ASK_LEAD)
    body = _decapitalise(sentence)
    if lead != "Please " and body.endswith("."):
        body = body[:-1] + "?"
    return lead + body


def _question_text(sentences: Sequence[str], rng: random.Random) -> str:
    out = []
    for k, sentence in enumerate(sentences):
        join = rng.choice(_JOIN) if k else ""
        out.append(join + _decapitalise(sentence) if join else _phrase(sentence, rng))
    text = " ".join(out)
    return text + rng.choice(_SIGN_OFF) if rng.random() < 0.08 else text


# -- the simulated session -----------------------------------------------------------------------


def _tokens(text: str) -> int:
    return len(scripted_tokens(text))


def _nice_latency(seconds: float) -> float:
    if seconds < 1.0:
        return max(0.001, round(seconds, 3))
    return round(seconds, 1)


def _priorities(nodes: Sequence[_Node]) -> None:
    """LPT keys: a call's own estimate plus the longest estimated path below it."""
    children: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, n in enumerate(nodes):
        for p in n.parents:
            children[p].append(i)
    for i in reversed(range(len(nodes))):  # parents always come before their children
        below = max((nodes[c].priority_s for c in children[i]), default=0.0)
        nodes[i].priority_s = nodes[i].estimated_s + below


@dataclass
class _UserMessage:
    """A message the user sends while the model works (AsyncLM's user-triggered interrupt).

    It arrives ``fraction`` of the way through the first call's run (so calls are still pending)
    and makes ``nodes`` ready once injected.
    """

    text: str
    nodes: set[int]
    fraction: float
    at_s: float = math.inf
    injected_s: float = -1.0


def _simulate(
    nodes: list[_Node], dt: float, user: _UserMessage | None = None
) -> tuple[list[Segment], float]:
    """Write the calls as an ideal async model would; return the segments and the clock."""
    segments: list[Segment] = []
    t = 0.0
    written: list[int] = []
    next_id = 1

    def waiting_on_user(i: int) -> bool:
        return user is not None and i in user.nodes and user.injected_s < 0

    def inject(now: float) -> bool:
        due = sorted(
            (i for i in written if nodes[i].injected_s < 0 and nodes[i].arrives_s <= now),
            key=lambda i: (nodes[i].arrives_s, i),
        )
        user_due = user is not None and user.injected_s < 0 and user.at_s <= now
        if not due and not user_due:
            return False
        items: list[Interrupt] = [
            CallResult(
                call=Call(id=nodes[i].call_id, name=nodes[i].entry.name, arguments=nodes[i].args),
                ok=True,
                text=result_text(nodes[i].result),
                value=nodes[i].result,
            )
            for i in due
        ]
        if user is not None and user_due:  # the session injects results, then user messages
            items.append(UserInterrupt(text=user.text, t=user.at_s))
            user.injected_s = now
        segments.append(Segment(format_interrupts(items), train=False))
        for i in due:
            nodes[i].injected_s = now
        for k, child in enumerate(nodes):
            if (
                (child.parents or (user is not None and k in user.nodes))
                and child.written_s < 0
                and child.ready_s == 0.0
                and all(nodes[p].injected_s >= 0 for p in child.parents)
                and not waiting_on_user(k)
            ):
                child.ready_s = now
        return True

    while True:
        ready = [
            i
            for i, n in enumerate(nodes)
            if n.written_s < 0
            and all(nodes[p].injected_s >= 0 for p in n.parents)
            and not waiting_on_user(i)
        ]
        if ready:
            i = max(ready, key=lambda k: (nodes[k].priority_s, -k))
            node = nodes[i]
            node.call_id = f"c{next_id}"
            next_id += 1
            block = format_call(
                node.call_id, format_call_body(node.entry.name, _ordered_args(node))
            )
            t += _tokens(block) * dt
            node.written_s = t
            node.arrives_s = t + node.exec_s
            if user is not None and next_id == 2:
                user.at_s = t + user.fraction * node.exec_s
            written.append(i)
            segments.append(Segment(block, train=True))
            if not inject(t):
                segments.append(Segment("\n", train=True))
                t += dt
                inject(t)
            continue
        if any(n.injected_s < 0 for n in nodes):
            segments.append(Segment(TRAP, train=True))
            t += _tokens(TRAP) * dt
            if not inject(t):
                waits = [nodes[i].arrives_s for i in written if nodes[i].injected_s < 0]
                if user is not None and user.injected_s < 0:
                    waits.append(user.at_s)
                t = max(t, min(waits))
                inject(t)
            continue
        return segments, t


# -- answers -------------------------------------------------------------------------------------

_NO_FIT = (
    "I can't help with that: none of the available functions can {gist}.",
    "Sorry, I have no function that can {gist}, so I can't do that.",
    "None of my functions can {gist}, so I can't answer that one.",
    "That is outside what my functions cover: I can't {gist}.",
)
_PARTLY = (
    " I couldn't {gist}, though: none of the available functions does that.",
    " I can't {gist}: no available function covers it.",
    " As for the rest, none of my functions can {gist}.",
)
_USER_LEAD = ("Also, ", "Oh, and ", "One more thing: ", "", "And ")
_CHAT = (
    ("Hi!", "Hello! What can I do for you?"),
    ("Hello there.", "Hello! How can I help?"),
    ("Thanks, that's all.", "You're welcome!"),
    ("Thank you!", "You're welcome. Anything else?"),
    ("Who are you?", "I'm an assistant that can call functions to get things done for you."),
    ("What can you do?", "I can use the functions listed for me. Ask me for something they cover."),
    ("Good morning!", "Good morning! What do you need?"),
    ("Can you help me?", "Of course. What do you need?"),
    ("Never mind.", "All right. Let me know if you need anything."),
    ("Tell me a joke.", "Why did the function return early? It had no arguments left."),
)


_FAILED = (
    "I couldn't {gist} for {value}: {error}.",
    "For {value}, that failed: {error}.",
)


def _say(node: _Node) -> str:
    if node.entry.answer is not None:
        return node.entry.answer(_ordered_args(node), node.result)
    if isinstance(node.result, Mapping) and "error" in node.result:  # report it, invent nothing
        pick = Fake("say-error", node.entry.name, node.args).pick(_FAILED)
        value = render_value(next(iter(_ordered_args(node).values()), ""))
        return pick.format(gist=node.entry.gist, value=value, error=node.result["error"])
    validated = node.entry.tool.validate(node.args)
    values = {**validated, **node.args}
    if isinstance(node.result, Mapping):
        values.update(node.result)
    return _fill(node.entry.say[0], values)


# -- samples -------------------------------------------------------------------------------------

_SHAPES: tuple[tuple[str, float], ...] = (
    ("single", 0.15),
    ("parallel", 0.15),
    ("enumerated", 0.12),  # one sentence, several values: one call per value
    ("user_interrupt", 0.04),
    ("chain", 0.14),
    ("fanout", 0.05),
    ("mix", 0.11),
    ("partial", 0.08),
    ("no_call", 0.18),
    ("chat", 0.04),
)


SHAPES: tuple[str, ...] = tuple(name for name, _ in _SHAPES)
"""Every shape a sample can have (``generate_sample``'s ``shapes`` weighs them)."""


def _pick_shape(rng: random.Random, shapes: Sequence[tuple[str, float]] = _SHAPES) -> str:
    r = rng.random() * sum(w for _, w in shapes)
    for name, weight in shapes:
        r -= weight
        if r <= 0:
            return name
    return shapes[-1][0]


def _singles(rng: random.Random, pool: Sequence[Entry], k: int) -> list[Entry]:
    chosen: list[Entry] = []
    for _ in range(k):
        if chosen and rng.random() < 0.25:
            chosen.append(rng.choice(chosen))  # the same function with other values
        else:
            taken = {c.name for c in chosen}
            options = [e for e in pool if e.asks and e.name not in taken]
            chosen.append(rng.choice(options or chosen))  # a small toolset: repeat one
    return chosen


def _distractors(
    rng: random.Random,
    catalog: Catalog,
    needed: Sequence[str],
    avoid: set[str],
) -> list[str]:
    pool = catalog.entries
    room = max(0, MAX_TOOLS - len(needed))
    k = min(room, rng.randint(0, 4))  # none: the agent has only the tools it needs (often one)
    domains = {catalog.entry(n).domain for n in needed}
    near = [e.name for e in pool if e.domain in domains and e.name not in needed]
    far = [e.name for e in pool if e.domain not in domains and e.domain not in avoid]
    out: list[str] = []
    for _ in range(k):
        source = near if near and rng.random() < 0.5 else far
        options = [n for n in source if n not in out]
        if options:
            out.append(rng.choice(options))
    return out


def generate_sample(
    rng: random.Random,
    split: Split,
    sample_id: str,
    catalog: Catalog | None = None,
    shapes: Sequence[tuple[str, float]] | None = None,
) -> Sample:
    """One sample drawn with ``rng`` from the functions of ``split`` (of the library), or from
    ``catalog`` (then ``split`` is only the sample's label). ``shapes`` weighs the shapes
    (name, weight) instead of the default mix.

    A catalog without chains (no function takes another's result) gets no chain, fan-out or mix
    samples: those draws become parallel calls (or a single call, with one function).
    """
    catalog = catalog or library_catalog(split)
    pool = catalog.entries
    shape = _pick_shape(rng, shapes or _SHAPES)
    if shape in ("chain", "fanout", "mix") and not catalog.has_chains:
        shape = "parallel" if len([e for e in pool if e.asks]) > 1 else "single"
    q = _Question()
    uncovered: list[Entry] = []
    user_message: _UserMessage | None = None
    user = ""
    if shape == "enumerated":
        listed = [e for e in pool if e.asks]
        if not _add_enumerated(q, rng, rng.choice(listed), rng.randint(2, 4)):
            shape = "single"
    if shape == "single":
        _add_single(q, rng, rng.choice(pool))
    elif shape == "parallel":
        for e in _singles(rng, pool, rng.randint(2, 6)):
            _add_single(q, rng, e)
    elif shape in ("chain", "fanout"):
        chain = (
            _chain(rng, catalog, rng.randint(2, 3)) if shape == "chain" else _fanout(rng, catalog)
        )
        if len(chain) < 2:
            shape, chain = "single", []
            _add_single(q, rng, rng.choice(pool))
        else:
            _add_chain(q, rng, chain, fanout=shape == "fanout")
    elif shape == "mix":
        chain = _chain(rng, catalog, rng.randint(2, 3))
        singles = _singles(rng, pool, rng.randint(1, 6 - max(2, len(chain))))
        chain_first = rng.random() < 0.5
        if chain_first and len(chain) >= 2:
            _add_chain(q, rng, chain, fanout=False)
        for e in singles:
            _add_single(q, rng, e)
        if not chain_first and len(chain) >= 2:
            _add_chain(q, rng, chain, fanout=False)
    elif shape == "user_interrupt":
        for e in _singles(rng, pool, rng.randint(1, 3)):
            _add_single(q, rng, e)
        first = len(q.nodes)
        for e in _singles(rng, pool, rng.randint(1, 2)):
            _add_single(q, rng, e)
        later = q.sentences[first:]
        del q.sentences[first:]
        lead = rng.choice(_USER_LEAD)
        message = lead + (_decapitalise(later[0]) if lead else later[0])
        user_message = _UserMessage(
            neutralise_control(" ".join([message, *later[1:]])),
            set(range(first, len(q.nodes))),
            rng.uniform(0.05, 0.9),
        )
    elif shape == "partial":
        for e in _singles(rng, pool, rng.randint(1, 2)):
            _add_single(q, rng, e)
    near: list[str] = []  # offered functions of the missed request's own domain
    if shape in ("partial", "no_call"):
        used = {n.entry.domain for n in q.nodes}
        others = [e for e in catalog.outside if e.domain not in used and e.asks]
        miss = rng.choice(others)
        uncovered.append(miss)
        if rng.random() < NEAR_MISS_SHARE:
            siblings = [e.name for e in pool if e.domain == miss.domain and e.name != miss.name]
            near = rng.sample(siblings, min(len(siblings), rng.randint(1, 2)))
        miss_node = _node(rng, miss)
        where = rng.randint(0, len(q.sentences))
        q.sentences.insert(where, _capitalise(_fill(miss_node.template.text, miss_node.args)))
    if shape == "chat":
        user, answer_text = rng.choice(_CHAT)
    else:
        user = _question_text(q.sentences, rng)

    needed = list(dict.fromkeys(n.entry.name for n in q.nodes))
    avoid = {e.domain for e in uncovered}
    tools = [*needed, *near, *_distractors(rng, catalog, needed, avoid)][:MAX_TOOLS]
    if not tools:  # an abstention or a chat still has tools to decline (one, or several)
        far = [e.name for e in pool if e.domain not in avoid and e.name not in tools]
        tools.extend(rng.sample(far, min(len(far), rng.randint(1, 5))))
    rng.shuffle(tools)
    latencies = {}
    for name in tools:
        factor = math.exp(rng.uniform(-math.log(LATENCY_FACTOR), math.log(LATENCY_FACTOR)))
        latencies[name] = _nice_latency(min(3.0, catalog.entry(name).latency_s * factor))

    dt = round(rng.uniform(*TOKEN_TIME_RANGE_S), 4)
    # (a user who writes while the model works needs calls that take time)
    blocking = bool(q.nodes) and shape != "user_interrupt" and rng.random() < BLOCKING_SHARE
    for n in q.nodes:
        n.estimated_s = latencies[n.entry.name]
        n.exec_s = 0.0 if blocking else n.estimated_s * rng.uniform(*EXEC_JITTER)
    _priorities(q.nodes)
    segments, t = _simulate(q.nodes, dt, user_message)

    if shape == "chat":
        answer = answer_text
    elif shape == "no_call":
        answer = rng.choice(_NO_FIT).format(gist=uncovered[0].gist)
    else:
        answer = " ".join(_say(n) for n in q.nodes)
        if uncovered:
            answer += rng.choice(_PARTLY).format(gist=uncovered[0].gist)
    segments.append(Segment(answer, train=True))
    t += _tokens(answer) * dt

    instructions = DEFAULT_INSTRUCTIONS if rng.random() < 0.75 else rng.choice(_OTHER_INSTRUCTIONS)
    specs = tuple(replace(catalog.spec(n), estimated_latency_s=latencies[n]) for n in tools)
    kinds: dict[str, Kind] = {"chat": "chat", "no_call": "no_call", "partial": "partial"}
    kind = kinds.get(shape, "calls")
    asked_later = set(user_message.nodes) if user_message is not None else set()
    position = {id(n): k for k, n in enumerate(q.nodes)}
    calls = tuple(
        TraceCall(
            id=n.call_id,
            name=n.entry.name,
            arguments=_ordered_args(n),
            needs=tuple(q.nodes[p].call_id for p in n.parents),
            copied={k: f"{q.nodes[p].call_id}.{f}" for k, (p, f) in n.copied.items()},
            implied=tuple(n.template.fixed),
            asked_later=position[id(n)] in asked_later,
            estimated_s=n.estimated_s,
            exec_s=n.exec_s,
            priority_s=n.priority_s,
            ready_s=n.ready_s,
            written_s=n.written_s,
            arrives_s=n.arrives_s,
            injected_s=n.injected_s,
            result=n.result,
            result_text=result_text(n.result),
        )
        for n in sorted(q.nodes, key=lambda n: int(n.call_id[1:]))
    )
    return Sample(
        id=sample_id,
        split=split,
        kind=kind,
        shape=shape,
        instructions=instructions,
        system=build_system_prompt(neutralise_control(instructions), specs),
        user=neutralise_control(user),
        segments=tuple(segments),
        tools=tuple(tools),
        latencies=latencies,
        calls=calls,
        token_time_s=dt,
        answer=answer,
        end_s=t,
        templates=tuple(n.template.text for n in q.nodes),
        user_interrupt=user_message.text if user_message else None,
        user_interrupt_s=user_message.at_s if user_message else None,
        schedule="blocking" if blocking else "async",
        tool_specs=specs,
        missed=uncovered[0].name if uncovered else None,
        near_miss=bool(near),
    )


# -- checking answers ----------------------------------------------------------------------------


def answer_facts(sample: Sample) -> list[str]:
    """The result values the sample's reference answer states (rendered as in the answer).

    An answer "states the results correctly" when it contains every one of them: the measure
    of the held-out evaluation (:func:`facts_stated`).
    """
    facts: list[str] = []
    for call in sample.calls:
        if not isinstance(call.result, Mapping):
            continue
        for key, value in call.result.items():
            text = render_value(value)
            if key in call.arguments or isinstance(value, bool) or len(text) < 2:
                continue  # echoes of the question, yes/no and one-character values prove little
            if text in sample.answer and text not in facts:
                facts.append(text)
    return facts


def facts_stated(sample: Sample, answer: str) -> float:
    """The share of :func:`answer_facts` that ``answer`` contains (1.0 when there are none)."""
    facts = answer_facts(sample)
    if not facts:
        return 1.0
    return sum(1 for f in facts if f in answer) / len(facts)
