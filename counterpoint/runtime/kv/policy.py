"""KV-reuse policies, their settings, and what each agent call reports.

Policies (selectable per :class:`~counterpoint.runtime.kv.reuse.KVReuseModel`):

- ``dense``: prefill every prompt from scratch (the baseline).
- ``prefix``: reuse the KV of the longest exactly cached token prefix (vLLM APC / SGLang
  RadixAttention); prefill the rest. Exact.
- ``shift``: ``prefix``, then every shared content and template segment from its stored KV,
  re-rotated to its new position, uncorrected (naive reuse); only the last prompt token is
  recomputed (or the whole last template segment, ``recompute_tail``). Approximate: a segment's
  KV above layer 0 still reflects the context it was computed in.
- ``anchors``: ``shift`` plus KVCOMM's offsets interpolated from an anchor pool, and the online
  decision to prefill densely (and measure new anchors) when content is not yet shareable.

Where shared content's KV comes from (``shift`` and ``anchors``): a generated answer keeps the KV
its producer's decoding made. Content with no KV yet (a new user question) is computed in place
by its first consumer when only template text precedes it there, which is exact for that consumer
and becomes the content's KV for every later one; otherwise it is prefilled once on its own after
a short chat header (KVCOMM's way). Template segments come from the template prefilled once with
placeholder names (KVCOMM's base KV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from counterpoint.errors import ConfigError
from counterpoint.runtime.kv.fidelity import Fidelity

__all__ = ["POLICIES", "ContentReport", "KVCallStats", "KVReuseConfig", "Mode", "Policy"]

Policy = Literal["dense", "prefix", "shift", "anchors"]
POLICIES: tuple[Policy, ...] = ("dense", "prefix", "shift", "anchors")
Mode = Literal["dense", "prefix", "reuse"]
_MIB = 2**20


@dataclass(frozen=True)
class KVReuseConfig:
    """Settings of a :class:`~counterpoint.runtime.kv.reuse.KVReuseModel`.

    Args:
        prefix_budget_mb: memory budget of the exact prefix cache.
        segment_budget_mb: memory budget of the segment KV store.
        max_anchors: anchors kept per placeholder slot (KVCOMM: 20).
        anchor_window: eviction drops the least used among this many oldest anchors (5).
        gamma: entropy threshold factor of the anchor decision (KVCOMM: 0.3).
        temperature: softmax temperature of the offset interpolation weights (1).
        top_p: probability mass of anchors whose use count a shareable content raises (0.9).
        fidelity_every: also measure fidelity against a dense prefill on every k-th reuse-mode
            call (0: never). Costs one dense prefill per measured call, at close.
        fidelity_tokens: positions compared by that measurement (N = 32).
        recompute_tail: in reuse mode, prefill the prompt's last template segment (the
            instruction and generation prompt right before the answer) instead of only its last
            token (KVCOMM recomputes the last token only). Costs a few tokens of prefill; the
            first answer tokens attend to that segment most.
        recompute_ratio: in reuse mode, also recompute this share of the reused tokens, those
            whose KV deviates most from what this context gives them (CacheBlend's selective
            recompute, :mod:`counterpoint.runtime.kv.blend`; 0: none). Costs about
            ``probe_layers / layers + recompute_ratio`` of a dense prefill of the reused tokens.
        probe_layers: layers every reused token goes through to measure its deviation (2: the
            first layer's KV never deviates).
        recompute_select: which reused tokens ``recompute_ratio`` picks: ``"deviation"`` (those
            that deviate most in the probe layers, as CacheBlend) or ``"head"`` (the first
            ``recompute_ratio`` share of each reused segment: no probe cost; the tokens right
            after a changed context deviate most).
        min_auto_tokens: a generated output is recognised in later prompts by its text only
            when it has at least this many tokens (explicitly shared content always is).
        history: per-call reports kept in ``KVReuseModel.calls``.
    """

    prefix_budget_mb: float = 512
    segment_budget_mb: float = 512
    max_anchors: int = 20
    anchor_window: int = 5
    gamma: float = 0.3
    temperature: float = 1.0
    top_p: float = 0.9
    fidelity_every: int = 0
    fidelity_tokens: int = 32
    recompute_tail: bool = False
    recompute_ratio: float = 0.0
    probe_layers: int = 2
    recompute_select: Literal["deviation", "head"] = "deviation"
    min_auto_tokens: int = 8
    history: int = 1024

    def __post_init__(self) -> None:
        checks = {
            "prefix_budget_mb": self.prefix_budget_mb >= 0,
            "segment_budget_mb": self.segment_budget_mb >= 0,
            "max_anchors": self.max_anchors >= 1,
            "anchor_window": self.anchor_window >= 1,
            "gamma": self.gamma >= 0,
            "temperature": self.temperature > 0,
            "top_p": 0 < self.top_p <= 1,
            "fidelity_every": self.fidelity_every >= 0,
            "fidelity_tokens": self.fidelity_tokens >= 1,
            "min_auto_tokens": self.min_auto_tokens >= 1,
            "recompute_ratio": 0 <= self.recompute_ratio <= 1,
            "probe_layers": self.probe_layers >= 1,
            "recompute_select": self.recompute_select in ("deviation", "head"),
            "history": self.history >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid KV-reuse setting(s) {', '.join(bad)}: budgets, gamma and "
                "fidelity_every must be >= 0, temperature > 0, top_p and recompute_ratio in "
                "(0, 1] and [0, 1], the others >= 1"
            )

    @property
    def prefix_budget_bytes(self) -> int:
        """The prefix cache budget in bytes."""
        return int(self.prefix_budget_mb * _MIB)

    @property
    def segment_budget_bytes(self) -> int:
        """The segment store budget in bytes."""
        return int(self.segment_budget_mb * _MIB)


@dataclass
class ContentReport:
    """What happened to one shared content of a prompt."""

    key: str
    slot: str
    tokens: int
    source: Literal["exact", "computed", "generated", "prefilled", "dense"]
    """Where its KV came from: the exact prefix cache; this call, which computed it in place
    because it was new (exact: everything before it was); its producer's decoding; an earlier
    consumer's or its own prefill; or (dense mode) the call's prefill."""
    decision: dict[str, Any] | None = None
    """The anchor decision (anchors policy)."""
    corrected_by: int = 0
    """Anchors its offsets were interpolated from (0: reused uncorrected)."""
    recorded: bool = False
    """True if this call measured the content's deviation as an anchor."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "key": self.key,
            "slot": self.slot,
            "tokens": self.tokens,
            "source": self.source,
            "decision": self.decision,
            "corrected_by": self.corrected_by,
            "recorded": self.recorded,
        }


@dataclass
class KVCallStats:
    """What one agent call (one generation) did with KV reuse; recorded as a ``kv_reuse`` span."""

    policy: Policy
    mode: Mode
    """``reuse`` (the prompt's KV was assembled from caches), ``prefix`` (exact prefix reused,
    the rest prefilled) or ``dense`` (prefilled, possibly after an exact prefix)."""
    prompt_tokens: int
    reused_tokens: int
    """Prompt tokens whose KV came from caches rather than this call's prefill."""
    exact_tokens: int
    """Of those, tokens served by the exact prefix cache."""
    computed_tokens: int
    """Tokens prefilled before the first token: the prompt's rest plus any content or template
    base computed on the way."""
    ttft_s: float
    """Seconds from ``start`` to the first token's logits."""
    prepare_s: float
    """Of which: planning and assembling the cache (lookups, decisions, offsets, rotation)."""
    contents: list[ContentReport] = field(default_factory=list)
    generated_tokens: int = 0
    finish_s: float = 0.0
    """Seconds spent at close: registering the output, measuring anchors, fidelity."""
    fidelity: Fidelity | None = None
    error: str | None = None
    """Why bookkeeping at close failed, if it did (the generation itself was fine)."""

    @property
    def reused(self) -> bool:
        """True for a reuse-mode call."""
        return self.mode == "reuse"

    @property
    def anchor_decision(self) -> str:
        """One word for the call: ``reuse``, ``dense:<reason>`` or ``prefix``."""
        if self.mode != "dense":
            return self.mode
        reasons = sorted(
            {
                str(c.decision.get("reason"))
                for c in self.contents
                if c.decision is not None and c.recorded
            }
        )
        return "dense:" + ",".join(reasons) if reasons else "dense"

    def attributes(self) -> dict[str, Any]:
        """Span attributes (``counterpoint.kv.*``)."""
        attrs: dict[str, Any] = {
            "counterpoint.kv.policy": self.policy,
            "counterpoint.kv.mode": self.mode,
            "counterpoint.kv.reused": self.reused,
            "counterpoint.kv.decision": self.anchor_decision,
            "counterpoint.kv.prompt_tokens": self.prompt_tokens,
            "counterpoint.kv.tokens_reused": self.reused_tokens,
            "counterpoint.kv.tokens_exact": self.exact_tokens,
            "counterpoint.kv.tokens_computed": self.computed_tokens,
            "counterpoint.kv.ttft_s": self.ttft_s,
            "counterpoint.kv.prepare_s": self.prepare_s,
            "counterpoint.kv.finish_s": self.finish_s,
            "counterpoint.kv.contents": [c.as_dict() for c in self.contents],
            "gen_ai.usage.input_tokens": self.prompt_tokens,
            "gen_ai.usage.output_tokens": self.generated_tokens,
        }
        if self.fidelity is not None:
            attrs["counterpoint.kv.fidelity"] = self.fidelity.as_dict()
        if self.error is not None:
            attrs["counterpoint.kv.error"] = self.error
        return attrs
