"""Segmented prompts: template text and placeholders filled with shared content.

A prompt for KV reuse is a list of :class:`~counterpoint.runtime.backends.base.Segment`: fixed
template text (``kind="template"``) and shared content with an identity (``kind="content"``,
``key="agent:X:step:N"``). :class:`PromptBuilder` builds one from chat messages whose text mixes
plain strings and :class:`Content` parts; :func:`mark_contents` does the same for an already
rendered prompt and a set of known contents.

Keys name content; the *slot* of a key is the placeholder it fills, which is what the anchor pool
groups contents by (KVCOMM's ``{user_question}``, ``{agent_3_current}``): see :func:`slot_of`.

Example::

    prompt = (
        PromptBuilder()
        .system("You are the critic.")
        .user("Question: ", Content("user:q1", question),
              "\\n\\nThe planner said: ", Content(agent_output_key("planner", 0), plan))
        .render(model)
    )
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from counterpoint.runtime.backends.base import Message, Prompt, Role, Segment

__all__ = [
    "Content",
    "PromptBuilder",
    "agent_output_key",
    "mark_contents",
    "merge_templates",
    "slot_of",
]

_STEP = re.compile(r"^(?P<slot>.+):step:\d+$")


def agent_output_key(agent: str, step: int) -> str:
    """The key of agent ``agent``'s output at step ``step``: ``agent:<agent>:step:<step>``."""
    return f"agent:{agent}:step:{step}"


def slot_of(key: str) -> str:
    """The placeholder a content key fills.

    ``agent:X:step:N`` fills ``agent:X``; any other ``a:b:c`` fills ``a:b`` (its last field is
    the instance); a key without ``:`` is its own slot.
    """
    found = _STEP.match(key)
    if found:
        return found.group("slot")
    return key.rsplit(":", 1)[0] if ":" in key else key


@dataclass(frozen=True)
class Content:
    """Shared content in a prompt: ``text`` known everywhere by ``key``."""

    key: str
    text: str

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a Content needs a non-empty key")


Part = str | Content


class _Renders(Protocol):
    def render(self, messages: Sequence[Message]) -> Prompt: ...


class PromptBuilder:
    """Build a segmented chat prompt, one message at a time."""

    def __init__(self) -> None:
        self._messages: list[tuple[Role, tuple[Part, ...]]] = []

    def message(self, role: Role, *parts: Part) -> PromptBuilder:
        """Add a message whose text is ``parts`` joined (strings are template text)."""
        self._messages.append((role, tuple(parts)))
        return self

    def system(self, *parts: Part) -> PromptBuilder:
        """Add a system message."""
        return self.message("system", *parts)

    def user(self, *parts: Part) -> PromptBuilder:
        """Add a user message."""
        return self.message("user", *parts)

    def assistant(self, *parts: Part) -> PromptBuilder:
        """Add an assistant message."""
        return self.message("assistant", *parts)

    def messages(self) -> list[Message]:
        """The plain chat messages (content parts inlined), e.g. for ``Agent.run``."""
        return [
            Message(role=role, content="".join(_text(p) for p in parts))
            for role, parts in self._messages
        ]

    def contents(self) -> list[Content]:
        """Every content part, in order."""
        return [p for _, parts in self._messages for p in parts if isinstance(p, Content)]

    def render(self, model: _Renders) -> Prompt:
        """Render with ``model``'s chat template; every content part becomes a segment.

        Text outside the content parts is template text. A model with a ``render_plain``
        method (:class:`~counterpoint.runtime.kv.reuse.KVReuseModel`) renders without marking
        content of its own first.
        """
        render_plain = getattr(model, "render_plain", None)
        rendered: Prompt = (
            render_plain(self.messages())
            if callable(render_plain)
            else model.render(self.messages())
        )
        placed = self._place(rendered)
        if placed is not None:
            return placed
        return mark_contents(rendered, self.contents(), contents_only=True)

    def _place(self, rendered: Prompt) -> Prompt | None:
        """Replace each message's content segment by its parts; ``None`` if they do not line up."""
        queue = [parts for _, parts in self._messages if "".join(_text(p) for p in parts)]
        out: list[Segment] = []
        for segment in rendered.segments:
            if segment.kind != "content":
                out.append(Segment(segment.text))
                continue
            if not queue or segment.text != "".join(_text(p) for p in queue[0]):
                return None
            out.extend(
                Segment(p.text, kind="content", key=p.key) if isinstance(p, Content) else Segment(p)
                for p in queue.pop(0)
            )
        return merge_templates(out) if not queue else None


def _text(part: Part) -> str:
    return part.text if isinstance(part, Content) else part


def mark_contents(
    prompt: Prompt, contents: Iterable[Content], *, contents_only: bool = False
) -> Prompt:
    """Split ``prompt`` so that every occurrence of a known content is its own segment.

    Contents are looked for, longest first, in the prompt's content segments (a system message
    is never searched: it is the agent's template). A content segment in which some are found is
    split into template text and those contents. With ``contents_only`` the remaining content
    segments (messages that are not known content) become template text; otherwise they stay
    content under their own keys. Adjacent template segments are merged.
    """
    known = sorted({c.text: c for c in contents if c.text}.values(), key=lambda c: -len(c.text))
    out: list[Segment] = []
    for segment in prompt.segments:
        if segment.kind != "content" or (segment.key or "").startswith("system:"):
            out.append(Segment(segment.text))
            continue
        pieces = _split(segment.text, known)
        if len(pieces) == 1 and isinstance(pieces[0], str):
            out.append(Segment(segment.text) if contents_only else segment)
            continue
        out.extend(
            Segment(p.text, kind="content", key=p.key) if isinstance(p, Content) else Segment(p)
            for p in pieces
        )
    return merge_templates(out)


def _split(text: str, known: Sequence[Content]) -> list[Part]:
    """``text`` cut into plain strings and the known contents found in it (non-overlapping)."""
    spans: list[tuple[int, int, Content]] = []
    for content in known:
        start = 0
        while (at := text.find(content.text, start)) >= 0:
            end = at + len(content.text)
            if all(end <= s or at >= e for s, e, _ in spans):
                spans.append((at, end, content))
            start = end
    spans.sort(key=lambda s: s[0])
    parts: list[Part] = []
    done = 0
    for start, end, content in spans:
        if start > done:
            parts.append(text[done:start])
        parts.append(content)
        done = end
    if done < len(text):
        parts.append(text[done:])
    return parts or [text]


def merge_templates(segments: Iterable[Segment]) -> Prompt:
    """A prompt of ``segments`` with empty ones dropped and adjacent template text merged."""
    out: list[Segment] = []
    for segment in segments:
        if not segment.text:
            continue
        if segment.kind == "template" and out and out[-1].kind == "template":
            out[-1] = Segment(out[-1].text + segment.text)
        else:
            out.append(segment)
    return Prompt(tuple(out))
