"""One-token attention of grouped-query models with the query heads packed per key/value head.

For one query token and no mask, transformers' ``sdpa`` calls SDPA with ``enable_gqa``, which on
CPU takes a slow path: measured here, 0.8 ms per layer at 1,000 cached tokens. The same attention
with the query heads of each key/value head laid out as that head's query rows (transformers' own
``pack_gqa``, which it runs when a mask is present) takes 0.1 ms, so a decode step at 1,000 tokens
costs 19 ms instead of 40. The two layouts round apart in a few low bits now and then, so the
packed one is registered as an attention implementation of its own, :data:`PACKED_SDPA`: a model
switched to it runs the packed layout in its own forward too, and the lean decode step
(:mod:`._lean`) stays bit for bit that forward. Every other pass (prefill, a mask, a model
without grouped queries) runs transformers' ``sdpa`` unchanged.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["PACKED_SDPA", "packed_decode", "use_packed_attention"]

PACKED_SDPA = "counterpoint_packed_sdpa"
"""The attention implementation name a model runs after :func:`use_packed_attention`."""

_ARCHITECTURES = frozenset({"LlamaForCausalLM"})
"""Models switched by :func:`use_packed_attention` (those the lean decode step covers)."""
_REGISTER_LOCK = threading.Lock()
_registered = False


def packed_decode(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None
) -> torch.Tensor:
    """Attention of one query token per sequence (``query`` ``[b, heads, 1, d]``) over ``key``
    and ``value`` (``[b, kv_heads, n, d]``), each key/value head's query heads as its rows.
    Returns ``[b, heads, 1, d]``."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    rows = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    out = F.scaled_dot_product_attention(
        rows, key, value, attn_mask=None, dropout_p=0.0, scale=scale, is_causal=False
    )
    return out.reshape(batch, heads, 1, value.shape[-1])


def _packed_sdpa_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa`` attention, but one-token passes without a mask run packed."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    plain = (
        query.shape[2] == 1
        and attention_mask is None
        and groups > 1
        and dropout == 0.0
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not kwargs.get("output_attentions", False)
    )
    if not plain:
        out: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
        return out
    return packed_decode(query, key, value, scaling).transpose(1, 2).contiguous(), None


def _register() -> None:
    global _registered
    with _REGISTER_LOCK:
        if _registered:
            return
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

        AttentionInterface.register(PACKED_SDPA, _packed_sdpa_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)  # the masks of sdpa
        _registered = True


def use_packed_attention(model: Any) -> bool:
    """Switch a Llama-architecture model with grouped queries that runs transformers' ``sdpa``
    to :data:`PACKED_SDPA`; True if it runs it now. Any other model is left as it is: some
    architectures branch on the name ``"sdpa"`` itself (sparse or sliced attention)."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current == PACKED_SDPA:
        return True
    if current != "sdpa" or type(model).__name__ not in _ARCHITECTURES:
        return False
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None)
    if not isinstance(heads, int) or not isinstance(kv_heads, int) or heads == kv_heads:
        return False
    if not hasattr(model, "set_attn_implementation"):
        return False
    _register()
    model.set_attn_implementation(PACKED_SDPA)
    return getattr(model.config, "_attn_implementation", None) == PACKED_SDPA
