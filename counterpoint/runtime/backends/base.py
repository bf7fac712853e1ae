"""The Model / Decoder seam.

Data crosses it as data, never as text to be parsed back:

- :meth:`Model.start` takes chat messages and the tools' specs; rendering them (a chat template
  and the CML protocol, or a server's native ``tools``) is the backend's job. A local backend also
  accepts an already rendered :class:`Prompt`; a backend that cannot represent what it is given
  raises a :class:`~counterpoint.errors.ConfigError` that says why, never falls back silently.
- :meth:`Decoder.step` produces one :class:`Token`; a native tool call comes out as a token whose
  :attr:`Token.call` is the structured call (and whose text is empty).
- :meth:`Decoder.inject` takes call results and user messages as data: a CML backend writes them
  as ``[INTR]`` blocks with their text neutralised (:mod:`counterpoint.protocol.escape`), a chat
  server gets ``role: "tool"`` and ``role: "user"`` messages. :meth:`Decoder.extend` appends plain
  text to the context as it is.

All methods are coroutines: backends run their forward passes or network requests off the event
loop so tools and other sessions keep running.

Prompts are kept as a list of :class:`Segment` objects so that KV reuse can key cached state on the
shared parts (DESIGN.md, "KV reuse across agents").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import Call, Interrupt, ToolSpec

__all__ = [
    "Decoder",
    "Message",
    "Model",
    "Prompt",
    "SamplingParams",
    "Segment",
    "Token",
    "ToolChoice",
]

Role = Literal["system", "user", "assistant", "tool"]

ToolChoice = str
"""``"auto"`` (the model decides), ``"required"`` (the first thing it writes is a call),
``"none"`` (it may not call) or a function name (its first call is to that function)."""


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


@dataclass(frozen=True)
class Segment:
    """A piece of a rendered prompt.

    ``kind="template"`` is fixed text of a prompt template; ``kind="content"`` is shared content
    with an identity ``key`` (the user's question, agent X's output of step N) that KV reuse may
    serve from a cache instead of prefilling it again.
    """

    text: str
    kind: Literal["template", "content"] = "template"
    key: str | None = None


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: the exact text the model sees, kept as segments."""

    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @classmethod
    def of(cls, text: str) -> Prompt:
        return cls((Segment(text),))

    def __add__(self, other: Prompt) -> Prompt:
        return Prompt(self.segments + other.segments)


@dataclass(frozen=True)
class Token:
    """One generated token: its id in the model's vocabulary (-1 where unknown) and its text.

    ``call`` is set when the backend's model called a tool natively: the token then stands for
    the whole call, and its ``text`` is empty. ``call_error`` says why such a call cannot be run
    (its arguments are not a readable JSON object); the session tells the model.
    """

    id: int
    text: str
    logprob: float | None = field(default=None, compare=False)
    call: Call | None = None
    call_error: str | None = None


class SamplingParams(BaseModel):
    """How a decoder picks tokens. Greedy by default (``temperature=0``)."""

    model_config = ConfigDict(frozen=True)

    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1)
    stop: tuple[str, ...] = ()
    seed: int = 0
    banned: tuple[str, ...] = Field(
        default=(),
        description="Strings the model may never write (the runtime bans '[INTR]').",
    )
    tool_choice: ToolChoice = Field(
        default="auto",
        description=(
            "'auto': the model decides whether to call; 'required': the first thing it writes "
            "is a call; 'none': it may not call; a function name: its first call is to that "
            "function. The local backend enforces it while decoding; a backend that cannot "
            "ignores it."
        ),
    )

    repeat_calls: bool = Field(
        default=False,
        description=(
            "Whether the model may write a call it already wrote in this generation (the same "
            "function with the same arguments). When False, the local backend looks ahead at "
            "each call block the model starts after its first and, for a repeat, masks the token "
            "that opened it; until a result or a message is injected it may then open no block. "
            "A backend that cannot look ahead ignores it (the session's max_identical_calls "
            "still bounds repeats)."
        ),
    )

    call_threshold: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description=(
            "Greedy decoding only (temperature 0): where none of the generation's calls waits "
            "for its result, a call block opens only where the model gives opening one at "
            "least this probability (estimated: the mass of every token that can begin it, "
            "times the probability of the path that completed the marker). Greedy decoding "
            "picks the likeliest token, and a lone '[' often beats each word of an answer "
            "while the answer as a whole is likelier than a call; 0.5 picks the likelier of "
            "the two. 0 turns it off (the likeliest token decides). Sampling draws the call at "
            "its own probability and ignores it; so do unconstrained generations and backends "
            "that cannot see the model's distribution."
        ),
    )

    @field_validator("tool_choice")
    @classmethod
    def _choice(cls, v: str) -> str:
        if v in ("auto", "required", "none") or all(p.isidentifier() for p in v.split(".")):
            return v
        raise ValueError(
            f"tool_choice must be 'auto', 'required', 'none' or a function name, got {v!r}"
        )

    @field_validator("stop", "banned", mode="before")
    @classmethod
    def _tuple(cls, v: object) -> object:
        if isinstance(v, str):
            return (v,)
        if isinstance(v, list):
            return tuple(v)
        return v


@runtime_checkable
class Decoder(Protocol):
    """One live generation."""

    async def step(self) -> Token | None:
        """Generate one token; ``None`` at end of stream (EOS, a stop string, or max tokens)."""
        ...

    async def inject(self, items: Sequence[Interrupt]) -> None:
        """Append call results and user messages to the context, all at once.

        A CML backend writes each as ``[INTR] id [HEAD] text [END]`` (``user`` for a user
        message) with the text neutralised; a chat backend sends them as tool and user messages.
        Like :meth:`extend`, it re-opens a decoder that stopped.
        """
        ...

    async def extend(self, text: str) -> None:
        """Append plain ``text`` to the context (prefill it). Generation continues after it.

        Extending also re-opens a decoder that stopped at end of sequence or at a stop string (the
        end-of-sequence token itself is not part of the context, so the same assistant turn goes
        on). ``max_tokens`` counts every token the decoder generated over its life.
        """
        ...

    async def close(self) -> None:
        """Release the generation's resources. Idempotent."""
        ...

    @property
    def prompt_tokens(self) -> int:
        """Tokens prefilled so far (the prompt and every extension)."""
        ...

    @property
    def generated_tokens(self) -> int:
        """Tokens generated so far."""
        ...


@runtime_checkable
class Model(Protocol):
    """A model backend: opens generations on chat messages and tool specs."""

    @property
    def name(self) -> str:
        """A stable name for traces and reports (a path, a hub id, ``scripted``...)."""
        ...

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> Decoder:
        """Open a generation on ``context`` with ``tools`` available to the model.

        ``async_results``: results will be injected while the model is still writing (the
        ``async`` mode), so a backend whose native tool calls cannot take that uses CML instead.
        ``scope``: the run this generation serves, for backends that publish events of their own.
        """
        ...
