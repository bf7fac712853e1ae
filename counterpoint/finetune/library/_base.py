"""The building blocks of the function library: entries, links, domains and fake results.

Every library function is a typed Python function declared with :func:`counterpoint.tools.tool`
(its estimated latency included) and registered in a :class:`Domain` with what the trace generator
needs to use it:

- ``asks``: question templates (several paraphrases); ``{param}`` is replaced by a sampled value.
  A template is a string, or ``(string, {param: value})`` for arguments it implies without
  naming them (a boolean flag, an enum value spelled in words).
- ``then``: clauses for when the function is the dependent step of a chain (``"then book it for
  {passenger}"``): they leave out the parameters its links fill in.
- ``say``: answer templates, formatted with the call's arguments and its result's fields.
- ``links``: ``{param: "source_function.field"}``, a parameter filled from another call's result.
- ``values``: samplers for parameters whose names the shared samplers do not know.

Fake implementations are deterministic: :class:`Fake` seeds a random generator with a hash of the
function's name and arguments.
"""

from __future__ import annotations

import builtins
import hashlib
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from counterpoint.tools import FunctionTool, Tool

__all__ = ["Domain", "Entry", "Fake", "Link", "Sampler", "Template", "TemplateLike"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

Sampler = Callable[[random.Random], Any]
"""Draws one value for a parameter."""

TemplateLike = str | tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Template:
    """A question template (or a ``then`` clause) and the arguments it implies."""

    text: str
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(item: TemplateLike) -> Template:
        if isinstance(item, str):
            return Template(item)
        text, fixed = item
        return Template(text, dict(fixed))

    def placeholders(self) -> tuple[str, ...]:
        """The parameter names the text mentions, in order."""
        names = [name for _, name, _, _ in string.Formatter().parse(self.text) if name]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Link:
    """Parameter ``param`` of a function takes field ``field`` of a ``source`` call's result."""

    param: str
    source: str
    field: str


@dataclass(frozen=True)
class Entry:
    """One library function with its templates, links and samplers.

    ``result`` and ``answer`` are for functions the trace generator cannot run or describe with
    templates (a user's own tools, :mod:`counterpoint.finetune.usertools`): ``result`` makes a
    call's result from its validated arguments instead of running the tool, ``answer`` writes
    the answer sentence from the arguments and the result instead of ``say``.
    """

    tool: Tool
    domain: str
    asks: tuple[Template, ...]
    say: tuple[str, ...]
    then: tuple[Template, ...] = ()
    links: tuple[Link, ...] = ()
    values: Mapping[str, Sampler] = field(default_factory=dict)
    result: Callable[[Mapping[str, Any]], Any] | None = None
    answer: Callable[[Mapping[str, Any], Any], str] | None = None

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def latency_s(self) -> float:
        """The function's typical run time (its tool's estimated latency)."""
        return self.tool.estimated_latency_s or 0.1

    @property
    def gist(self) -> str:
        """What it does, as a verb phrase: ``get the current weather in a city``."""
        first = self.tool.description.strip().split("\n", 1)[0].rstrip(".")
        return first[:1].lower() + first[1:]

    @property
    def sources(self) -> tuple[str, ...]:
        """The functions whose results this one needs (when used as a dependent step)."""
        return tuple(dict.fromkeys(link.source for link in self.links))


class Domain:
    """The functions of one domain, registered in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[Entry] = []

    def register(
        self,
        *,
        asks: Sequence[TemplateLike],
        say: Sequence[str] | str,
        then: Sequence[TemplateLike] = (),
        links: Mapping[str, str] | None = None,
        values: Mapping[str, Sampler] | None = None,
    ) -> Callable[[FunctionTool[P, R]], FunctionTool[P, R]]:
        """Register a ``@tool`` function (use it above ``@tool``)."""

        def add(fn: FunctionTool[P, R]) -> FunctionTool[P, R]:
            parsed = []
            for param, ref in (links or {}).items():
                source, _, fld = ref.partition(".")
                parsed.append(Link(param, source, fld))
            self.entries.append(
                Entry(
                    tool=fn,
                    domain=self.name,
                    asks=tuple(Template.of(a) for a in asks),
                    say=(say,) if isinstance(say, str) else tuple(say),
                    then=tuple(Template.of(t) for t in then),
                    links=tuple(parsed),
                    values=dict(values or {}),
                )
            )
            return fn

        return add


class Fake:
    """Deterministic pseudo-random values for a fake result, seeded by the call itself."""

    def __init__(self, *key: object) -> None:
        digest = hashlib.sha256(repr(key).encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))

    def num(self, lo: float, hi: float, digits: int = 1) -> float:
        return round(self._rng.uniform(lo, hi), digits)

    def pick(self, options: Sequence[T]) -> T:
        return options[self._rng.randrange(len(options))]

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        return self._rng.sample(list(options), min(k, len(options)))

    def chance(self, p: float = 0.5) -> bool:
        return self._rng.random() < p

    def code(self, prefix: str = "", n: int = 6) -> str:
        alphabet = string.ascii_uppercase + string.digits
        return prefix + "".join(self._rng.choice(alphabet) for _ in range(n))

    def int(self, lo: builtins.int, hi: builtins.int) -> builtins.int:  # last: it shadows int
        return self._rng.randint(lo, hi)
