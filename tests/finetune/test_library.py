"""The function library: its size, split, schemas, fake implementations and templates."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import jsonschema
import pytest

from counterpoint.core.calls import Call
from counterpoint.finetune import library
from counterpoint.finetune.library import Entry
from counterpoint.finetune.traces import result_text
from counterpoint.tools import Executor, Toolset

ENTRIES = library.entries()


def _args(e: Entry, rng: random.Random, *, then: bool = False) -> dict[str, Any]:
    """Arguments a template of ``e`` would produce (linked ones drawn from their samplers)."""
    template = rng.choice(e.then if then else e.asks)
    args: dict[str, Any] = {}
    for param in template.placeholders():
        sampler = library.sampler_for(e, param)
        enum = e.tool.parameters["properties"][param].get("enum")
        args[param] = sampler(rng) if sampler else rng.choice(enum)
    args.update(template.fixed)
    return args


def test_size_and_split() -> None:
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names)) >= 150
    per_domain = Counter(e.domain for e in ENTRIES)
    assert len(per_domain) >= 15 and min(per_domain.values()) >= 5
    train = {e.name for e in library.entries("train")}
    held = {e.name for e in library.entries("held_out")}
    assert not train & held and train | held == set(names)
    assert len(held) / len(names) >= 0.15
    assert {library.entry(n).domain for n in held} == set(library.HELD_OUT_DOMAINS)
    assert all(library.split_of(n) == "held_out" for n in held)
    assert len(library.all_tools()) == len(names)
    assert len(library.toolset()) == len(names)


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        library.entries("test")  # type: ignore[arg-type]


def test_every_tool_is_declared_completely() -> None:
    for e in ENTRIES:
        _check_declaration(e)


def _check_declaration(e: Entry) -> None:
    schema = e.tool.parameters
    jsonschema.Draft202012Validator.check_schema(schema)
    assert e.tool.description and e.tool.description[0].isupper()
    assert e.tool.estimated_latency_s is not None and 0 < e.tool.estimated_latency_s <= 3
    for pname, prop in schema["properties"].items():
        assert prop.get("description"), f"{e.name}.{pname} has no docstring Args entry"
    assert e.asks and e.say


def test_parameter_types_cover_the_schema_kinds() -> None:
    kinds: Counter[str] = Counter()
    for e in ENTRIES:
        required = set(e.tool.parameters.get("required", ()))
        for pname, prop in e.tool.parameters["properties"].items():
            options = prop.get("anyOf", [prop])
            for o in options:
                kinds["enum" if "enum" in o else o.get("type", "any")] += 1
            if pname not in required:
                kinds["optional"] += 1
    for kind in ("string", "integer", "number", "boolean", "enum", "array", "null", "optional"):
        assert kinds[kind] >= 5, (kind, kinds)


def test_templates_fill_and_validate() -> None:
    for e in ENTRIES:
        _check_templates(e)


def _check_templates(e: Entry) -> None:
    props = e.tool.parameters["properties"]
    required = set(e.tool.parameters.get("required", ()))
    linked = {link.param for link in e.links}
    for t in e.asks:
        given = set(t.placeholders()) | set(t.fixed)
        assert given <= set(props), (t.text, given - set(props))
        assert required <= given, f"{e.name}: {t.text!r} leaves out {required - given}"
    for t in e.then:
        assert not set(t.placeholders()) & linked, (e.name, t.text)
        assert required - linked <= set(t.placeholders()) | set(t.fixed), (e.name, t.text)
    assert not e.then or e.links, f"{e.name} has then-clauses but no links"
    rng = random.Random(e.name)
    for _ in range(5):
        args = _args(e, rng)
        e.tool.validate(args)


def test_fake_implementations_are_deterministic() -> None:
    for e in ENTRIES:
        _check_fake(e)


def _check_fake(e: Entry) -> None:
    rng = random.Random(f"fake/{e.name}")
    seen_args, seen_results = set(), set()
    for _ in range(8):
        args = _args(e, rng)
        first, second = e.tool.fn(**args), e.tool.fn(**dict(args))
        assert first == second
        assert isinstance(first, dict)
        seen_args.add(result_text(args))
        seen_results.add(result_text(first))  # JSON-serialisable
    if len(seen_args) > 1:  # the result depends on the arguments
        assert len(seen_results) > 1, e.name


def test_links_resolve_to_valid_arguments() -> None:
    count = 0
    for e in ENTRIES:
        for source_name in e.sources:
            source = library.entry(source_name)
            assert library.split_of(source_name) == library.split_of(e.name)
            rng = random.Random(f"link/{e.name}")
            result = source.tool.fn(**_args(source, rng))
            args = _args(e, rng, then=True)
            for link in e.links:
                if link.source == source_name:
                    assert link.field in result, (e.name, link)
                    args[link.param] = result[link.field]
            e.tool.validate(args)
            count += 1
    assert count >= 30


def test_result_text_is_the_executors() -> None:
    """The text a trace injects for a result is exactly what the real executor produces."""

    async def run_all() -> list[tuple[str, str]]:
        pairs = []
        async with Executor(Toolset(library.all_tools())) as executor:
            rng = random.Random(5)
            expected = {}
            for k, e in enumerate(ENTRIES):
                args = _args(e, rng)
                expected[f"c{k}"] = result_text(e.tool.fn(**e.tool.validate(args)))
                executor.submit(Call(id=f"c{k}", name=e.name, arguments=args))
            for r in await executor.wait_all():
                assert r.ok, r.text
                pairs.append((r.text, expected[r.call.id]))
        return pairs

    pairs = asyncio.run(run_all())
    assert len(pairs) == len(ENTRIES)
    assert all(got == want for got, want in pairs)
