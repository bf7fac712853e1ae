"""The exact prefix cache: radix-tree matching, edge splits, byte budget and LRU eviction."""

from __future__ import annotations

import threading

import pytest
import torch

from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv.prefix_cache import PrefixCache

LAYERS, HEADS, DIM = 2, 1, 4
TOKEN_BYTES = LAYERS * HEADS * DIM * 4 * 2  # keys and values, float32


def kv_for(ids: list[int]) -> KVBlock:
    """A block whose keys encode (token id, position) so that any mix-up shows."""
    n = len(ids)
    base = torch.tensor(ids, dtype=torch.float32)[:, None] * 100 + torch.arange(n)[:, None]
    keys = base.repeat(LAYERS, HEADS, 1, DIM).reshape(LAYERS, HEADS, n, DIM)
    return KVBlock(keys, -keys)


def test_match_returns_the_longest_cached_prefix_and_its_exact_kv() -> None:
    cache = PrefixCache()
    assert cache.insert([1, 2, 3, 4], kv_for([1, 2, 3, 4])) == 4
    match = cache.match([1, 2, 3, 9, 9])
    assert match.length == 3
    assert match.kv is not None
    assert torch.equal(match.kv.keys, kv_for([1, 2, 3]).keys)
    assert torch.equal(match.kv.values, kv_for([1, 2, 3]).values)
    assert cache.match([7, 1, 2]).length == 0
    assert cache.match([7]).kv is None
    assert cache.hits == 1 and cache.lookups == 3


def test_branching_inserts_split_edges_and_share_the_common_prefix() -> None:
    cache = PrefixCache()
    cache.insert([1, 2, 3, 4], kv_for([1, 2, 3, 4]))
    assert cache.insert([1, 2, 5], kv_for([1, 2, 5])) == 1  # only the new token is stored
    assert cache.tokens == 5
    assert cache.nbytes == 5 * TOKEN_BYTES
    assert len(cache) == 3  # [1, 2] -> [3, 4] and [5]
    for ids in ([1, 2, 3, 4], [1, 2, 5]):
        match = cache.match(ids)
        assert match.length == len(ids)
        assert match.kv is not None and torch.equal(match.kv.keys, kv_for(ids).keys)
    assert cache.insert([1, 2, 3], kv_for([1, 2, 3])) == 0  # already there
    assert cache.match_length([1, 2, 3, 4, 6]) == 4


def test_insert_with_an_offset_appends_to_a_cached_prefix() -> None:
    cache = PrefixCache()
    cache.insert([1, 2], kv_for([1, 2]))
    full = kv_for([1, 2, 3, 4])
    assert cache.insert([1, 2, 3, 4], full.slice(2), start=2) == 2
    match = cache.match([1, 2, 3, 4])
    assert match.kv is not None and torch.equal(match.kv.keys, full.keys)
    # the first `start` ids must be cached already, else nothing happens
    assert cache.insert([8, 9, 10], kv_for([8, 9, 10]).slice(2), start=2) == 0
    with pytest.raises(ValueError):
        cache.insert([1, 2, 3], kv_for([1, 2]))


def test_budget_evicts_least_recently_used_leaves() -> None:
    cache = PrefixCache(budget_bytes=6 * TOKEN_BYTES)
    cache.insert([1, 2, 3], kv_for([1, 2, 3]))
    cache.insert([4, 5, 6], kv_for([4, 5, 6]))
    cache.match([1, 2, 3])  # [1, 2, 3] is now more recent than [4, 5, 6]
    cache.insert([7, 8, 9], kv_for([7, 8, 9]))
    assert cache.nbytes <= 6 * TOKEN_BYTES
    assert cache.match([4, 5, 6]).length == 0
    assert cache.match([1, 2, 3]).length == 3
    assert cache.match([7, 8, 9]).length == 3
    assert cache.evictions == 1


def test_eviction_removes_leaves_before_their_shared_parents() -> None:
    cache = PrefixCache(budget_bytes=5 * TOKEN_BYTES)
    cache.insert([1, 2, 3, 4], kv_for([1, 2, 3, 4]))
    cache.insert([1, 2, 5, 6], kv_for([1, 2, 5, 6]))  # 6 tokens: evict the older leaf [3, 4]
    assert cache.match([1, 2, 3, 4]).length == 2
    assert cache.match([1, 2, 5, 6]).length == 4
    assert cache.nbytes == 4 * TOKEN_BYTES
    cache.clear()
    assert cache.nbytes == 0 and cache.match([1]).length == 0


def test_concurrent_inserts_and_matches_stay_consistent() -> None:
    cache = PrefixCache(budget_bytes=40 * TOKEN_BYTES)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(50):
                ids = [seed, i % 7, i % 3, i]
                cache.insert(ids, kv_for(ids))
                match = cache.match(ids)
                if match.kv is not None:
                    assert torch.equal(match.kv.keys, kv_for(ids[: match.length]).keys)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.nbytes <= 40 * TOKEN_BYTES
