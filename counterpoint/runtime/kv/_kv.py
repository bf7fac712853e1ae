"""KV blocks: the keys and values of a run of tokens, every layer stacked in one tensor.

A :class:`KVBlock` holds ``keys`` and ``values`` shaped ``[layers, kv_heads, tokens, head_dim]``
(batch size 1, the batch dimension dropped). It is how the prefix cache, the segment store and the
anchor pool keep KV state, and it converts to and from transformers' layer-based ``DynamicCache``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

__all__ = ["KVBlock"]


@dataclass(frozen=True)
class KVBlock:
    """Keys and values of ``length`` consecutive tokens, all layers: ``[L, H, T, D]`` each."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def length(self) -> int:
        """Number of tokens."""
        return int(self.keys.shape[-2])

    @property
    def nbytes(self) -> int:
        """Bytes held by the two tensors."""
        return int(self.keys.numel() * self.keys.element_size()) * 2

    def slice(self, start: int, end: int | None = None) -> KVBlock:
        """Tokens ``start:end`` (a view)."""
        return KVBlock(self.keys[:, :, start:end], self.values[:, :, start:end])

    def clone(self) -> KVBlock:
        """A copy that owns compact storage (slices keep their whole base tensor alive)."""
        return KVBlock(self.keys.clone(), self.values.clone())

    def to(self, dtype: torch.dtype) -> KVBlock:
        """The block in ``dtype`` (itself when it already is)."""
        if self.keys.dtype == dtype:
            return self
        return KVBlock(self.keys.to(dtype), self.values.to(dtype))

    @staticmethod
    def cat(blocks: Sequence[KVBlock]) -> KVBlock:
        """Concatenate blocks along the token axis."""
        if len(blocks) == 1:
            return blocks[0]
        return KVBlock(
            torch.cat([b.keys for b in blocks], dim=2), torch.cat([b.values for b in blocks], dim=2)
        )

    @staticmethod
    def from_cache(cache: DynamicCache, start: int = 0, end: int | None = None) -> KVBlock:
        """Tokens ``start:end`` of a (batch-1) ``DynamicCache``, copied into one block."""
        layers: list[Any] = list(cache.layers)
        keys = torch.stack([layer.keys[0, :, start:end] for layer in layers])
        values = torch.stack([layer.values[0, :, start:end] for layer in layers])
        return KVBlock(keys, values)

    def to_cache(self, config: Any) -> DynamicCache:
        """A new ``DynamicCache`` for a model with ``config`` holding this block's tokens."""
        data = [(self.keys[i][None], self.values[i][None]) for i in range(self.keys.shape[0])]
        return DynamicCache(data, config=config)
