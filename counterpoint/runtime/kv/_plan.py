"""A segmented prompt as token pieces: what each policy plans with.

Every policy feeds a prompt as the concatenation of its segments tokenized one by one (template
text with special tokens, content as plain text, or the exact ids a content was generated as), so
the dense baseline and every reuse policy see the same token ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from counterpoint.runtime.backends.base import Prompt
from counterpoint.runtime.kv.builder import slot_of
from counterpoint.runtime.kv.segments import SegmentEntry, SegmentStore, text_digest

__all__ = ["Piece", "pieces_of", "signature"]

Encode = Callable[[str, bool], list[int]]


@dataclass
class Piece:
    """One segment of a prompt as tokens at known positions."""

    kind: Literal["template", "content"]
    text: str
    ids: tuple[int, ...]
    start: int
    index: int
    """Index among pieces of the same kind (content pieces: their placeholder number)."""
    key: str = ""
    slot: str = ""
    digest: str = ""
    entry: SegmentEntry | None = None

    @property
    def end(self) -> int:
        """Position after the last token."""
        return self.start + len(self.ids)

    @property
    def length(self) -> int:
        """Number of tokens."""
        return len(self.ids)


def pieces_of(prompt: Prompt, encode: Encode, store: SegmentStore) -> list[Piece]:
    """Tokenize ``prompt`` segment by segment; content uses its stored ids when known."""
    pieces: list[Piece] = []
    at = 0
    counts = {"template": 0, "content": 0}
    for segment in prompt.segments:
        if not segment.text:
            continue
        if segment.kind == "content":
            digest = text_digest(segment.text)
            key = segment.key or f"content:{digest}"
            entry = store.get(text=segment.text)
            ids = entry.ids if entry is not None else tuple(encode(segment.text, False))
            piece = Piece(
                "content",
                segment.text,
                ids,
                at,
                counts["content"],
                key=key,
                slot=slot_of(key),
                digest=digest,
                entry=entry,
            )
        else:
            piece = Piece("template", segment.text, tuple(encode(segment.text, True)), at, 0)
            piece.index = counts["template"]
        if not piece.ids:
            continue
        counts[piece.kind] += 1
        pieces.append(piece)
        at = piece.end
    return pieces


def signature(pieces: list[Piece]) -> str:
    """The consuming context: the template text and the sequence of slots, hashed.

    Two prompts with the same signature differ only in the content filling their placeholders
    (one agent's template, called again on new content).
    """
    h = hashlib.sha256()
    for piece in pieces:
        h.update(b"\x00T" if piece.kind == "template" else b"\x00C")
        h.update((piece.text if piece.kind == "template" else piece.slot).encode())
    return h.hexdigest()[:16]
