"""Teacher-forced replay driven by a policy, with an optional stateless (re-prefill) variant.

:class:`PolicyReplayModel` runs a real forward pass for every token and a real prefill for every
extension on a :class:`TransformersModel`, but the tokens it emits come from a ScriptedModel-style
policy (a function from the texts extended so far to the next part; ``""`` waits for the next
extension, ``None`` ends the stream). Latency benchmarks use it to measure the real model's
generation and prefill cost on transcripts that react to results the way an ideal model would.

``stateless=True`` pays what a stateless chat API pays: every extension throws the KV cache away
and prefills the whole context again (the paper's baselines, which send a new request per result).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

from counterpoint.runtime.backends._sampling import Choice
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams
from counterpoint.runtime.backends.scripted import ScriptPolicy
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel

__all__ = ["PolicyReplayDecoder", "PolicyReplayModel"]


class PolicyReplayModel:
    """A Model whose decoders replay a policy's parts on a real model (see the module docstring).

    ``policy_factory`` is called once per decoder, so each generation gets a fresh policy state.
    """

    def __init__(
        self,
        base: TransformersModel,
        policy_factory: Any,
        *,
        stateless: bool = False,
    ) -> None:
        self._base = base
        self._factory = policy_factory
        self.stateless = stateless

    @property
    def name(self) -> str:
        kind = "stateless replay" if self.stateless else "replay"
        return f"{self._base.name} ({kind})"

    def render(self, messages: Sequence[Message]) -> Prompt:
        return self._base.render(messages)

    async def start(
        self, context: Sequence[Message] | Prompt, params: SamplingParams | None = None
    ) -> PolicyReplayDecoder:
        prompt = context if isinstance(context, Prompt) else self._base.render(context)
        policy: ScriptPolicy = self._factory()
        return await self._base._open(
            PolicyReplayDecoder, prompt.text, None, params, policy=policy, stateless=self.stateless
        )


class PolicyReplayDecoder(TransformersDecoder):
    """Emits a policy's tokens while paying for the real forward passes and prefills."""

    def __init__(
        self,
        owner: TransformersModel,
        params: SamplingParams,
        started: float,
        *,
        policy: ScriptPolicy,
        stateless: bool = False,
    ) -> None:
        super().__init__(owner, params.model_copy(update={"banned": ()}), started)
        self._policy = policy
        self._stateless = stateless
        self._part: list[int] = []
        self._position = 0
        self._extensions: list[str] = []
        self._waiting = False
        self._done = False
        self.reprefill_s = 0.0
        """Seconds spent prefilling the whole context again (stateless only)."""

    def _exhausted(self) -> bool:
        while self._position >= len(self._part):
            if self._done or self._waiting:
                return True
            part = self._policy(list(self._extensions))
            if part is None:
                self._done = True
                return True
            if not part:
                self._waiting = True
                return True
            self._part, self._position = self._owner.encode(part), 0
        return False

    def _pick(self, logits: torch.Tensor) -> Choice:
        token_id = self._part[self._position]
        self._position += 1
        return Choice(token_id, float("nan"))

    def _extend_sync(self, text: str, special_tokens: bool) -> None:
        self._extensions.append(text)
        self._waiting = False
        if not self._stateless:
            super()._extend_sync(text, special_tokens)
            return
        ids = self._owner.encode(text, special_tokens=special_tokens)
        pending = [] if self._pending is None else [self._pending]
        context = [*self._ids, *pending, *ids]
        self._cache = DynamicCache(config=self._owner.hf_model.config)
        self._ids = []
        self._pending = None
        began = time.perf_counter()
        self._logits = self._forward(context)
        seconds = time.perf_counter() - began
        self._note_prefill(len(context), seconds)
        self.reprefill_s += seconds
        self._prompt_tokens += len(ids)
        self._detok.reseed(self._ids)
        self._push_tail(text)
        self._stopped = False
