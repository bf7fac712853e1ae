"""ScriptedModel: a deterministic model for tests and latency benchmarks.

It emits a given script of text, split into word-sized tokens the way a BPE tokenizer splits it (so
CML markers arrive in pieces such as ``[``, ``CALL``, ``]``), at a configurable time per token, and
records every text appended to its context with ``extend``. It isolates the runtime from model
quality: the same transcript replays identically in every mode.

A script is one string, a sequence of *parts*, or a *policy*. A part ends where the model waits for
results: if something was extended while the part was being emitted, the decoder goes straight on
to the next part; otherwise it reports end of stream and the next ``extend`` moves it on (the way a
real model answers after a tool's result arrives). Extending in the middle of a part does not skip
anything. A policy is a function from the texts extended so far to the next part, asked whenever the
current part is exhausted: it returns text, ``""`` to wait for the next ``extend``, or ``None`` to
end the stream. It lets a benchmark script an ideal model that reacts to results as they arrive.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import Interrupt, ToolSpec
from counterpoint.protocol.cml import format_interrupts
from counterpoint.runtime.backends._cml_messages import cml_messages
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams, Segment, Token

__all__ = ["ScriptPolicy", "ScriptedDecoder", "ScriptedModel", "scripted_tokens"]

ScriptPolicy = Callable[[Sequence[str]], str | None]

_TOKEN_RE = re.compile(r" ?[A-Za-z]+| ?[0-9]{1,3}|\s+(?=\S)|\s+| ?[^A-Za-z0-9\s]")


def scripted_tokens(text: str) -> list[str]:
    """Split text into BPE-like pieces: words with a leading space, short digit runs, symbols."""
    pieces = _TOKEN_RE.findall(text)
    assert "".join(pieces) == text
    return pieces


class ScriptedModel:
    """A Model that replays a script.

    Args:
        script: the text to emit, a sequence of parts, or a policy (see the module docstring).
        token_time_s: time to generate one token (e.g. 0.005 for the paper's cloud emulation).
        prefill_time_per_token_s: time to prefill one token of extended text.
        ttft_s: time to first token after ``start`` (prompt prefill).
        name: the name reported in traces.
    """

    def __init__(
        self,
        script: str | Sequence[str] | ScriptPolicy,
        *,
        token_time_s: float = 0.0,
        prefill_time_per_token_s: float = 0.0,
        ttft_s: float = 0.0,
        name: str = "scripted",
    ) -> None:
        self.policy: ScriptPolicy | None = None
        self.parts: tuple[str, ...] = ()
        if callable(script):
            self.policy = script
        else:
            self.parts = (script,) if isinstance(script, str) else tuple(script)
            if not self.parts:
                raise ValueError("a ScriptedModel needs at least one part of script")
        self.token_time_s = token_time_s
        self.prefill_time_per_token_s = prefill_time_per_token_s
        self.ttft_s = ttft_s
        self._name = name
        self.decoders: list[ScriptedDecoder] = []

    @property
    def name(self) -> str:
        return self._name

    def render(self, messages: Sequence[Message]) -> Prompt:
        turns = [Segment(f"<|{m.role}|>\n{m.content}\n") for m in messages]
        return Prompt((*turns, Segment("<|assistant|>\n")))

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> ScriptedDecoder:
        """Open a decoder over the script (messages are rendered with the protocol and tools)."""
        if isinstance(context, Prompt):
            prompt = context
        else:
            prompt = self.render(cml_messages(context, tools))
        decoder = ScriptedDecoder(self, prompt, params or SamplingParams(), tools=tools)
        self.decoders.append(decoder)
        if self.ttft_s:
            await asyncio.sleep(self.ttft_s)
        return decoder

    @property
    def extensions(self) -> list[str]:
        """Every text extended into any decoder of this model, in order (for tests)."""
        return [text for d in self.decoders for text in d.extensions]


class ScriptedDecoder:
    """A decoder over a ScriptedModel's script."""

    def __init__(
        self,
        model: ScriptedModel,
        prompt: Prompt,
        params: SamplingParams,
        *,
        tools: Sequence[ToolSpec] = (),
    ) -> None:
        self._model = model
        self.prompt = prompt
        self.tools = tuple(tools)
        """The tools the session offered (as data)."""
        self.injected: list[Interrupt] = []
        """Every result and user message injected, in order (structured, for tests)."""
        self._params = params
        self._closed = False
        self.extensions: list[str] = []
        self.generated: list[str] = []
        self._prompt_tokens = len(scripted_tokens(prompt.text))
        self._next_due: float | None = None
        self._parts_taken = 0
        self._extended_since_part = False
        self._tokens: list[str] = []
        self._pos = 0
        self._waiting = False
        self._done = False

    def _next_part(self) -> str | None:
        """The next part: text, ``""`` to wait for the next extend, or None for the end."""
        model = self._model
        if model.policy is not None:
            part = model.policy(list(self.extensions))
        elif self._parts_taken and not self._extended_since_part:
            return ""
        else:
            taken = self._parts_taken
            part = model.parts[taken] if taken < len(model.parts) else None
        self._parts_taken += 1
        self._extended_since_part = False
        return part

    @property
    def params(self) -> SamplingParams:
        """The sampling parameters the decoder was opened with (for tests)."""
        return self._params

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    @property
    def generated_tokens(self) -> int:
        return len(self.generated)

    @property
    def text(self) -> str:
        return "".join(self.generated)

    async def step(self) -> Token | None:
        if self._closed or self._done or self._waiting:
            return None
        if len(self.generated) >= self._params.max_tokens:
            return None
        while self._pos >= len(self._tokens):
            part = self._next_part()
            if part is None:
                self._done = True
                return None
            if not part:
                self._waiting = True
                return None
            self._tokens, self._pos = scripted_tokens(part), 0
        await self._pace()
        piece = self._tokens[self._pos]
        self._pos += 1
        self.generated.append(piece)
        tail = "".join(self.generated[-16:])
        if any(stop in tail for stop in self._params.stop):
            self._pos = len(self._tokens)
        return Token(id=len(self.generated) - 1, text=piece)

    async def _pace(self) -> None:
        """Sleep so that tokens come out every ``token_time_s``, without drift.

        Small delays from the caller are absorbed (the schedule is kept); after a long stall (the
        session waited on a tool) the schedule restarts from now.
        """
        dt = self._model.token_time_s
        if dt <= 0:
            return
        now = time.perf_counter()
        late = self._next_due is None or now - self._next_due > dt
        due = now + dt if late or self._next_due is None else self._next_due + dt
        self._next_due = due
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)

    async def inject(self, items: Sequence[Interrupt]) -> None:
        """Record ``items`` and extend with their CML interrupts (neutralised)."""
        if self._closed:
            raise RuntimeError("inject() on a closed decoder")
        self.injected.extend(items)
        await self.extend(format_interrupts(items))

    async def extend(self, text: str) -> None:
        if self._closed:
            raise RuntimeError("extend() on a closed decoder")
        self.extensions.append(text)
        n = len(scripted_tokens(text))
        self._prompt_tokens += n
        if self._model.prefill_time_per_token_s:
            await asyncio.sleep(n * self._model.prefill_time_per_token_s)
        self._next_due = None
        self._extended_since_part = True
        self._waiting = False

    async def close(self) -> None:
        self._closed = True
