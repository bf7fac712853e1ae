"""RoPE re-rotation: move cached keys from one position to another.

Llama-style models cache keys *after* the rotary embedding, ``k_p = R(p)·k``. Rotations compose,
``R(q)·R(p)⁻¹ = R(q − p)``, so a key cached at position ``p`` becomes the key the model would have
cached at ``q`` by rotating it by ``δ = q − p``::

    k_q = k_p·cos(δθ) + rotate_half(k_p)·sin(δθ)

Only keys move; values carry no position. The rotation runs in float32 and is cast back to the
cache's dtype. Frequencies come from the model's own rotary module (``inv_freq``), so linear,
Llama-3 and YaRN scaling work; RoPE variants whose frequencies depend on the sequence length
(``dynamic``, ``longrope``) cannot be re-rotated and are refused.
"""

from __future__ import annotations

from typing import Any

import torch

from counterpoint.errors import ConfigError

__all__ = ["Rotary", "rotate_half"]

_UNSUPPORTED = frozenset({"dynamic", "longrope"})


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[-x2, x1]`` for ``x = [x1, x2]`` split in halves on the last axis (the HF convention)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Rotary:
    """Re-rotates cached keys of one model by position deltas."""

    def __init__(self, inv_freq: torch.Tensor, head_dim: int) -> None:
        inv = inv_freq.detach().to(torch.float32).flatten()
        if 2 * inv.numel() != head_dim:
            raise ConfigError(
                f"the model rotates {2 * inv.numel()} of its {head_dim} key channels (partial "
                "RoPE): KV re-rotation supports full-width RoPE only; use policy 'prefix' or "
                "'dense' with this model"
            )
        self.inv_freq = inv
        self.head_dim = head_dim

    @classmethod
    def of(cls, hf_model: Any) -> Rotary:
        """The rotary embedding of a transformers causal LM (Llama, Qwen2, Mistral, ...)."""
        config = hf_model.config
        params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
        rope_type = str((params or {}).get("rope_type", (params or {}).get("type", "default")))
        if rope_type in _UNSUPPORTED:
            raise ConfigError(
                f"the model's RoPE type {rope_type!r} changes its frequencies with the sequence "
                "length, so cached keys cannot be re-rotated: use policy 'prefix' or 'dense'"
            )
        inner = getattr(hf_model, "model", hf_model)
        rotary = getattr(inner, "rotary_emb", None)
        inv_freq = getattr(rotary, "inv_freq", None)
        if not isinstance(inv_freq, torch.Tensor):
            raise ConfigError(
                f"cannot find the rotary embedding of {type(hf_model).__name__} (no "
                "model.rotary_emb.inv_freq): KV re-rotation needs a RoPE model; use policy "
                "'prefix' or 'dense'"
            )
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        return cls(inv_freq, int(head_dim))

    def cos_sin(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of ``delta·θ`` for 1-D position deltas, shaped ``[len(delta), head_dim]``."""
        # float64 angles: at thousands of positions float32 angles are off by ~1e-4 rad.
        angles = delta.to(torch.float64)[:, None] * self.inv_freq.to(torch.float64)[None, :]
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(torch.float32), emb.sin().to(torch.float32)

    def rotate(self, keys: torch.Tensor, delta: int | torch.Tensor) -> torch.Tensor:
        """Keys ``[..., tokens, head_dim]`` moved by ``delta`` positions (one int, or per token).

        Computed in float32 and returned in the keys' dtype; ``delta == 0`` returns ``keys``.
        """
        tokens = keys.shape[-2]
        if isinstance(delta, int):
            if delta == 0 or tokens == 0:
                return keys
            steps = torch.full((tokens,), delta, dtype=torch.float32)
        else:
            steps = delta.to(torch.float32)
            if steps.numel() != tokens:
                raise ValueError(f"{steps.numel()} deltas for {tokens} keys")
        cos, sin = self.cos_sin(steps)
        k = keys.to(torch.float32)
        rotated = k * cos + rotate_half(k) * sin
        return rotated.to(keys.dtype)
