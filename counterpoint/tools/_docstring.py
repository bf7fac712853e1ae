"""Descriptions of a function and of its parameters, read from its docstring.

Google, NumPy and Sphinx (reST) styles are recognised by ``docstring-parser`` (style detection is
automatic); nothing here parses docstrings by hand.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docstring_parser

__all__ = ["DocInfo", "collapse", "parse_docstring"]


@dataclass(frozen=True)
class DocInfo:
    """What a docstring says: the description (summary and body) and one line per parameter."""

    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


def collapse(text: str) -> str:
    """Fold runs of whitespace (line breaks included) into single spaces."""
    return " ".join(text.split())


def parse_docstring(fn: Callable[..., Any]) -> DocInfo:
    """Parse ``fn``'s docstring; without one, an empty :class:`DocInfo`."""
    doc = inspect.getdoc(fn)
    if not doc:
        return DocInfo()
    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError:
        return DocInfo(description=doc.strip())
    parts = [p.strip() for p in (parsed.short_description, parsed.long_description) if p]
    params = {
        p.arg_name.lstrip("*"): collapse(p.description)
        for p in parsed.params
        if p.description and p.arg_name
    }
    return DocInfo(description="\n\n".join(parts), params=params)
