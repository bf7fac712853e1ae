"""The project's own function library for CML fine-tuning (never BFCL's functions).

Each domain module declares typed ``@tool`` functions with docstrings, estimated latencies and
deterministic fake implementations, and registers them with their question templates, answer
templates and links (see :mod:`counterpoint.finetune.library._base`).

The split is fixed: the functions of :data:`HELD_OUT_DOMAINS` are never used by training data
(not even as distractors), so that evaluating on them measures generalisation to unseen tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from counterpoint.finetune.library import (
    calendar,
    devops,
    files,
    finance,
    geography,
    health,
    language,
    maths,
    messaging,
    music,
    real_estate,
    recipes,
    shopping,
    sports,
    transit,
    travel,
    units,
    weather,
)
from counterpoint.finetune.library._base import Domain, Entry, Fake, Link, Sampler, Template
from counterpoint.finetune.library.values import SHARED
from counterpoint.tools import FunctionTool, Toolset

__all__ = [
    "HELD_OUT_DOMAINS",
    "SPLITS",
    "Domain",
    "Entry",
    "Fake",
    "Link",
    "Sampler",
    "Split",
    "Template",
    "all_tools",
    "domains",
    "entries",
    "entry",
    "sampler_for",
    "split_of",
    "toolset",
]

Split = Literal["train", "held_out"]
SPLITS: tuple[Split, ...] = ("train", "held_out")

_DOMAINS: tuple[Domain, ...] = tuple(
    m.DOMAIN
    for m in (
        weather,
        geography,
        finance,
        travel,
        calendar,
        maths,
        units,
        shopping,
        sports,
        health,
        files,
        messaging,
        language,
        devops,
        transit,
        music,
        recipes,
        real_estate,
    )
)

HELD_OUT_DOMAINS: frozenset[str] = frozenset({"music", "recipes", "real_estate"})
"""Domains whose functions training never sees."""

_BY_NAME: dict[str, Entry] = {e.name: e for d in _DOMAINS for e in d.entries}


def domains() -> tuple[str, ...]:
    """Every domain's name, in library order."""
    return tuple(d.name for d in _DOMAINS)


def entries(split: Split | None = None) -> tuple[Entry, ...]:
    """The library's entries: all of them, or those of one split."""
    every = tuple(e for d in _DOMAINS for e in d.entries)
    if split is None:
        return every
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    held = split == "held_out"
    return tuple(e for e in every if (e.domain in HELD_OUT_DOMAINS) == held)


def entry(name: str) -> Entry:
    """The entry of the function called ``name`` (``KeyError`` if there is none)."""
    return _BY_NAME[name]


def split_of(name: str) -> Split:
    """The split a function belongs to."""
    return "held_out" if entry(name).domain in HELD_OUT_DOMAINS else "train"


def all_tools(split: Split | None = None) -> tuple[FunctionTool[..., object], ...]:
    """Every library tool (or one split's), in library order."""
    return tuple(e.tool for e in entries(split) if isinstance(e.tool, FunctionTool))


def toolset(names: Sequence[str] | None = None) -> Toolset:
    """A Toolset of the named library functions (all of them by default)."""
    chosen = entries() if names is None else tuple(entry(n) for n in names)
    return Toolset([e.tool for e in chosen])


def sampler_for(e: Entry, param: str) -> Sampler | None:
    """The sampler for a parameter of an entry: its own, else the shared one by name."""
    return e.values.get(param) or SHARED.get(param)
