"""The worker-thread side of KV reuse: plan a prompt, assemble its cache, measure, register.

Every method of :class:`Engine` that touches tensors runs in the base model's worker thread (the
model wraps each call in ``run_in_worker``), so its stores only change there, one call at a time.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import DynamicCache

from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv._plan import Piece, pieces_of, signature
from counterpoint.runtime.kv.anchors import AnchorPool, Deviation
from counterpoint.runtime.kv.blend import blend, supports_blend
from counterpoint.runtime.kv.fidelity import Fidelity, compare_logits, forward_logits
from counterpoint.runtime.kv.policy import ContentReport, KVReuseConfig, Mode, Policy
from counterpoint.runtime.kv.prefix_cache import PrefixCache
from counterpoint.runtime.kv.rope import Rotary
from counterpoint.runtime.kv.segments import SegmentEntry, SegmentStore, text_digest

__all__ = ["Engine", "Plan"]

_SKELETONS = 64


@dataclass
class Plan:
    """How one prompt is fed: its ids, the cache to start from, and what was decided."""

    ids: list[int]
    pieces: list[Piece]
    sig: str
    mode: Mode
    cache: DynamicCache | None
    exact: int
    computed: int
    contents: list[ContentReport]
    record: list[Piece] = field(default_factory=list)
    in_place: int = 0
    """Tokens of new content this call computed in place (inside ``exact``, not reused)."""
    recomputed: int = 0
    """Reused tokens recomputed by selective recompute (``recompute_ratio``)."""
    prepare_s: float = 0.0


class Engine:
    """Prefix cache, segment store, skeletons and anchor pool of one KV-reuse model."""

    def __init__(self, base: TransformersModel, policy: Policy, config: KVReuseConfig) -> None:
        self.base = base
        self.hf: Any = base.hf_model
        self.policy: Policy = policy
        self.config = config
        self.prefix = PrefixCache(config.prefix_budget_bytes)
        self.segments = SegmentStore(config.segment_budget_bytes)
        self.anchors = AnchorPool(
            max_anchors=config.max_anchors,
            window=config.anchor_window,
            gamma=config.gamma,
            temperature=config.temperature,
            top_p=config.top_p,
        )
        self.rotary = Rotary.of(self.hf) if policy in ("shift", "anchors") else None
        self._blends = config.recompute_ratio > 0 and supports_blend(self.hf)
        if config.recompute_ratio > 0 and not self._blends:
            raise ConfigError(
                f"recompute_ratio needs a Llama-style decoder; {type(self.hf).__name__} is not "
                "one: set recompute_ratio=0"
            )
        self._skeletons: OrderedDict[str, dict[int, KVBlock]] = OrderedDict()
        self._header: list[int] | None = None
        self._computed = 0

    # ----------------------------------------------------------------------------- helpers

    def encode(self, text: str, special: bool) -> list[int]:
        """Token ids of ``text`` (control tokens recognised only with ``special``)."""
        return self.base.encode(text, special_tokens=special)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, exactly as the decoder streamed it."""
        text: str = self.base.tokenizer.decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        return text

    def _rotate(self) -> Rotary:
        if self.rotary is None:  # pragma: no cover - only shift/anchors place blocks
            raise CounterpointError(f"policy {self.policy!r} does not re-rotate KV")
        return self.rotary

    def _lean(self) -> bool:
        """Whether passes may run the base model's lean feed (its switches)."""
        return bool(self.base.lean_decode and self.base.lean_feed)

    def canonical(self, block: KVBlock, start: int) -> KVBlock:
        """``block`` (first token at ``start``) moved so that its first token sits at 0 (owned)."""
        keys = self._rotate().rotate(block.keys, -start) if start else block.keys.clone()
        return KVBlock(keys, block.values.clone())

    def place(self, block: KVBlock, start: int) -> KVBlock:
        """A canonical ``block`` moved to start at position ``start``."""
        return KVBlock(self._rotate().rotate(block.keys, start), block.values)

    def prefill(self, ids: list[int], *, remember: int = 0) -> KVBlock:
        """Exact KV of ``ids`` (the prefix cache serves what it can); caches ``ids[:remember]``."""
        match = self.prefix.match(ids)
        if match.length == len(ids) and match.kv is not None:
            return match.kv
        cache = (
            match.kv.to_cache(self.hf.config)
            if match.kv is not None
            else DynamicCache(config=self.hf.config)
        )
        forward_logits(self.hf, ids[match.length :], 1, cache, lean=self._lean())
        self._computed += len(ids) - match.length
        kv = KVBlock.from_cache(cache)
        if remember:
            self.prefix.insert(ids[:remember], kv)
        return kv

    def _check_length(self, tokens: int) -> None:
        limit = self.base.max_positions
        if limit is not None and tokens > limit:
            raise CounterpointError(
                f"the prompt has {tokens} tokens, more than the {limit} that "
                f"{self.base.name!r} supports: shorten it"
            )

    # ----------------------------------------------------------------------------- planning

    def prepare(self, prompt: Any) -> Plan:
        """Plan ``prompt`` under the policy and assemble the cache to start from."""
        began = time.perf_counter()
        self._computed = 0
        pieces = pieces_of(prompt, self.encode, self.segments)
        if not pieces:
            raise ConfigError("the prompt is empty: give the model at least one token of context")
        ids = [i for p in pieces for i in p.ids]
        self._check_length(len(ids))
        sig = signature(pieces)
        reports = {
            p.start: ContentReport(p.key, p.slot, p.length, "dense")
            for p in pieces
            if p.kind == "content"
        }
        plan = Plan(ids, pieces, sig, "dense", None, 0, 0, list(reports.values()))
        if self.policy != "dense":
            self._plan_reuse(plan, reports)
        plan.computed = self._computed
        plan.prepare_s = time.perf_counter() - began
        return plan

    def _plan_reuse(self, plan: Plan, reports: dict[int, ContentReport]) -> None:
        match = self.prefix.match(plan.ids[:-1])
        start = _boundary(plan.pieces, match.length)
        for p in plan.pieces:
            if p.kind == "content" and p.end <= start:
                reports[p.start].source = "exact"
        later = [p for p in plan.pieces if p.kind == "content" and p.start >= start]
        if self.policy != "prefix" and later and _new(later[0]):
            # New content with only template text before it: compute it in place (exact), and
            # keep that KV as the content's own for every later consumer.
            before = self._computed
            self.computed_in_place(plan, later[0])
            plan.in_place = self._computed - before
            reports[later[0].start].source = "computed"
            match = self.prefix.match(plan.ids[:-1])
        plan.exact = match.length
        if match.kv is not None:
            plan.mode = "prefix"
            plan.cache = match.kv.to_cache(self.hf.config)
        if self.policy == "prefix" or not later:
            return
        if self.policy == "anchors":
            plan.record = self._decide(plan.sig, later, reports)
            if plan.record:
                plan.mode = "dense"
                return
        exact = match.kv.slice(0, _boundary(plan.pieces, match.length)) if match.kv else None
        blocks = [exact.slice(0, start)] if exact is not None and start else []
        blocks.extend(self._assemble(plan, start, exact, reports))
        kv = KVBlock.cat(blocks)
        last = plan.pieces[-1]
        if self.config.recompute_tail and last.kind == "template" and last.start >= start:
            kv = kv.slice(0, last.start)  # the decoder prefills the last segment itself
        if self.config.recompute_ratio > 0 and self._blends and kv.length > start:
            kv = self._blend(plan, kv, start)
        plan.cache = kv.to_cache(self.hf.config)
        plan.mode = "reuse"

    def _blend(self, plan: Plan, kv: KVBlock, start: int) -> KVBlock:
        """Selective recompute of the reused tokens ``start:`` (``recompute_ratio``)."""
        ratio = self.config.recompute_ratio
        if self.config.recompute_select == "head":
            candidates: list[int] = []
            for p in plan.pieces:
                end = min(p.end, kv.length)
                if p.start >= start and end > p.start:
                    n = math.ceil(ratio * (end - p.start))
                    candidates.extend(range(p.start, p.start + n))
            ratio = 1.0
        else:
            candidates = list(range(start, kv.length))
        kv, report = blend(
            self.hf,
            plan.ids[: kv.length],
            kv,
            candidates,
            ratio,
            probe_layers=self.config.probe_layers,
        )
        plan.recomputed = len(report.recomputed)
        self._computed += plan.recomputed
        return kv

    def computed_in_place(self, plan: Plan, piece: Piece) -> None:
        """Prefill ``piece`` on the exact prefix before it; store its KV as the content's."""
        kv = self.prefill(plan.ids[: piece.end], remember=piece.end)
        base = self.canonical(kv.slice(piece.start, piece.end), piece.start)
        entry = self.segments.get(text=piece.text)
        if entry is None:
            entry = self.segments.put(piece.text, piece.ids, origin="prefilled", key=piece.key)
        if entry.ids == piece.ids:
            self.segments.set_kv(entry, base, piece.start)

    def _assemble(
        self,
        plan: Plan,
        start: int,
        exact: KVBlock | None,
        reports: dict[int, ContentReport],
    ) -> list[KVBlock]:
        """KV blocks of the pieces from ``start`` on, placed at their positions.

        Pieces inside ``exact`` (computed in place) are taken from it; every other piece is its
        stored canonical KV (plus interpolated offsets under ``anchors``) rotated into place.
        """
        done = exact.length if exact is not None else 0
        todo = [p for p in plan.pieces if p.start >= start]
        skeleton = (
            self.skeleton(plan.sig, plan.pieces)
            if any(p.kind == "template" and p.start >= done for p in todo)
            else {}
        )
        blocks: list[KVBlock] = []
        following: KVBlock | None = None
        for n, p in enumerate(todo):
            in_place = exact is not None and p.end <= done
            if p.kind == "content":
                entry = self.content(p)
                base = entry.kv
                assert base is not None
                report = reports[p.start]
                offsets = None
                if self.policy == "anchors":
                    after = _following(todo, n)
                    offsets = self.anchors.estimate(
                        p.slot,
                        p.digest,
                        f"{plan.sig}:{p.index}",
                        base,
                        after.length if after is not None else 0,
                    )
                following = offsets.following if offsets is not None else None
                if in_place:
                    assert exact is not None
                    blocks.append(exact.slice(p.start, p.end))
                    continue
                report.source = "generated" if entry.origin == "generated" else "prefilled"
                block = base
                if offsets is not None:
                    block = _add(base, offsets.content)
                    report.corrected_by = offsets.anchors
            else:
                if in_place:
                    assert exact is not None
                    blocks.append(exact.slice(p.start, p.end))
                    following = None
                    continue
                block = skeleton[p.index]
                if following is not None and following.length == p.length:
                    block = _add(block, following)
                following = None
            blocks.append(self.place(block, p.start))
        return blocks

    def _decide(
        self, sig: str, later: list[Piece], reports: dict[int, ContentReport]
    ) -> list[Piece]:
        """Anchor decisions for the contents; those this call must measure (dense prefill)."""
        pool = self.anchors
        record: list[Piece] = []
        for p in later:
            context = f"{sig}:{p.index}"

            def base(p: Piece = p) -> KVBlock:
                kv = self.content(p).kv
                assert kv is not None
                return kv

            decision = pool.decide(p.slot, p.digest, base)
            if not decision.anchor and not pool.covered(p.slot, context):
                decision = pool.promote(p.slot, p.digest)
            report = reports[p.start]
            report.decision = decision.as_dict()
            if pool.needs_record(p.slot, p.digest, context):
                record.append(p)
                report.recorded = True
        return record

    # ----------------------------------------------------------------------------- bases

    def content(self, piece: Piece) -> SegmentEntry:
        """The store entry of a content piece, with its base KV computed if it had none."""
        entry = self.segments.get(text=piece.text)
        if entry is None:
            entry = self.segments.put(piece.text, piece.ids, origin="prefilled", key=piece.key)
        elif entry.ids != piece.ids:  # pragma: no cover - re-registered while planning
            entry = SegmentEntry(piece.text, piece.ids, "prefilled")
        elif piece.key not in entry.keys:
            self.segments.name(piece.key, piece.text)
        if entry.kv is None:
            header = self.header()
            kv = self.prefill([*header, *piece.ids], remember=len(header))
            base = self.canonical(kv.slice(len(header)), len(header))
            self.segments.set_kv(entry, base, len(header))
        return entry

    def header(self) -> list[int]:
        """The chat header content is prefilled after when it has no KV of its own (KVCOMM)."""
        if self._header is None:
            try:
                rendered = self.base.render([Message(role="user", content="x")])
            except ConfigError:
                self._header = []
            else:
                head = ""
                for segment in rendered.segments:
                    if segment.kind == "content":
                        break
                    head += segment.text
                self._header = self.encode(head, True)
        return self._header

    def skeleton(self, sig: str, pieces: list[Piece]) -> dict[int, KVBlock]:
        """Canonical base KV of each template piece: the template prefilled with placeholders."""
        cached = self._skeletons.get(sig)
        if cached is not None:
            self._skeletons.move_to_end(sig)
            return cached
        ids: list[int] = []
        spans: dict[int, tuple[int, int]] = {}
        for p in pieces:
            if p.kind == "template":
                spans[p.index] = (len(ids), len(ids) + p.length)
                ids.extend(p.ids)
            else:
                ids.extend(self.encode("{" + p.slot + "}", False))
        first = pieces[0].length if pieces and pieces[0].kind == "template" else 0
        kv = self.prefill(ids, remember=first)
        templates = {i: self.canonical(kv.slice(s, e), s) for i, (s, e) in spans.items()}
        self._skeletons[sig] = templates
        while len(self._skeletons) > _SKELETONS:
            self._skeletons.popitem(last=False)
        return templates

    # ----------------------------------------------------------------------------- at close

    def record(self, plan: Plan, cache: DynamicCache) -> None:
        """Measure and store the deviations of the contents this dense call was to measure."""
        for p in plan.record:
            real = self.canonical(KVBlock.from_cache(cache, p.start, p.end), p.start)
            entry = self.segments.get(text=p.text)
            if entry is None or entry.kv is None:
                # First computed here: this context's KV becomes the content's own.
                entry = self.segments.put(p.text, p.ids, origin="prefilled", key=p.key)
                self.segments.set_kv(entry, real, p.start)
            base = entry.kv if entry.ids == p.ids else None
            if base is None:  # pragma: no cover - re-registered under other ids meanwhile
                continue
            after = _following(plan.pieces, plan.pieces.index(p))
            if after is not None:
                skeleton = self.skeleton(plan.sig, plan.pieces)[after.index]
                measured = KVBlock.from_cache(cache, after.start, after.end)
                following = _sub(self.canonical(measured, after.start), skeleton)
            else:
                following = KVBlock(base.keys[:, :, :0].clone(), base.values[:, :, :0].clone())
            deviation = Deviation(_sub(real, base), following)
            self.anchors.record(p.slot, p.digest, base, f"{plan.sig}:{p.index}", deviation)

    def register_output(
        self, sig: str, ids: Sequence[int], start: int, cache: DynamicCache | None
    ) -> SegmentEntry | None:
        """Publish a generated answer (``ids`` at ``start``) as shared content.

        Whitespace-only tokens at either end are left out, so that the stripped text an agent
        reports is recognised. With ``cache`` the answer's KV (as its own decoding produced it)
        is kept too.
        """
        lo, hi = 0, len(ids)
        while lo < hi and not self.decode(ids[lo : lo + 1]).strip():
            lo += 1
        while hi > lo and not self.decode(ids[hi - 1 : hi]).strip():
            hi -= 1
        if hi <= lo:
            return None
        kept = list(ids[lo:hi])
        text = self.decode(kept)
        kv = None
        if cache is not None:
            kv = self.canonical(KVBlock.from_cache(cache, start + lo, start + hi), start + lo)
        return self.segments.put(
            text,
            kept,
            origin="generated",
            key=f"out:{sig[:8]}:{text_digest(text)}",
            kv=kv,
            position=start + lo,
        )

    def remember_exact(self, ids: Sequence[int], cache: DynamicCache) -> None:
        """Put an exactly computed context into the prefix cache."""
        ids = list(ids)[: cache.get_seq_length()]
        known = self.prefix.match_length(ids)
        if known < len(ids):
            self.prefix.insert(ids, KVBlock.from_cache(cache, known, len(ids)), start=known)

    def fidelity(self, plan: Plan, cache: DynamicCache, generated: Sequence[int]) -> Fidelity:
        """Compare the call's first generated positions with a dense prefill of the same ids."""
        n = min(self.config.fidelity_tokens, len(generated))
        tail = [plan.ids[-1], *generated[: n - 1]]
        reuse_cache = KVBlock.from_cache(cache, 0, len(plan.ids) - 1).to_cache(self.hf.config)
        candidate = forward_logits(self.hf, tail, n, reuse_cache, lean=self._lean())
        match = self.prefix.match(plan.ids[:-1])
        dense_cache = match.kv.to_cache(self.hf.config) if match.kv is not None else None
        reference = forward_logits(
            self.hf,
            [*plan.ids[match.length :], *generated[: n - 1]],
            n,
            dense_cache,
            lean=self._lean(),
        )
        return compare_logits(reference, candidate)


def _boundary(pieces: Sequence[Piece], length: int) -> int:
    """The end of the last piece that ends within the first ``length`` tokens."""
    return max((p.end for p in pieces if p.end <= length), default=0)


def _new(piece: Piece) -> bool:
    """True if no KV is stored for a content piece yet."""
    return piece.entry is None or piece.entry.kv is None


def _following(pieces: Sequence[Piece], n: int) -> Piece | None:
    """The template piece right after piece ``n``, if the next piece is one."""
    if n + 1 < len(pieces) and pieces[n + 1].kind == "template":
        return pieces[n + 1]
    return None


def _add(a: KVBlock, b: KVBlock) -> KVBlock:
    return KVBlock(a.keys + b.keys, a.values + b.values)


def _sub(a: KVBlock, b: KVBlock) -> KVBlock:
    dtype = a.keys.dtype
    return KVBlock(
        (a.keys.float() - b.keys.float()).to(dtype), (a.values.float() - b.values.float()).to(dtype)
    )
