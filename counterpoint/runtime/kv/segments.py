"""The segment KV store: shared content with an identity, its tokens and its KV.

Shared content is text that several prompts include: the user's question, agent X's output of step
N. The store keeps, per content, the token ids it is fed as and the KV it had where it was
computed: a generating agent's output keeps the KV its own decoding produced (cut out of the
producer's cache); other content is prefilled once on its own after a short chat header (as
KVCOMM does). Either way the KV is kept *canonical*: its keys rotated back so that the content's
first token sits at position 0 (see :mod:`~counterpoint.runtime.kv.rope`); ``position`` records
where it was computed.

Entries are addressed by content, not by name: a text maps to one entry, and any number of keys
(``agent:X:step:N``, ``user:q1``) name it. Memory is bounded by a byte budget on the KV and by a
number of entries; the least recently used entries go first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from counterpoint.runtime.kv._kv import KVBlock

__all__ = ["Origin", "SegmentEntry", "SegmentStore", "text_digest"]

Origin = Literal["generated", "prefilled", "shared"]


def text_digest(text: str) -> str:
    """A short stable digest of ``text`` (16 hex digits of its SHA-256)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(eq=False)
class SegmentEntry:
    """One piece of shared content.

    ``kv`` is canonical (first token at position 0) and ``None`` until computed; ``position`` is
    where its first token sat when the KV was computed; ``name`` is the key it was last given.
    """

    text: str
    ids: tuple[int, ...]
    origin: Origin
    keys: set[str] = field(default_factory=set)
    kv: KVBlock | None = None
    position: int = 0
    name: str | None = None

    @property
    def digest(self) -> str:
        """The digest of the text."""
        return text_digest(self.text)

    @property
    def length(self) -> int:
        """Number of tokens."""
        return len(self.ids)


class SegmentStore:
    """Content-addressed store of :class:`SegmentEntry`, with key aliases and an LRU budget."""

    def __init__(self, budget_bytes: int = 512 * 2**20, max_entries: int = 4096) -> None:
        self.budget_bytes = budget_bytes
        self.max_entries = max_entries
        self._by_text: OrderedDict[str, SegmentEntry] = OrderedDict()
        self._by_key: dict[str, SegmentEntry] = {}
        self._bytes = 0
        self._lock = threading.RLock()
        self.evictions = 0
        """Entries evicted to stay within the budget."""

    # ----------------------------------------------------------------------------- queries

    @property
    def nbytes(self) -> int:
        """Bytes of KV held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._by_text)

    def get(self, key: str | None = None, text: str | None = None) -> SegmentEntry | None:
        """The entry for ``text`` (content wins), else the one named ``key``; marks it used.

        With both given, a key naming different content is ignored: content is the identity.
        """
        with self._lock:
            entry = self._by_text.get(text) if text is not None else None
            if entry is None and key is not None and text is None:
                entry = self._by_key.get(key)
            if entry is not None:
                self._by_text.move_to_end(entry.text)
            return entry

    def entries(self) -> list[SegmentEntry]:
        """Every entry, least recently used first."""
        with self._lock:
            return list(self._by_text.values())

    # ----------------------------------------------------------------------------- updates

    def put(
        self,
        text: str,
        ids: Sequence[int],
        *,
        origin: Origin,
        key: str | None = None,
        kv: KVBlock | None = None,
        position: int = 0,
    ) -> SegmentEntry:
        """Add content (or update the entry with the same text) and return its entry.

        An existing entry keeps its ids and KV unless ``kv`` is given: the first computation of
        a content is the one every consumer shares.
        """
        with self._lock:
            entry = self._by_text.get(text)
            if entry is None:
                entry = SegmentEntry(text, tuple(ids), origin)
                self._by_text[text] = entry
            elif kv is not None and tuple(ids) != entry.ids:
                entry.ids = tuple(ids)
            self._by_text.move_to_end(text)
            if kv is not None:
                self._set_kv(entry, kv, position)
                entry.origin = origin
            if key is not None:
                self._name(entry, key)
            self._evict(keep=entry)
            return entry

    def set_kv(self, entry: SegmentEntry, kv: KVBlock, position: int = 0) -> None:
        """Attach (canonical) KV to an entry (counted against the budget if it is stored)."""
        with self._lock:
            if self._by_text.get(entry.text) is entry:
                self._set_kv(entry, kv, position)
                self._evict(keep=entry)
            else:
                entry.kv = kv
                entry.position = position

    def name(self, key: str, text: str) -> SegmentEntry | None:
        """Give the entry holding ``text`` the name ``key`` too; ``None`` if there is none."""
        with self._lock:
            entry = self._by_text.get(text)
            if entry is not None:
                self._name(entry, key)
            return entry

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._by_text.clear()
            self._by_key.clear()
            self._bytes = 0

    # ----------------------------------------------------------------------------- internals

    def _set_kv(self, entry: SegmentEntry, kv: KVBlock, position: int) -> None:
        if entry.kv is not None:
            self._bytes -= entry.kv.nbytes
        entry.kv = kv
        entry.position = position
        self._bytes += kv.nbytes

    def _name(self, entry: SegmentEntry, key: str) -> None:
        old = self._by_key.get(key)
        if old is not None and old is not entry:
            old.keys.discard(key)
        self._by_key[key] = entry
        entry.keys.add(key)
        entry.name = key

    def _evict(self, keep: SegmentEntry) -> None:
        while (self._bytes > self.budget_bytes or len(self._by_text) > self.max_entries) and len(
            self._by_text
        ) > 1:
            text, victim = next(iter(self._by_text.items()))
            if victim is keep:
                self._by_text.move_to_end(text)
                continue
            del self._by_text[text]
            for key in victim.keys:
                if self._by_key.get(key) is victim:
                    del self._by_key[key]
            if victim.kv is not None:
                self._bytes -= victim.kv.nbytes
            self.evictions += 1
