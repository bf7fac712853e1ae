"""Selective recompute of reused KV (after CacheBlend, EuroSys'25).

Reused KV was computed in another context: each token's keys and values miss what the new
context before it would have changed. CacheBlend recomputes the few tokens whose KV deviates most
and keeps the rest. :func:`blend` does it on a Llama-style decoder (SmolLM2, Llama, Qwen2,
Mistral: pre-norm layers with ``input_layernorm``, ``self_attn`` with ``q/k/v/o_proj``,
``post_attention_layernorm`` and ``mlp``):

1. every candidate token (the reused range) goes through the first ``probe_layers`` layers (2),
   attending to the assembled cache with its own fresh keys and values, which replace the reused
   ones there; the distance between its fresh and its reused KV in the last probe layer is its
   deviation (the first layer's KV depends on the token and its position only: it never
   deviates);
2. the ``ratio`` share of candidates with the largest deviation goes on through every other layer,
   each layer's fresh KV replacing the reused KV at those positions, the others kept.

With ``ratio=1`` every candidate is recomputed and the result is the dense prefill's KV (the tests
check it); with a small ratio it costs about ``probe_layers/layers + ratio`` of a dense prefill
of the candidates. Runs in the model's worker thread, under ``torch.inference_mode``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from counterpoint.errors import ConfigError
from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv.rope import rotate_half

__all__ = ["BlendReport", "blend", "supports_blend"]

_PARTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
_PROJ = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class BlendReport:
    """What one :func:`blend` did: candidates seen, positions recomputed, their deviations."""

    candidates: int
    recomputed: tuple[int, ...]
    max_deviation: float
    mean_deviation: float


def _decoder(hf: Any) -> Any:
    inner = getattr(hf, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
        return None
    return inner


def supports_blend(hf: Any) -> bool:
    """Whether ``hf`` has the Llama-style layout :func:`blend` works on."""
    inner = _decoder(hf)
    if inner is None or not hasattr(inner, "rotary_emb") or not len(inner.layers):
        return False
    layer = inner.layers[0]
    if not all(hasattr(layer, part) for part in _PARTS):
        return False
    return all(hasattr(layer.self_attn, proj) for proj in _PROJ)


def _rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> Any:
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def _attention(
    attn: Any,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One attention block for the tokens at ``positions`` (hidden ``h``, ``[1, n, d]``) over
    the layer's whole cache (``keys``/``values`` ``[1, H, T, D]``), into which their fresh KV is
    written first. Returns the block's output and the tokens' fresh (rotated) keys and values."""
    n = h.shape[1]
    head_dim = int(getattr(attn, "head_dim", keys.shape[-1]))
    q = attn.q_proj(h).view(1, n, -1, head_dim).transpose(1, 2)
    k = attn.k_proj(h).view(1, n, -1, head_dim).transpose(1, 2)
    v = attn.v_proj(h).view(1, n, -1, head_dim).transpose(1, 2)
    q, k = _rope(q, k, cos, sin)
    keys[:, :, positions] = k.to(keys.dtype)  # the layer's cache, written in place
    values[:, :, positions] = v.to(values.dtype)
    scale = getattr(attn, "scaling", None)
    out = F.scaled_dot_product_attention(
        q,
        keys.to(q.dtype),
        values.to(q.dtype),
        attn_mask=mask,
        scale=scale,
        enable_gqa=q.shape[1] != keys.shape[1],
    )
    out = out.transpose(1, 2).reshape(1, n, -1)
    return attn.o_proj(out), k, v


def _layer(
    layer: Any,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, k, v = _attention(
        layer.self_attn, layer.input_layernorm(h), cos, sin, keys, values, positions, mask
    )
    h = h + out
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h, k, v


def _distance(fresh: torch.Tensor, reused: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance per token between ``[H, n, D]`` tensors."""
    return (fresh.to(torch.float32) - reused.to(torch.float32)).pow(2).sum(dim=(0, 2))


def _mask(positions: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    keys = torch.arange(length)
    allowed = keys[None, :] <= positions[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def blend(
    hf: Any,
    ids: Sequence[int],
    kv: KVBlock,
    candidates: Sequence[int],
    ratio: float,
    *,
    keep: Sequence[int] = (),
    probe_layers: int = 2,
) -> tuple[KVBlock, BlendReport]:
    """``kv`` (the assembled cache of ``ids``) with the most deviating ``ratio`` share of
    ``candidates`` recomputed through every layer (see the module doc); ``keep`` positions are
    always recomputed. Returns the new block (``kv`` is left as it was) and a report."""
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"blend ratio must be within [0, 1], got {ratio}")
    if len(ids) != kv.length:
        raise ConfigError(f"blend: {len(ids)} ids for a cache of {kv.length} tokens")
    inner = _decoder(hf)
    if inner is None or not supports_blend(hf):
        raise ConfigError(
            f"selective recompute needs a Llama-style decoder; {type(hf).__name__} is not one"
        )
    cand = sorted({int(p) for p in candidates if 0 <= int(p) < kv.length})
    if not cand:
        return kv, BlendReport(0, (), 0.0, 0.0)
    with torch.inference_mode():
        keys = kv.keys.clone()
        values = kv.values.clone()
        dtype = next(hf.parameters()).dtype
        layers = list(inner.layers)
        probe = max(1, min(probe_layers, len(layers)))
        pos = torch.tensor(cand, dtype=torch.long)
        h = inner.embed_tokens(torch.tensor([[ids[p] for p in cand]], dtype=torch.long))
        cos, sin = inner.rotary_emb(h, pos[None])
        mask = _mask(pos, kv.length, dtype)
        deviation = torch.zeros(len(cand))
        for n in range(probe):  # every candidate, through the probe layers
            old_k, old_v = keys[n][:, pos], values[n][:, pos]  # copies (advanced indexing)
            h, k, v = _layer(layers[n], h, cos, sin, keys[n : n + 1], values[n : n + 1], pos, mask)
            if n == probe - 1:
                deviation = _distance(k[0], old_k) + _distance(v[0], old_v)
        forced = {int(p) for p in keep}
        budget = min(len(cand), math.ceil(ratio * len(cand)))
        order = torch.argsort(deviation, descending=True).tolist()
        chosen = set(order[:budget]) | {i for i, p in enumerate(cand) if p in forced}
        picked = sorted(chosen)
        if picked and probe < len(layers):
            index = torch.tensor(picked, dtype=torch.long)
            sub = pos[index]
            h = h[:, index]
            cos, sin = cos[:, index], sin[:, index]
            mask = _mask(sub, kv.length, dtype)
            for n in range(probe, len(layers)):
                h, _, _ = _layer(
                    layers[n], h, cos, sin, keys[n : n + 1], values[n : n + 1], sub, mask
                )
        dev = deviation.sqrt()
        report = BlendReport(
            candidates=len(cand),
            recomputed=tuple(cand[i] for i in picked),
            max_deviation=float(dev.max()),
            mean_deviation=float(dev.mean()),
        )
    return KVBlock(keys, values), report
