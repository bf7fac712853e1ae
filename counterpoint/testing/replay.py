"""Teacher-forced replay on a real local model: real forward passes, scripted tokens.

:class:`ReplayModel` wraps a :class:`~counterpoint.runtime.backends.transformers.TransformersModel`.
Its decoders pay for a real forward pass per token and a real prefill per extension, but the
tokens they emit come from a script: one text (emitted to its end; an end-of-sequence token in it
ends the stream early and an extension resumes after it; extensions do not consume it), or a
ScriptedModel-style policy (a function from the texts extended so far to the next part; ``""``
waits for the next extension, ``None`` ends the stream). Latency benchmarks use it to measure the
real model's generation and prefill cost on transcripts that react to results the way an ideal
model would.

``stateless=True`` pays what a stateless chat API pays: every extension throws the KV cache away
and prefills the whole context again (the paper's baselines, which send a new request per result).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import ToolSpec
from counterpoint.runtime.backends._sampling import Choice
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel
from counterpoint.testing.scripted import ScriptPolicy

__all__ = ["ReplayDecoder", "ReplayModel"]


class _Once:
    """The policy of a fixed script: all of it, then the end."""

    def __init__(self, script: str) -> None:
        self._script = script
        self._given = False

    def __call__(self, extended: Sequence[str]) -> str | None:
        if self._given:
            return None
        self._given = True
        return self._script


class ReplayModel:
    """A Model whose decoders replay a script or a policy on a real model (see the module).

    Give it ``script`` (a text), or ``policy_factory`` (called once per decoder, so each
    generation gets a fresh policy state).
    """

    def __init__(
        self,
        base: TransformersModel,
        script: str | None = None,
        *,
        policy_factory: Callable[[], ScriptPolicy] | None = None,
        stateless: bool = False,
    ) -> None:
        if (script is None) == (policy_factory is None):
            raise TypeError("ReplayModel takes a script text or a policy_factory (one of them)")
        if policy_factory is None:
            text = script or ""
            policy_factory = lambda: _Once(text)  # noqa: E731
        self._base = base
        self._factory = policy_factory
        self.stateless = stateless

    @property
    def name(self) -> str:
        """The base model's name, marked as a replay."""
        kind = "stateless replay" if self.stateless else "replay"
        return f"{self._base.name} ({kind})"

    @property
    def base(self) -> TransformersModel:
        """The real model the forward passes run on."""
        return self._base

    def render(self, messages: Sequence[Message]) -> Prompt:
        """Render with the base model's chat template."""
        return self._base.render(messages)

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> ReplayDecoder:
        """Open a replay generation on ``context`` (rendered as the base model renders it)."""
        prompt = self._base.render_for(context, tools)
        policy = self._factory()
        return await self._base._open(
            ReplayDecoder, prompt.text, None, params, policy=policy, stateless=self.stateless
        )


class ReplayDecoder(TransformersDecoder):
    """Emits a script's tokens while paying for the real forward passes and prefills."""

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

    @property
    def remaining(self) -> int:
        """Tokens of the current part not yet emitted."""
        return len(self._part) - self._position

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
            self._part, self._position = self._owner.encode(part, special_tokens=True), 0
        return False

    def _pick(self, logits: torch.Tensor, refused: Sequence[int] = ()) -> Choice:
        token_id = self._part[self._position]
        self._position += 1
        return Choice(token_id, float("nan"))

    def _extend_sync(
        self,
        text: str,
        special_tokens: bool,
        failed: Sequence[str] = (),
        answered: Sequence[str] = (),
    ) -> None:
        self._extensions.append(text)
        self._waiting = False
        if not self._stateless:
            super()._extend_sync(text, special_tokens, failed, answered)
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
