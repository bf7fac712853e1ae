"""KV reuse across agents on the local backend, behind the Model seam.

:class:`KVReuseModel` wraps a :class:`~counterpoint.runtime.backends.transformers.TransformersModel`
and implements the :class:`~counterpoint.runtime.backends.base.Model` seam, so
``Agent(model=KVReuseModel(base, "anchors"))`` works. Every prompt is planned under the model's
policy (see :mod:`~counterpoint.runtime.kv.policy`): ``dense``, ``prefix``, ``shift`` or
``anchors``. Generated answers are published as shared content (their tokens and, for ``shift``
and ``anchors``, the KV their own decoding produced), and recognised by their text when a later
prompt includes them; other shared content is declared with :meth:`KVReuseModel.share` or with a
:class:`~counterpoint.runtime.kv.builder.PromptBuilder`.

Each call reports a :class:`~counterpoint.runtime.kv.policy.KVCallStats`: in
:attr:`KVReuseModel.calls`, to the ``on_call`` callback, on :attr:`KVReuseDecoder.stats`, and as
a :class:`~counterpoint.core.events.KVReuse` event on the run's bus (the session passes its
:class:`~counterpoint.core.bus.RunScope` to ``start``; the tracer stores it as a ``kv_reuse``
span).

Example::

    base = TransformersModel.load()
    model = KVReuseModel(base, "anchors")
    model.share("user:q1", question)
    planner = Agent("planner", "...", model=model, tracer=tracer)
    plan = await planner.run(question)
    critic = Agent("critic", "...", model=model, tracer=tracer)
    await critic.run(f"Question: {question}\\n\\nThe plan: {plan.text}")  # both reused
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import Interrupt, ToolSpec
from counterpoint.core.events import KVReuse
from counterpoint.errors import ConfigError
from counterpoint.runtime.backends._cml_messages import cml_messages
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams, Token
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel
from counterpoint.runtime.kv._engine import Engine, Plan
from counterpoint.runtime.kv.anchors import AnchorPool
from counterpoint.runtime.kv.builder import Content, mark_contents
from counterpoint.runtime.kv.policy import POLICIES, KVCallStats, KVReuseConfig, Policy
from counterpoint.runtime.kv.prefix_cache import PrefixCache
from counterpoint.runtime.kv.segments import SegmentEntry, SegmentStore

__all__ = ["KVReuseDecoder", "KVReuseModel"]

_log = logging.getLogger(__name__)


class KVReuseModel:
    """A local model whose generations reuse KV across sessions under a policy.

    Args:
        base: the local model every forward pass runs on.
        policy: ``dense``, ``prefix``, ``shift`` or ``anchors`` (default).
        config: budgets, anchor settings, fidelity sampling.
        on_call: called with each call's stats when its decoder closes.
    """

    def __init__(
        self,
        base: TransformersModel,
        policy: Policy = "anchors",
        *,
        config: KVReuseConfig | None = None,
        on_call: Callable[[KVCallStats], None] | None = None,
    ) -> None:
        if policy not in POLICIES:
            choices = ", ".join(POLICIES)
            raise ConfigError(f"unknown KV-reuse policy {policy!r}: use one of {choices}")
        self._base = base
        self._policy: Policy = policy
        self.config = config or KVReuseConfig()
        self._engine = Engine(base, policy, self.config)
        self._on_call = on_call
        self.calls: collections.deque[KVCallStats] = collections.deque(maxlen=self.config.history)
        """Stats of the most recent calls, oldest first."""
        self._reuse_calls = 0

    # ----------------------------------------------------------------------------- the seam

    @property
    def name(self) -> str:
        """The base model's name and the policy."""
        return f"{self._base.name} [kv:{self._policy}]"

    def render(self, messages: Sequence[Message]) -> Prompt:
        """Render with the chat template and mark every known shared content as a segment.

        Known content is what :meth:`share` declared and every published answer of at least
        ``min_auto_tokens`` tokens; the rest of a message that includes some is template text.
        A system message is template text; other messages stay content keyed by role and hash.
        """
        return mark_contents(self._base.render(messages), self._known())

    def render_plain(self, messages: Sequence[Message]) -> Prompt:
        """Render with the chat template only (what :class:`PromptBuilder` marks up itself)."""
        return self._base.render(messages)

    def _known(self) -> list[Content]:
        minimum = self.config.min_auto_tokens
        return [
            Content(entry.name, entry.text)
            for entry in self._engine.segments.entries()
            if entry.name and (entry.origin != "generated" or entry.length >= minimum)
        ]

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> KVReuseDecoder:
        """Plan ``context`` under the policy, assemble its cache, and start generating.

        Messages are rendered with the protocol and ``tools`` (see :meth:`render`); the call's
        stats go on ``scope``'s bus as a ``kv_reuse`` event when the decoder closes.
        """
        started = time.perf_counter()
        if isinstance(context, Prompt):
            prompt = self._base.render_for(context, tools)
        else:
            prompt = self.render(cml_messages(context, tools, self._base.special_tokens))
        engine = self._engine
        plan = await self._base.run_in_worker(lambda: engine.prepare(prompt))
        inner = await self._base.start_tokens(plan.ids, params, cache=plan.cache)
        ttft = time.perf_counter() - started
        plan.cache = None  # the decoder owns it now
        if plan.mode != "reuse" and self._policy != "dense" and inner.cache is not None:
            cache = inner.cache
            await self._base.run_in_worker(lambda: engine.remember_exact(plan.ids, cache))
        stats = KVCallStats(
            policy=self._policy,
            mode=plan.mode,
            prompt_tokens=len(plan.ids),
            reused_tokens=inner.reused_tokens - plan.in_place,
            exact_tokens=min(plan.exact, inner.reused_tokens) - plan.in_place,
            computed_tokens=len(plan.ids) - inner.reused_tokens + plan.computed,
            ttft_s=ttft,
            prepare_s=plan.prepare_s,
            contents=plan.contents,
        )
        decoder = KVReuseDecoder(self, inner, plan, stats, started, scope)
        if plan.mode == "reuse":
            self._reuse_calls += 1
            every = self.config.fidelity_every
            decoder.measure_fidelity = every > 0 and (self._reuse_calls - 1) % every == 0
        return decoder

    # ----------------------------------------------------------------------------- extras

    @property
    def base(self) -> TransformersModel:
        """The wrapped local model."""
        return self._base

    @property
    def policy(self) -> Policy:
        """The reuse policy."""
        return self._policy

    @property
    def prefix_cache(self) -> PrefixCache:
        """The exact prefix cache."""
        return self._engine.prefix

    @property
    def segments(self) -> SegmentStore:
        """The segment KV store."""
        return self._engine.segments

    @property
    def anchors(self) -> AnchorPool:
        """The anchor pool."""
        return self._engine.anchors

    def share(self, key: str, text: str) -> None:
        """Declare ``text`` shared content named ``key`` (e.g. ``user:q1``).

        Later prompts that include ``text`` get it as a content segment (see :meth:`render`);
        its KV is computed once, the first time a reuse policy needs it.
        """
        if not key or not text:
            raise ConfigError("share() needs a non-empty key and text")
        store = self._engine.segments
        if store.name(key, text) is None:
            ids = self._engine.encode(text, False)
            store.put(text, ids, origin="shared", key=key)

    def summary(self) -> dict[str, Any]:
        """Aggregates over :attr:`calls`: counts, reuse rate, mean TTFT, fidelity."""
        calls = list(self.calls)
        measured = [c.fidelity for c in calls if c.fidelity is not None]
        return {
            "policy": self._policy,
            "calls": len(calls),
            "reuse_rate": sum(c.reused for c in calls) / len(calls) if calls else 0.0,
            "mean_ttft_s": sum(c.ttft_s for c in calls) / len(calls) if calls else 0.0,
            "tokens_reused": sum(c.reused_tokens for c in calls),
            "tokens_computed": sum(c.computed_tokens for c in calls),
            "fidelity_measured": len(measured),
            "greedy_agreement": (
                sum(f.identical for f in measured) / len(measured) if measured else None
            ),
            "mean_kl": sum(f.mean_kl for f in measured) / len(measured) if measured else None,
        }

    def __repr__(self) -> str:
        return f"KVReuseModel({self._base!r}, policy={self._policy!r})"

    # ----------------------------------------------------------------------------- at close

    async def _finish(self, decoder: KVReuseDecoder) -> None:
        """Bookkeeping when a decoder closes: fidelity, anchors, published answer, prefix."""
        inner, plan, stats, engine = decoder.inner, decoder.plan, decoder.stats, self._engine
        cache = inner.cache  # grows in place: the same object until the decoder closes
        if cache is None:
            return
        run = self._base.run_in_worker
        first = decoder.first_answer_ids
        if decoder.measure_fidelity and first:
            stats.fidelity = await run(lambda: engine.fidelity(plan, cache, first))
        if plan.record:
            await run(lambda: engine.record(plan, cache))
        start = decoder.answer_start
        if inner.generated_tokens and len(inner.context_ids) > start:
            with_kv = self._policy in ("shift", "anchors")
            if with_kv and len(inner.context_ids) > cache.get_seq_length():
                await inner.extend("")  # feed the last sampled token: its KV is part of the answer
            answer = inner.context_ids[start:]
            source = cache if with_kv else None
            decoder.published = await run(
                lambda: engine.register_output(plan.sig, answer, start, source)
            )
        if plan.mode != "reuse" and self._policy != "dense":
            ids = inner.context_ids
            await run(lambda: engine.remember_exact(ids, cache))

    def _report(self, decoder: KVReuseDecoder) -> None:
        stats = decoder.stats
        self.calls.append(stats)
        try:
            if self._on_call is not None:
                self._on_call(stats)
            scope = decoder.scope
            if scope is not None:
                scope.bus.publish(
                    KVReuse(
                        run_id=scope.run_id,
                        t=scope.at(decoder.started),
                        policy=self._policy,
                        mode="reuse" if stats.reused else "dense",
                        prompt_tokens=stats.prompt_tokens,
                        reused_tokens=stats.reused_tokens,
                        computed_tokens=stats.computed_tokens,
                        ttft_s=stats.ttft_s,
                        attributes=stats.attributes(),
                    )
                )
        except Exception:
            _log.exception("reporting a KV-reuse call failed")


class KVReuseDecoder:
    """A generation on a :class:`KVReuseModel` (the Decoder seam), with its reuse stats."""

    def __init__(
        self,
        owner: KVReuseModel,
        inner: TransformersDecoder,
        plan: Plan,
        stats: KVCallStats,
        started: float,
        scope: RunScope | None = None,
    ) -> None:
        self._owner = owner
        self.inner = inner
        """The underlying decoder (its cache holds this call's KV)."""
        self.plan = plan
        """How the prompt was fed."""
        self.stats = stats
        """What this call did with KV reuse (complete once closed)."""
        self.started = started
        """``time.perf_counter()`` when :meth:`KVReuseModel.start` was called."""
        self.scope = scope
        """The run this generation serves (its bus gets the ``kv_reuse`` event)."""
        self.answer_start = len(plan.ids)
        """Context position where the current answer starts (after the last extension)."""
        self.first_answer_ids: list[int] | None = None
        self.published: SegmentEntry | None = None
        """The answer as published at close (shared content later prompts can reuse)."""
        self.measure_fidelity = False
        """True if closing also measures fidelity against a dense prefill."""
        self._closed = False

    # ----------------------------------------------------------------------------- the seam

    async def step(self) -> Token | None:
        """Generate one token."""
        return await self.inner.step()

    async def inject(self, items: Sequence[Interrupt]) -> None:
        """Append results and user messages as neutralised CML interrupts (the inner decoder's
        own inject, so it learns which calls failed); the answer starts after them."""
        if items:
            self._extending()
            await self.inner.inject(items)
            self.answer_start = len(self.inner.context_ids)

    async def extend(self, text: str) -> None:
        """Append ``text`` to the context; the answer published at close starts after it."""
        self._extending()
        await self.inner.extend(text)
        self.answer_start = len(self.inner.context_ids)

    def _extending(self) -> None:
        if self.first_answer_ids is None:
            self.first_answer_ids = list(self.inner.generated_ids)

    async def close(self) -> None:
        """Publish the answer, record anchors and stats, then free the cache. Idempotent."""
        if self._closed:
            return
        self._closed = True
        began = time.perf_counter()
        if self.first_answer_ids is None:
            self.first_answer_ids = list(self.inner.generated_ids)
        self.stats.generated_tokens = self.inner.generated_tokens
        try:
            if not self.inner.closed:
                await self._owner._finish(self)
        except Exception as exc:
            self.stats.error = f"{type(exc).__name__}: {exc}"
            _log.warning("KV-reuse bookkeeping failed at close: %s", self.stats.error)
        finally:
            await self.inner.close()
            self.stats.finish_s = time.perf_counter() - began
            self._owner._report(self)

    @property
    def prompt_tokens(self) -> int:
        """Tokens prefilled so far (the prompt and every extension)."""
        return self.inner.prompt_tokens

    @property
    def generated_tokens(self) -> int:
        """Tokens generated so far."""
        return self.inner.generated_tokens

    # ----------------------------------------------------------------------------- extras

    @property
    def ttft_s(self) -> float:
        """Seconds from ``start`` to the first token's logits."""
        return self.stats.ttft_s

    @property
    def last_logits(self) -> torch.Tensor | None:
        """See :attr:`TransformersDecoder.last_logits`."""
        return self.inner.last_logits

    async def force(self, ids: Sequence[int], *, keep_logits: int = 0) -> torch.Tensor | None:
        """Teacher forcing (see :meth:`TransformersDecoder.force`)."""
        return await self.inner.force(ids, keep_logits=keep_logits)
