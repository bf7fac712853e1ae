"""The session: one live generation driven through the CML protocol.

A :class:`Session` owns one decoder and runs the loop of DESIGN.md: step one token, feed it to the
CML parser, dispatch every call the parser completes to the tool executor, and inject queued results
as interrupts whenever the parser is outside a critical section. Three modes share the protocol so
that comparing them isolates scheduling:

- ``sync``: stop at each call, run it, inject its result, continue;
- ``parallel``: collect the calls of a turn, run them together when the turn ends (end of stream or
  a trap), inject every result at once;
- ``async``: dispatch each call the moment it is written, keep generating, inject each result at the
  next safe point (AsyncLM).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from counterpoint.runtime.backends.base import Decoder, Message, Model, Prompt, SamplingParams
from counterpoint.runtime.calls import Call, CallResult
from counterpoint.runtime.callsyntax import CallSyntaxError, parse_call
from counterpoint.runtime.cml import (
    CallBlock,
    CMLParser,
    MarkupError,
    ParseEvent,
    TextPiece,
    TrapMarker,
    format_interrupt,
)
from counterpoint.runtime.events import (
    Done,
    Event,
    InterruptInjected,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
)
from counterpoint.tools.executor import Executor
from counterpoint.tools.toolset import Toolset

__all__ = ["INTR_BAN", "Limits", "Mode", "PendingPolicy", "RunResult", "Session"]

Mode = Literal["sync", "parallel", "async"]
PendingPolicy = Literal["wait", "cancel"]
MODES: tuple[Mode, ...] = ("sync", "parallel", "async")
INTR_BAN = "[INTR"  # also catches near-misses such as "[INTR_END]"
_STRAY = frozenset({"[END]", "[HEAD]"})


@dataclass(frozen=True)
class Limits:
    """Bounds on one session.

    A run that hits ``max_tokens`` ends with status ``limit``. A call past ``max_calls``, or made
    while ``max_pending`` calls are still in flight, comes back to the model as an error interrupt.
    ``max_concurrency`` bounds how many of the session's calls execute at once (the others queue);
    ``call_timeout_s`` applies to tools that set no timeout of their own.
    """

    max_tokens: int = 1024
    max_calls: int = 64
    max_pending: int = 32
    max_turns: int = 64
    max_concurrency: int | None = None
    call_timeout_s: float | None = 60.0


@dataclass
class RunResult:
    """What a finished run produced.

    ``text`` is the model's answer with the protocol markup removed; ``generated`` is everything
    the model wrote; ``transcript`` is that with every interrupt injected, in order. Times are
    seconds since the run started.
    """

    run_id: str
    status: Literal["ok", "error", "cancelled", "limit"]
    text: str
    transcript: str
    generated: str = ""
    calls: list[CallResult] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    wall_s: float = 0.0
    first_token_t: float | None = None
    last_token_t: float | None = None
    error: str | None = None

    @property
    def latency_s(self) -> float:
        """End-to-end latency from the first generated token to the last (the paper's measure)."""
        if self.first_token_t is None or self.last_token_t is None:
            return 0.0
        return self.last_token_t - self.first_token_t


class Session:
    """Drives one generation of ``model`` with ``tools`` in a given ``mode``.

    Events go to ``emit`` (the agent fans them out to the tracer and to stream consumers).
    """

    def __init__(
        self,
        model: Model,
        tools: Toolset,
        *,
        mode: Mode = "async",
        params: SamplingParams | None = None,
        limits: Limits | None = None,
        pending_policy: PendingPolicy = "wait",
        emit: Callable[[Event], None] | None = None,
        name: str = "session",
        run_id: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        self.model = model
        self.tools = tools
        self.mode: Mode = mode
        self.limits = limits or Limits()
        base = params or SamplingParams()
        banned = tuple(dict.fromkeys((*base.banned, INTR_BAN)))
        self.params = base.model_copy(
            update={"banned": banned, "max_tokens": self.limits.max_tokens}
        )
        self.pending_policy: PendingPolicy = pending_policy
        self._emit_fn = emit
        self.name = name
        self.run_id = run_id or uuid.uuid4().hex
        self.parent_run_id = parent_run_id
        self._t0 = 0.0
        self._parser = CMLParser()
        self._executor = Executor(
            tools,
            run_id=self.run_id,
            clock=self._clock,
            emit=self._emit,
            max_concurrency=self.limits.max_concurrency,
            default_timeout_s=self.limits.call_timeout_s,
        )
        self._decoder: Decoder | None = None
        self._local: list[CallResult] = []  # results made by the session itself (bad markup...)
        self._turn_calls: list[Call] = []  # parallel mode: calls waiting for the turn's end
        self._results: list[CallResult] = []
        self._text: list[str] = []
        self._transcript: list[str] = []
        self._generated: list[str] = []
        self._calls = 0
        self._interrupts = 0
        self._tokens = 0
        self._first_token_t: float | None = None
        self._last_token_t: float | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _clock(self) -> float:
        return time.perf_counter() - self._t0

    def _emit(self, event: Event) -> None:
        if self._emit_fn is not None:
            self._emit_fn(event)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, context: Sequence[Message] | Prompt) -> RunResult:
        """Run the session to the end and return its result. Cancelling it cancels every call."""
        self._t0 = time.perf_counter()
        prompt = context if isinstance(context, Prompt) else self.model.render(context)
        self._emit(
            RunStarted(
                run_id=self.run_id,
                t=0.0,
                name=self.name,
                model=self.model.name,
                mode=self.mode,
                prompt=_last_user_text(context),
                parent_run_id=self.parent_run_id,
                wall_time=time.time(),
            )
        )
        status: Literal["ok", "error", "cancelled", "limit"] = "ok"
        error: str | None = None
        try:
            self._decoder = await self.model.start(prompt, self.params)
            _bind_run(self._decoder, self.run_id, self._t0)
            status = await self._loop(self._decoder)
        except asyncio.CancelledError:
            status, error = "cancelled", "the run was cancelled"
            raise
        except Exception as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            await self._executor.aclose()
            if self._decoder is not None:
                await self._decoder.close()
            result = self._result(status, error)
            self._emit(
                Done(
                    run_id=self.run_id,
                    t=self._clock(),
                    status=status,
                    text=result.text,
                    error=error,
                    usage=result.usage,
                    first_token_t=self._first_token_t,
                    last_token_t=self._last_token_t,
                )
            )
        return result

    async def _loop(self, decoder: Decoder) -> Literal["ok", "limit"]:
        turns = 0
        while True:
            if self._has_ready() and not self._parser.in_critical_section:
                await self._inject(decoder, self._take_ready())
            token = await decoder.step()
            if token is None:
                await self._handle_all(decoder, self._parser.finish())
                if decoder.generated_tokens >= self.params.max_tokens:
                    return "limit"
                turns += 1
                if (
                    not await self._end_of_turn(decoder, reason="eos")
                    or turns > self.limits.max_turns
                ):
                    return "ok"
                continue
            self._on_token(token.text, token.id)
            await self._handle_all(decoder, self._parser.feed(token.text))

    def _on_token(self, text: str, token_id: int) -> None:
        now = self._clock()
        if self._first_token_t is None:
            self._first_token_t = now
        self._last_token_t = now
        self._emit(
            TokenEvent(run_id=self.run_id, t=now, text=text, token_id=token_id, index=self._tokens)
        )
        self._tokens += 1
        self._transcript.append(text)
        self._generated.append(text)

    async def _handle_all(self, decoder: Decoder, events: list[ParseEvent]) -> None:
        for ev in events:
            if isinstance(ev, TextPiece):
                self._text.append(ev.text)
            elif isinstance(ev, CallBlock):
                await self._on_call(decoder, ev)
            elif isinstance(ev, TrapMarker):
                await self._end_of_turn(decoder, reason="trap")
            elif isinstance(ev, MarkupError) and ev.raw.strip() not in _STRAY:
                # a stray [END]/[HEAD] is dropped silently: telling a model about it only adds noise
                self._post_error(ev.call_id or "error", ev.message, raw=ev.raw)

    async def _on_call(self, decoder: Decoder, block: CallBlock) -> None:
        try:
            parsed = parse_call(block.body)
        except CallSyntaxError as exc:
            self._post_error(block.call_id, str(exc), raw=block.body)
            return
        call = Call(
            id=block.call_id,
            name=parsed.name,
            arguments=dict(parsed.arguments),
            positional=tuple(parsed.positional),
            raw=block.body,
        )
        if self._calls >= self.limits.max_calls:
            self._post_error(
                call.id, f"call limit reached ({self.limits.max_calls}): answer with what you have"
            )
            return
        if len(self._executor.pending) >= self.limits.max_pending:
            self._post_error(
                call.id,
                f"too many calls in flight ({self.limits.max_pending}): wait for results first",
            )
            return
        self._calls += 1
        if self.mode == "async":
            self._executor.submit(call)
        elif self.mode == "sync":
            self._executor.submit(call)
            await self._wait(decoder, reason="sync_call", everything=True)
        else:
            self._turn_calls.append(call)

    async def _end_of_turn(self, decoder: Decoder, *, reason: Literal["trap", "eos"]) -> bool:
        """The model ended a turn (trap or end of stream). Return False when the run is over."""
        if self.mode == "parallel" and self._turn_calls:
            calls, self._turn_calls = self._turn_calls, []
            for call in calls:
                self._executor.submit(call)
            await self._wait(decoder, reason="turn_end", everything=True)
            return True
        if self._executor.pending:
            if reason == "eos" and self.pending_policy == "cancel":
                await self._executor.aclose()
                return False
            await self._wait(decoder, reason=reason, everything=False)
            return True
        if self._has_ready():
            await self._inject(decoder, self._take_ready())
            return True
        return False

    async def _wait(
        self,
        decoder: Decoder,
        *,
        reason: Literal["trap", "eos", "turn_end", "sync_call"],
        everything: bool,
    ) -> None:
        pending = sorted(self._executor.pending)
        self._emit(
            TrapEvent(
                run_id=self.run_id, t=self._clock(), phase="enter", pending=pending, reason=reason
            )
        )
        results = await (self._executor.wait_all() if everything else self._executor.wait())
        self._emit(
            TrapEvent(
                run_id=self.run_id,
                t=self._clock(),
                phase="exit",
                pending=sorted(self._executor.pending),
                reason=reason,
            )
        )
        await self._inject(decoder, [*self._take_local(), *results])

    # -- interrupts -------------------------------------------------------------------------

    def _post_error(self, call_id: str, message: str, *, raw: str = "") -> None:
        now = self._clock()
        call = Call(id=call_id, name="", raw=raw)
        text = json.dumps({"error": message}, ensure_ascii=False)
        self._local.append(
            CallResult(call=call, ok=False, text=text, error=message, started=now, finished=now)
        )

    def _has_ready(self) -> bool:
        return bool(self._local) or self._executor.ready()

    def _take_local(self) -> list[CallResult]:
        local, self._local = self._local, []
        return local

    def _take_ready(self) -> list[CallResult]:
        return [*self._take_local(), *self._executor.drain()]

    async def _inject(self, decoder: Decoder, results: list[CallResult]) -> None:
        if not results:
            return
        text = "".join(format_interrupt(r.call.id, r.text) for r in results)
        before = decoder.prompt_tokens
        start = self._clock()
        await decoder.extend(text)
        self._interrupts += len(results)
        self._results.extend(r for r in results if r.call.name)
        self._transcript.append(text)
        self._emit(
            InterruptInjected(
                run_id=self.run_id,
                t=self._clock(),
                call_ids=[r.call.id for r in results],
                text=text,
                tokens=decoder.prompt_tokens - before,
                duration_s=self._clock() - start,
            )
        )

    # -- result -----------------------------------------------------------------------------

    def _result(
        self, status: Literal["ok", "error", "cancelled", "limit"], error: str | None
    ) -> RunResult:
        decoder = self._decoder
        usage = Usage(
            input_tokens=decoder.prompt_tokens if decoder is not None else 0,
            output_tokens=self._tokens,
            calls=self._calls,
            interrupts=self._interrupts,
        )
        return RunResult(
            run_id=self.run_id,
            status=status,
            text="".join(self._text).strip(),
            transcript="".join(self._transcript),
            generated="".join(self._generated),
            calls=list(self._results),
            usage=usage,
            wall_s=self._clock(),
            first_token_t=self._first_token_t,
            last_token_t=self._last_token_t,
            error=error,
        )


def _bind_run(decoder: Decoder, run_id: str, t0: float) -> None:
    """Tell a decoder that wants it which run it serves (KV-reuse decoders trace with it)."""
    bind = getattr(decoder, "bind_run", None)
    if callable(bind):
        bind(run_id, t0)


def _last_user_text(context: Sequence[Message] | Prompt) -> str:
    if isinstance(context, Prompt):
        return context.text
    users = [m.content for m in context if m.role == "user"]
    return users[-1] if users else ""
