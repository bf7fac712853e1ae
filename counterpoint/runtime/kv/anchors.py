"""Anchors and offsets (after KVCOMM, arXiv 2510.12872): correcting reused KV for a new context.

Shared content reused in a new prompt has the wrong KV twice over: its keys sit at the wrong
positions (fixed exactly by re-rotation) and every layer above the first saw a different preceding
context (not fixable without recomputing). KVCOMM estimates the second error from *anchors*:
contents seen before for which the deviation was measured.

For each placeholder (a *slot*: the user's question, agent X's output) the :class:`AnchorPool`
keeps up to ``max_anchors`` anchors. An anchor is a content's base KV (computed where it was
produced) and, per consuming context (an agent's template and the content's place in it), the
deviations ``real − base`` of the content's KV and of the template segment that follows it, as
measured by a dense prefill in that context. Deviations are kept *canonical*: rotated back to the
positions the base was stored at, so unlike KVCOMM's they need no approximation when the content
moves (``R(p)·a − R(p)·b = R(p)·(a − b)``).

For new content the deviations are interpolated over the anchors (:func:`placeholder_weights`,
:func:`prefix_weights`), and the pool decides online whether new content is *shareable* (reuse it
with estimated offsets) or must become an anchor itself (consumers prefill densely and record its
deviations): :meth:`AnchorPool.decide`, KVCOMM's entropy rule. Layer 0 is never corrected: its KV
depends on the token alone.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from counterpoint.runtime.kv._kv import KVBlock

__all__ = [
    "Anchor",
    "AnchorPool",
    "Decision",
    "Deviation",
    "Offsets",
    "anchor_entropy",
    "blend_placeholder",
    "blend_prefix",
    "placeholder_weights",
    "prefix_weights",
]

Reason = Literal["warm-up", "entropy", "shareable", "new-context", "evicted"]

# ---------------------------------------------------------------------------------- the math
# Shapes: a content's base keys or values are [layers, heads, L, dim]; each anchor's are
# [layers, heads, La, dim]. KVCOMM only uses anchors at least as long as the content (La >= L);
# here a shorter anchor takes part for the tokens it has (generated answers differ in length by a
# token or two, and an anchor pool that ignores every shorter anchor often has none left).


def placeholder_weights(
    base: torch.Tensor, anchors: Sequence[torch.Tensor], temperature: float = 1.0
) -> torch.Tensor:
    """Per-token anchor weights for a content's own KV: ``[N, L]``.

    ``w[a, t] = softmax_a(−mean_{layer, head, dim} |base[t] − anchor_a[t]| / temperature)`` over
    the anchors that have a token ``t`` (a token no anchor has gets all-zero weights).
    """
    length = base.shape[-2]
    rows = []
    for anchor in anchors:
        m = min(length, anchor.shape[-2])
        distance = torch.full((length,), float("inf"))
        diff = (base[..., :m, :].float() - anchor[..., :m, :].float()).abs()
        distance[:m] = diff.mean(dim=(0, 1, 3))
        rows.append(distance)
    weights = torch.softmax(-torch.stack(rows) / temperature, dim=0)
    return torch.nan_to_num(weights, nan=0.0)


def prefix_weights(
    base: torch.Tensor, anchors: Sequence[torch.Tensor], temperature: float = 1.0
) -> torch.Tensor:
    """Per-channel weights for the template segment after a content: ``[N, layers, heads, dim]``.

    ``w[a, l, h, d] = softmax_a(−‖base[l, h, -m:, d] − anchor_a[l, h, -m:, d]‖₂·√(L/m) / T)``:
    the distance runs over the last ``m = min(L, La)`` tokens (those nearest the segment that
    follows), scaled to ``L`` tokens.
    """
    length = base.shape[-2]
    rows = []
    for anchor in anchors:
        m = min(length, anchor.shape[-2])
        diff = base[..., length - m :, :].float() - anchor[..., anchor.shape[-2] - m :, :].float()
        rows.append(diff.norm(p=2, dim=-2) * math.sqrt(length / m))
    return torch.softmax(-torch.stack(rows) / temperature, dim=0)


def blend_placeholder(weights: torch.Tensor, deltas: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ_a w[a, t] · Δ_a[..., t, :]`` over the tokens of ``weights``: ``[layers, heads, L, dim]``.

    A delta shorter than ``L`` contributes nothing past its end (its weights there are 0).
    """
    if not deltas:
        raise ValueError("no anchors to blend")
    length = weights.shape[1]
    first = deltas[0]
    total = torch.zeros((*first.shape[:-2], length, first.shape[-1]), dtype=torch.float32)
    for w, delta in zip(weights, deltas, strict=True):
        m = min(length, delta.shape[-2])
        total[..., :m, :].addcmul_(w[None, None, :m, None], delta[..., :m, :].float())
    return total


def blend_prefix(weights: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """``Σ_a w[a, l, h, d] · Δ_a[l, h, t, d]``: ``[layers, heads, P, dim]``."""
    return (weights[:, :, :, None, :] * deltas.float()).sum(dim=0)


def anchor_entropy(
    candidate: torch.Tensor, anchors: Sequence[torch.Tensor], eps: float = 1e-40
) -> tuple[torch.Tensor, float]:
    """KVCOMM's similarity distribution of a candidate over anchors and its entropy (bits).

    ``p = softmax(−‖V_cand − V_a‖₂)`` over the anchors, the norm over every layer, head,
    channel and the first ``m = min(L, La)`` tokens (scaled to ``L`` tokens); returns
    ``(p, H(p))``.
    """
    length = candidate.shape[-2]
    distances = []
    for anchor in anchors:
        m = min(length, anchor.shape[-2])
        diff = candidate[..., :m, :].float() - anchor[..., :m, :].float()
        distances.append(diff.norm(p=2) * math.sqrt(length / m))
    probs = torch.softmax(-torch.stack(distances), dim=0)
    entropy = float(-(probs * (probs + eps).log2()).sum())
    return probs, entropy


# ---------------------------------------------------------------------------------- the pool


@dataclass(frozen=True)
class Deviation:
    """Measured canonical deviations ``real − base`` in one context.

    ``content`` covers the content's tokens, ``following`` the template segment after it (it may
    hold no tokens).
    """

    content: KVBlock
    following: KVBlock


@dataclass(eq=False)
class Anchor:
    """A content whose deviations were measured: its base KV and one deviation per context."""

    key: str
    base: KVBlock
    serial: int
    deviations: dict[str, Deviation] = field(default_factory=dict)
    uses: int = 0

    @property
    def length(self) -> int:
        """Tokens of the content."""
        return self.base.length


@dataclass(frozen=True)
class Decision:
    """Whether a content must become an anchor (consumers prefill densely) or is shareable."""

    anchor: bool
    reason: Reason
    entropy: float | None = None
    threshold: float | None = None
    candidates: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view for traces."""
        return {
            "anchor": self.anchor,
            "reason": self.reason,
            "entropy": self.entropy,
            "threshold": self.threshold,
            "candidates": self.candidates,
        }


@dataclass(frozen=True)
class Offsets:
    """Estimated canonical corrections for a content and the template segment after it."""

    content: KVBlock
    following: KVBlock
    anchors: int


@dataclass(frozen=True)
class _Weights:
    serials: tuple[int, ...]
    content_k: torch.Tensor
    content_v: torch.Tensor
    following_k: torch.Tensor
    following_v: torch.Tensor


class AnchorPool:
    """Per-slot anchor pools with KVCOMM's online decision and eviction. Thread-safe.

    Args:
        max_anchors: anchors kept per slot (KVCOMM: 20).
        window: eviction looks at the ``window`` oldest anchors and drops the least used (5).
        gamma: the entropy threshold factor γ: new content whose similarity distribution over
            ``N`` anchors has entropy above ``γ·log2 N`` becomes an anchor (KVCOMM: 0.3).
        temperature: softmax temperature of the interpolation weights (1).
        top_p: a shareable content activates the most similar anchors up to this mass (0.9).
    """

    def __init__(
        self,
        *,
        max_anchors: int = 20,
        window: int = 5,
        gamma: float = 0.3,
        temperature: float = 1.0,
        top_p: float = 0.9,
    ) -> None:
        if max_anchors < 1 or window < 1:
            raise ValueError("max_anchors and window must be >= 1")
        self.max_anchors = max_anchors
        self.window = window
        self.gamma = gamma
        self.temperature = temperature
        self.top_p = top_p
        self._pools: dict[str, list[Anchor]] = {}
        self._decisions: OrderedDict[tuple[str, str], Decision] = OrderedDict()
        self._weights: OrderedDict[tuple[str, str], _Weights] = OrderedDict()
        self._serial = 0
        self._lock = threading.RLock()
        self.evictions = 0
        """Anchors evicted."""

    # ----------------------------------------------------------------------------- queries

    def anchors(self, slot: str) -> list[Anchor]:
        """The anchors of ``slot``, oldest first."""
        with self._lock:
            return list(self._pools.get(slot, ()))

    def anchor(self, slot: str, key: str) -> Anchor | None:
        """The anchor for content ``key`` in ``slot``, if any."""
        with self._lock:
            return next((a for a in self._pools.get(slot, ()) if a.key == key), None)

    def decision(self, slot: str, key: str) -> Decision | None:
        """The decision already taken for ``key`` in ``slot``, if any."""
        with self._lock:
            return self._decisions.get((slot, key))

    def covered(self, slot: str, context: str) -> bool:
        """True if some anchor of ``slot`` has a deviation for ``context``."""
        with self._lock:
            return any(context in a.deviations for a in self._pools.get(slot, ()))

    def needs_record(self, slot: str, key: str, context: str) -> bool:
        """True if ``key`` is an anchor of ``slot`` still missing ``context``'s deviation."""
        with self._lock:
            decision = self._decisions.get((slot, key))
            if decision is None or not decision.anchor:
                return False
            found = self.anchor(slot, key)
            return found is None or context not in found.deviations

    # ----------------------------------------------------------------------------- decisions

    def decide(self, slot: str, key: str, base: Callable[[], KVBlock]) -> Decision:
        """Decide (once per content and slot) whether ``key`` becomes an anchor.

        KVCOMM's ``predict_as_anchor``: with at most one anchor in the slot the content becomes
        an anchor (warm-up). Otherwise ``p`` is the similarity distribution of its base values
        over the ``N`` anchors; entropy above ``γ·log2 N`` means no anchor is clearly close: it
        becomes an anchor. Else it is shareable and the anchors holding the top ``top_p`` of
        ``p`` count one more use. ``base`` is only called when the comparison needs it.
        """
        with self._lock:
            known = self._decisions.get((slot, key))
            if known is not None:
                self._decisions.move_to_end((slot, key))
                return known
            pool = self._pools.get(slot, [])
            if len(pool) <= 1:
                decision = Decision(True, "warm-up", candidates=len(pool))
            else:
                decision = self._by_entropy(base(), pool)
            self._remember((slot, key), decision)
            return decision

    def promote(self, slot: str, key: str) -> Decision:
        """Make ``key`` an anchor because its consuming context has no anchor to learn from."""
        with self._lock:
            decision = Decision(True, "new-context")
            self._remember((slot, key), decision)
            return decision

    def _by_entropy(self, base: KVBlock, available: Sequence[Anchor]) -> Decision:
        probs, entropy = anchor_entropy(base.values, [a.base.values for a in available])
        threshold = self.gamma * math.log2(len(available))
        if entropy > threshold:
            return Decision(True, "entropy", entropy, threshold, len(available))
        # The smallest set of most similar anchors holding top_p of p (a nucleus) counts a use.
        order = torch.argsort(probs, descending=True)
        ranked = probs[order]
        keep = (torch.cumsum(ranked, dim=0) - ranked) < self.top_p
        for i in order[keep].tolist():
            available[i].uses += 1
        return Decision(False, "shareable", entropy, threshold, len(available))

    def _remember(self, at: tuple[str, str], decision: Decision) -> None:
        self._decisions[at] = decision
        self._decisions.move_to_end(at)
        while len(self._decisions) > 16 * self.max_anchors * max(1, len(self._pools)):
            self._decisions.popitem(last=False)

    # ----------------------------------------------------------------------------- recording

    def record(
        self, slot: str, key: str, base: KVBlock, context: str, deviation: Deviation
    ) -> None:
        """Store ``context``'s measured deviation for anchor ``key`` (created on first record)."""
        with self._lock:
            decision = self._decisions.get((slot, key))
            if decision is not None and decision.reason == "evicted":
                return
            found = self.anchor(slot, key)
            if found is None:
                pool = self._pools.setdefault(slot, [])
                if len(pool) >= self.max_anchors:
                    self._evict(slot, pool)
                self._serial += 1
                found = Anchor(key, base, self._serial)
                pool.append(found)
                if decision is None:
                    self._remember((slot, key), Decision(True, "new-context"))
            found.deviations[context] = deviation

    def _evict(self, slot: str, pool: list[Anchor]) -> None:
        """KVCOMM's eviction: among the ``window`` oldest anchors drop the least used."""
        oldest = pool[: self.window]
        victim = min(oldest, key=lambda a: a.uses)  # ties: the oldest (min keeps the first)
        pool.remove(victim)
        self._decisions[(slot, victim.key)] = Decision(False, "evicted")
        self.evictions += 1

    # ----------------------------------------------------------------------------- estimation

    def estimate(
        self, slot: str, key: str, context: str, base: KVBlock, following: int
    ) -> Offsets | None:
        """Interpolated canonical corrections for content ``key`` in ``context``.

        Candidates are the anchors of ``slot`` with a deviation for ``context``; ``None`` when
        there are none (the caller reuses the rotated base unchanged, KVCOMM's fallback).
        ``following`` is the length of the template segment after the content. Layer 0 gets no
        correction.
        """
        with self._lock:
            candidates = [
                a
                for a in self._pools.get(slot, ())
                if context in a.deviations and a.deviations[context].following.length == following
            ]
            if not candidates:
                return None
            weights = self._weights_for(slot, key, base, candidates)
            devs = [a.deviations[context] for a in candidates]
        content_k = blend_placeholder(weights.content_k, [d.content.keys for d in devs])
        content_v = blend_placeholder(weights.content_v, [d.content.values for d in devs])
        following_k = blend_prefix(
            weights.following_k, torch.stack([d.following.keys for d in devs])
        )
        following_v = blend_prefix(
            weights.following_v, torch.stack([d.following.values for d in devs])
        )
        for tensor in (content_k, content_v, following_k, following_v):
            tensor[0] = 0.0
        dtype = base.keys.dtype
        return Offsets(
            KVBlock(content_k.to(dtype), content_v.to(dtype)),
            KVBlock(following_k.to(dtype), following_v.to(dtype)),
            len(candidates),
        )

    def _weights_for(
        self, slot: str, key: str, base: KVBlock, candidates: Sequence[Anchor]
    ) -> _Weights:
        """Interpolation weights, computed once per content and candidate set."""
        serials = tuple(a.serial for a in candidates)
        cached = self._weights.get((slot, key))
        if cached is not None and cached.serials == serials:
            return cached
        keys = [a.base.keys for a in candidates]
        values = [a.base.values for a in candidates]
        t = self.temperature
        weights = _Weights(
            serials,
            placeholder_weights(base.keys, keys, t),
            placeholder_weights(base.values, values, t),
            prefix_weights(base.keys, keys, t),
            prefix_weights(base.values, values, t),
        )
        self._weights[(slot, key)] = weights
        while len(self._weights) > 256:
            self._weights.popitem(last=False)
        return weights
