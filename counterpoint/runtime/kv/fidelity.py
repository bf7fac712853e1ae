"""Fidelity of reused KV against a dense prefill.

Two measures, both on the same token sequence (teacher forcing, one forward pass each):

- greedy agreement: would greedy decoding produce the same first ``N`` tokens? Decoding is
  greedy on both sides iff at every one of the first ``N`` positions the reference's argmax equals
  the candidate's, given the same preceding tokens; :attr:`Fidelity.identical` says whether all
  ``N`` agree and :attr:`Fidelity.agreed` how many leading positions do.
- the KL divergence ``KL(p_dense ‖ p_reuse)`` of the next-token distributions, per position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from counterpoint.runtime.backends.transformers import forward_logits as backend_forward_logits

__all__ = ["Fidelity", "compare_logits", "forward_logits"]


@dataclass(frozen=True)
class Fidelity:
    """How closely a candidate's next-token distributions follow a reference's."""

    tokens: int
    """Positions compared."""
    agreed: int
    """Leading positions where both argmaxes agree (greedy decoding would match this far)."""
    token_agreement: float
    """Fraction of all compared positions where the argmaxes agree."""
    mean_kl: float
    """Mean over positions of KL(reference ‖ candidate), in nats."""
    first_kl: float
    """KL at the first position (the distribution of the first generated token)."""

    @property
    def identical(self) -> bool:
        """True if greedy decoding agrees on every compared position."""
        return self.agreed == self.tokens

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view for traces and reports."""
        return {
            "tokens": self.tokens,
            "agreed": self.agreed,
            "identical": self.identical,
            "token_agreement": self.token_agreement,
            "mean_kl": self.mean_kl,
            "first_kl": self.first_kl,
        }


def compare_logits(reference: torch.Tensor, candidate: torch.Tensor) -> Fidelity:
    """Compare ``[N, vocab]`` logits position by position (both given the same tokens)."""
    if reference.shape != candidate.shape or reference.ndim != 2 or reference.shape[0] == 0:
        raise ValueError(
            f"need two [N, vocab] logits of the same shape, got {tuple(reference.shape)} and "
            f"{tuple(candidate.shape)}"
        )
    ref = torch.log_softmax(reference.float(), dim=-1)
    cand = torch.log_softmax(candidate.float(), dim=-1)
    kl = (ref.exp() * (ref - cand)).sum(dim=-1).clamp_min(0.0)
    same = ref.argmax(dim=-1) == cand.argmax(dim=-1)
    mismatches = (~same).nonzero().flatten()
    agreed = int(mismatches[0]) if mismatches.numel() else int(same.numel())
    return Fidelity(
        tokens=int(same.numel()),
        agreed=agreed,
        token_agreement=float(same.float().mean()),
        mean_kl=float(kl.mean()),
        first_kl=float(kl[0]),
    )


def forward_logits(
    hf_model: Any,
    ids: Sequence[int],
    keep: int,
    cache: DynamicCache | None = None,
    *,
    lean: bool = True,
) -> torch.Tensor:
    """Feed ``ids`` (onto ``cache``, or from scratch) and return the last ``keep`` (>= 1)
    logits, in fp32 (the backend's
    :func:`~counterpoint.runtime.backends.transformers.forward_logits`; ``lean`` as there).

    Runs a forward pass: call it in the model's worker thread. ``cache`` grows.
    """
    past = cache if cache is not None else DynamicCache(config=hf_model.config)
    return backend_forward_logits(hf_model, ids, keep, past, lean=lean).float()
