"""Exact token-prefix reuse: a radix tree of KV blocks keyed by token ids.

Sessions on one model that start with the same tokens (a system prompt, a tool list, a shared
question) share the KV of that prefix: :meth:`PrefixCache.match` returns the KV of the longest
cached prefix of a prompt, :meth:`PrefixCache.insert` adds the KV of a computed context. Keys in a
KV cache depend on absolute positions, and a prefix always starts at position 0, so the blocks are
reused as they are, with no rotation: this reuse is exact.

Each edge of the tree holds a run of token ids and the KV of those tokens. Memory is bounded by a
byte budget; when an insertion goes past it, leaves are evicted least recently used first (a
match or an insertion touches every node on its path).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from counterpoint.runtime.kv._kv import KVBlock

__all__ = ["PrefixCache", "PrefixMatch"]


@dataclass(eq=False)
class _Node:
    tokens: tuple[int, ...]
    kv: KVBlock | None
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)
    used: int = 0


@dataclass(frozen=True)
class PrefixMatch:
    """The longest cached prefix of a query: its length and KV (``None`` when empty)."""

    length: int
    kv: KVBlock | None


class PrefixCache:
    """A radix tree of token ids to KV blocks, with a byte budget and LRU eviction of leaves.

    Thread-safe. The blocks it returns are fresh tensors: callers may hand them to a decoder,
    which grows its own copies.
    """

    def __init__(self, budget_bytes: int = 512 * 2**20) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self.budget_bytes = budget_bytes
        self._root = _Node((), None, None)
        self._bytes = 0
        self._tokens = 0
        self._tick = 0
        self._lock = threading.Lock()
        self.hits = 0
        """Lookups that reused at least one token."""
        self.lookups = 0
        """Lookups made."""
        self.evictions = 0
        """Nodes evicted to stay within the budget."""

    # ----------------------------------------------------------------------------- queries

    @property
    def nbytes(self) -> int:
        """Bytes of KV held."""
        return self._bytes

    @property
    def tokens(self) -> int:
        """Tokens held (each shared prefix counted once)."""
        return self._tokens

    def __len__(self) -> int:
        """Number of edges (nodes other than the root)."""
        with self._lock:
            return sum(1 for _ in self._nodes())

    def match(self, ids: Sequence[int]) -> PrefixMatch:
        """The KV of the longest cached prefix of ``ids``."""
        with self._lock:
            self.lookups += 1
            self._tick += 1
            node, at, parts = self._root, 0, []
            while at < len(ids):
                child = node.children.get(ids[at])
                if child is None:
                    break
                same = _common(child.tokens, ids, at)
                child.used = self._tick
                if child.kv is not None:
                    parts.append(child.kv.slice(0, same))
                at += same
                if same < len(child.tokens):
                    break
                node = child
            if at == 0:
                return PrefixMatch(0, None)
            self.hits += 1
            return PrefixMatch(at, KVBlock.cat(parts).clone())

    # ----------------------------------------------------------------------------- updates

    def match_length(self, ids: Sequence[int]) -> int:
        """How many leading ``ids`` are cached (no KV is gathered, nothing is touched)."""
        with self._lock:
            node, at = self._root, 0
            while at < len(ids):
                child = node.children.get(ids[at])
                if child is None:
                    break
                same = _common(child.tokens, ids, at)
                at += same
                if same < len(child.tokens):
                    break
                node = child
            return at

    def insert(self, ids: Sequence[int], kv: KVBlock, *, start: int = 0) -> int:
        """Cache the KV of ``ids``; ``kv`` holds that of ``ids[start:]`` (positions from ``start``).

        With ``start > 0`` the first ``start`` ids must already be cached (see
        :meth:`match_length`), else nothing is inserted. Returns how many tokens were new.
        Evicts least recently used leaves past the budget.
        """
        if kv.length < len(ids) - start:
            raise ValueError(
                f"the KV covers {kv.length} tokens, fewer than the {len(ids) - start} ids"
            )
        with self._lock:
            self._tick += 1
            node, at = self._root, 0
            while at < len(ids):
                child = node.children.get(ids[at])
                if child is None:
                    break
                same = _common(child.tokens, ids, at)
                if same < len(child.tokens):
                    child = self._split(child, same)
                child.used = self._tick
                node, at = child, at + same
            if at < start:
                return 0
            added = len(ids) - at
            if added:
                block = kv.slice(at - start, len(ids) - start).clone()
                leaf = _Node(tuple(ids[at:]), block, node, used=self._tick)
                node.children[ids[at]] = leaf
                self._bytes += block.nbytes
                self._tokens += added
            self._evict()
            return added

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._root = _Node((), None, None)
            self._bytes = 0
            self._tokens = 0

    # ----------------------------------------------------------------------------- internals

    def _split(self, child: _Node, at: int) -> _Node:
        """Split ``child``'s edge after ``at`` tokens; return the new upper node."""
        parent = child.parent
        assert parent is not None and child.kv is not None
        upper = _Node(child.tokens[:at], child.kv.slice(0, at).clone(), parent, used=child.used)
        lower_kv = child.kv.slice(at).clone()
        child.tokens = child.tokens[at:]
        child.kv = lower_kv
        child.parent = upper
        upper.children[child.tokens[0]] = child
        parent.children[upper.tokens[0]] = upper
        return upper

    def _nodes(self) -> list[_Node]:
        out: list[_Node] = []
        stack = list(self._root.children.values())
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children.values())
        return out

    def _evict(self) -> None:
        while self._bytes > self.budget_bytes:
            leaves = [n for n in self._nodes() if not n.children]
            if not leaves:
                return
            victim = min(leaves, key=lambda n: n.used)
            parent = victim.parent
            assert parent is not None and victim.kv is not None
            del parent.children[victim.tokens[0]]
            self._bytes -= victim.kv.nbytes
            self._tokens -= len(victim.tokens)
            self.evictions += 1


def _common(edge: tuple[int, ...], ids: Sequence[int], at: int) -> int:
    """Length of the common prefix of ``edge`` and ``ids[at:]``."""
    n = min(len(edge), len(ids) - at)
    i = 0
    while i < n and edge[i] == ids[at + i]:
        i += 1
    return i
