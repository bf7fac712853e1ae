"""Fine-tuning data for a user's own tools: ``counterpoint finetune --tools mypkg.tools:toolset``.

The project's library has hand-written question templates, answer templates and chains for each
function. A user's toolset has only its JSON schemas, so this module writes **generic** ones from
each tool's name, description and parameters and feeds them to the same trace generator
(:func:`counterpoint.finetune.traces.generate_sample`):

- questions such as "Could you <description> for <param> <value>?" in a few phrasings, with the
  required parameters always and optional ones sometimes, values drawn (seeded) by type: enums,
  strings (the library's samplers when a parameter's name is one they know, such as ``city``,
  else words and codes), integers and numbers within the schema's bounds, booleans, arrays and
  objects;
- results made up from the tool's return type (a ``dict``/``TypedDict``/pydantic model's fields,
  a list, a scalar), deterministic per call, unless ``execute=True`` runs the real tools (only for
  tools without side effects: every sample calls them);
- answers that state each result field, and requests no tool fits drawn from the library's
  functions whose words do not overlap the user's tools.

There are no chains (a generic generator cannot know which result feeds which parameter), so the
shapes are single and parallel calls, user interrupts, partial coverage, no-call and chat. This
gives a model the protocol and value copying for *these* tools; a user's own question templates
(a :class:`~counterpoint.finetune.library.Domain` with ``asks``/``say``/``links``, as the library's
modules do) give better data.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import string
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter

from counterpoint.errors import ConfigError
from counterpoint.finetune import library
from counterpoint.finetune.library import Entry, Fake, Split, Template
from counterpoint.finetune.library.values import SHARED
from counterpoint.finetune.traces import Catalog, Sample, generate_sample, render_value
from counterpoint.tools import FunctionTool, Tool, Toolset
from counterpoint.tools.loading import load_tools

__all__ = ["build_user_dataset", "load_toolset", "user_catalog", "user_entry"]

_log = logging.getLogger(__name__)
USER_DOMAIN = "user"
_WORDS = (
    "alpha", "report", "invoice", "orchid", "summit", "harbor", "ledger", "nimbus", "quartz",
    "delta", "meadow", "falcon", "atlas", "ember", "cobalt", "juniper", "sierra", "tango",
    "draft", "budget", "roadmap", "backlog", "release", "archive", "sample", "project",
)  # fmt: skip
_STOP = frozenset(
    {
        "the", "a", "an", "of", "for", "to", "in", "on", "at", "by", "with", "and", "or",
        "from", "into", "get", "set", "list", "find", "make", "give", "show", "return",
        "returns", "data", "value", "values", "item", "items", "using", "use", "this", "that",
        "your", "their", "its",
    }
)  # fmt: skip


# -- loading --------------------------------------------------------------------------------


def load_toolset(spec: str) -> Toolset:
    """The toolset ``spec`` names (see :func:`counterpoint.tools.loading.load_tools`), which
    must hold at least one tool. Raises :class:`ConfigError` (one line) otherwise."""
    toolset = load_tools(spec)
    if len(toolset) == 0:
        raise ConfigError(
            f"--tools {spec!r} has no tools: add @tool functions to it (there is nothing to "
            "fine-tune for)"
        )
    return toolset


# -- values ---------------------------------------------------------------------------------


def _branches(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """A nullable or union schema's first non-null branch."""
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                if isinstance(option, Mapping) and option.get("type") != "null":
                    return _branches(option)
    return schema


def _string(rng: random.Random, name: str, schema: Mapping[str, Any]) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return (
            f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00"
        )
    if fmt == "email":
        return f"{rng.choice(_WORDS)}{rng.randint(1, 99)}@example.com"
    shared = SHARED.get(name)
    if shared is not None:
        value = shared(rng)
        if isinstance(value, str):
            return value
    if "id" in name.split("_") or name.endswith("id") or name in ("code", "key", "sku"):
        alphabet = string.ascii_uppercase + string.digits
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(5, 8)))
    word = rng.choice(_WORDS)
    return word if rng.random() < 0.5 else f"{word}-{rng.randint(2, 999)}"


def sample_value(rng: random.Random, name: str, schema: Mapping[str, Any], depth: int = 0) -> Any:
    """A value for a parameter called ``name`` of JSON schema ``schema``."""
    schema = _branches(schema)
    if schema.get("enum"):
        return rng.choice(list(schema["enum"]))
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "integer":
        lo = int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
        hi = int(schema.get("maximum", schema.get("exclusiveMaximum", lo + 1000) - 1))
        hi = max(lo, hi)
        top = hi if rng.random() < 0.3 else min(hi, lo + 99)
        return rng.randint(lo, top)
    if kind == "number":
        lo_f = float(schema.get("minimum", schema.get("exclusiveMinimum", 0.0)))
        hi_f = float(schema.get("maximum", schema.get("exclusiveMaximum", lo_f + 500.0)))
        return round(rng.uniform(lo_f, max(lo_f, hi_f)), 2)
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        low = int(schema.get("minItems", 1))
        high = max(low, min(int(schema.get("maxItems", 3)), low + 2))
        singular = name[:-1] if name.endswith("s") else name
        return [
            sample_value(rng, singular, items if isinstance(items, Mapping) else {}, depth + 1)
            for _ in range(rng.randint(low, high))
        ]
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, Mapping) or depth > 2:
            return {rng.choice(_WORDS): rng.randint(1, 99)}
        required = set(schema.get("required", props))
        return {
            k: sample_value(rng, k, v if isinstance(v, Mapping) else {}, depth + 1)
            for k, v in props.items()
            if k in required
        }
    if kind == "null":
        return None
    return _string(rng, name, schema)


def _sampler(name: str, schema: Mapping[str, Any]) -> Any:
    return lambda rng: sample_value(rng, name, schema)


# -- results and answers ------------------------------------------------------------------------


def _return_schema(tool: Tool) -> dict[str, Any] | None:
    if not isinstance(tool, FunctionTool):
        return None
    try:
        hints = typing.get_type_hints(tool.fn)
    except Exception:  # unresolvable annotations: no return type to go by
        return None
    ret = hints.get("return", inspect.Signature.empty)
    if ret in (inspect.Signature.empty, Any, None, type(None)):
        return None
    try:
        if typing.is_typeddict(ret):  # typing.TypedDict before 3.12: pydantic refuses it
            fields = typing.get_type_hints(ret)
            return {
                "type": "object",
                "properties": {k: TypeAdapter(v).json_schema() for k, v in fields.items()},
                "required": list(fields),
            }
        schema = TypeAdapter(ret).json_schema()
    except Exception:  # a type pydantic cannot describe
        return None
    defs = schema.get("$defs", {})
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        schema = defs[ref.rsplit("/", 1)[-1]]
    return schema


def _fake_result(tool: Tool, schema: dict[str, Any] | None, args: Mapping[str, Any]) -> Any:
    seed = Fake(tool.name, sorted((k, repr(v)) for k, v in args.items()))
    rng = random.Random(seed.int(0, 2**62))
    if schema is None or (
        schema.get("type") == "object" and not isinstance(schema.get("properties"), Mapping)
    ):  # unknown or free-form: a small record with a status and a value
        return {"status": "ok", "result": f"{rng.choice(_WORDS)}-{rng.randint(10, 9999)}"}
    value = sample_value(rng, "result", schema)
    if isinstance(value, dict):  # a field named like an argument echoes it
        value.update({k: args[k] for k in value if k in args})
    return value


def _describe_args(args: Mapping[str, Any]) -> str:
    parts = [f"{_words(k)} {render_value(v)}" for k, v in args.items() if v is not None]
    return ", ".join(parts)


def _answer(gist: str) -> Any:
    def answer(args: Mapping[str, Any], result: Any) -> str:
        where = _describe_args(args)
        lead = f"To {gist}" + (f" for {where}" if where else "")
        if isinstance(result, Mapping):
            if "error" in result:
                return f"{lead}, the call failed: {result['error']}."
            facts = [f"{_words(str(k))} is {render_value(v)}" for k, v in result.items()]
            return f"{lead}: {'; '.join(facts)}." if facts else f"{lead}: it returned nothing."
        return f"{lead}: the result is {render_value(result)}."

    return answer


# -- questions ------------------------------------------------------------------------------


def _words(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace(".", " ").lower()


def _gist(tool: Tool) -> str:
    first = (tool.description or "").strip().split("\n", 1)[0].strip().rstrip(".")
    if not first:
        first = f"run {_words(tool.name)}"
    text = first[:1].lower() + first[1:]
    return text.replace("{", "(").replace("}", ")")


_ONE = (
    "Could you {gist} for {params}?",
    "Please {gist} for {params}.",
    "Can you {gist} with {params}?",
    "I need to {gist}: {params}.",
    "{Gist} for {params}, please.",
    "Use {name} to {gist} for {params}.",
)
_NONE = ("Could you {gist}?", "Please {gist}.", "{Gist}, please.", "I need you to {gist}.")


def _templates(tool: Tool, gist: str) -> list[Template]:
    props = tool.parameters.get("properties", {})
    props = props if isinstance(props, Mapping) else {}
    required = [p for p in tool.parameters.get("required", []) if p in props]
    optional = [p for p in props if p not in required]
    forms = [required, *[[*required, p] for p in optional[:3]]]
    if optional and not required:
        forms = [[p] for p in optional[:3]] + [[]]
    out: list[Template] = []
    for params in forms:
        if not params:
            out.extend(
                Template(t.format(gist=gist, Gist=gist[:1].upper() + gist[1:])) for t in _NONE
            )
            continue
        phrase = [f"{_words(p)} {{{p}}}" for p in params]
        joined = phrase[0] if len(phrase) == 1 else ", ".join(phrase[:-1]) + " and " + phrase[-1]
        big = gist[:1].upper() + gist[1:]
        out.extend(
            Template(text.format(gist=gist, Gist=big, name=tool.name, params=joined))
            for text in _ONE
        )
    return out


def user_entry(tool: Tool, *, execute: bool = False) -> Entry:
    """A library :class:`Entry` for one of the user's tools, with generic templates."""
    gist = _gist(tool)
    props = tool.parameters.get("properties", {})
    values = {
        name: _sampler(name, schema if isinstance(schema, Mapping) else {})
        for name, schema in (props.items() if isinstance(props, Mapping) else ())
    }
    schema = _return_schema(tool)

    def result(args: Mapping[str, Any]) -> Any:
        if not execute:
            return _fake_result(tool, schema, args)
        try:
            return asyncio.run(tool.invoke(args))
        except Exception as exc:  # the tool's own failure becomes an error result, as at run time
            return {"error": f"{type(exc).__name__}: {exc}"}

    return Entry(
        tool=tool,
        domain=USER_DOMAIN,
        asks=tuple(_templates(tool, gist)),
        say=("",),
        values=values,
        result=result,
        answer=_answer(gist),
    )


def _usable(entry: Entry, rng: random.Random) -> Entry | None:
    """The entry with the templates whose drawn arguments validate (``None`` if none do)."""
    keep = []
    for template in entry.asks:
        try:
            for _ in range(3):
                args = {p: entry.values[p](rng) for p in template.placeholders()}
                entry.tool.validate(args)
                template.text.format_map({k: render_value(v) for k, v in args.items()})
        except Exception as exc:  # a schema the generic sampler cannot satisfy
            _log.warning("%s: template %r left out: %s", entry.name, template.text, exc)
            continue
        keep.append(template)
    if not keep:
        return None
    return Entry(
        tool=entry.tool,
        domain=entry.domain,
        asks=tuple(keep),
        say=entry.say,
        values=entry.values,
        result=entry.result,
        answer=entry.answer,
    )


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3 and w not in _STOP}


def user_catalog(toolset: Toolset | Sequence[Tool], *, execute: bool = False) -> Catalog:
    """A :class:`Catalog` over the user's tools (``ConfigError`` if there are none usable).

    Requests no tool fits come from the library's training functions whose names and
    descriptions share no word with the user's tools (so that "no function fits" is true).
    """
    tools = list(toolset)
    if not tools:
        raise ConfigError("the toolset has no tools: add @tool functions (nothing to fine-tune)")
    rng = random.Random("counterpoint-finetune/usertools/check")
    entries: list[Entry] = []
    for t in tools:
        usable = _usable(user_entry(t, execute=execute), rng)
        if usable is None:
            _log.warning("%s: no question could be generated for it; it is left out", t.name)
        else:
            entries.append(usable)
    if not entries:
        raise ConfigError(
            "no tool of the toolset has arguments the generic question generator can fill: "
            "give its parameters plain JSON-schema types (string, integer, number, boolean, "
            "enum, array, object)"
        )
    taken = {t.name for t in tools}
    words: set[str] = set()
    for t in tools:
        words |= _content_words(f"{_words(t.name)} {t.description}")
    outside = tuple(
        e
        for e in library.entries("train")
        if e.name not in taken and not (_content_words(f"{_words(e.name)} {e.gist}") & words)
    )
    return Catalog(tuple(entries), outside, name="user")


def build_user_dataset(
    toolset: Toolset | Sequence[Tool] | Catalog,
    n: int,
    seed: int = 0,
    split: Split = "train",
    *,
    execute: bool = False,
) -> list[Sample]:
    """``n`` samples over the user's tools (deterministic for a seed; ``split`` only labels
    them and separates their random streams: the held-out split uses the same tools)."""
    if n < 0:
        raise ConfigError(f"the number of samples must be >= 0, got {n}")
    catalog = toolset if isinstance(toolset, Catalog) else user_catalog(toolset, execute=execute)
    return [
        generate_sample(
            random.Random(f"counterpoint-finetune/user/{seed}/{split}/{i}"),
            split,
            f"user-{split}-{seed}-{i}",
            catalog,
        )
        for i in range(n)
    ]
