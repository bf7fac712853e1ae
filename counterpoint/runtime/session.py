"""The session: one live generation driven through the CML protocol.

A :class:`Session` owns one decoder and runs the loop of DESIGN.md: step one token, feed it to the
CML parser (a native tool call arrives already structured), dispatch every call the model
finishes writing to the tool executor, and inject queued results, and messages the caller sent
with :meth:`Session.interrupt`, whenever the parser is outside a critical section. What to do when
a call is written and when a turn ends is the mode's decision (:mod:`counterpoint.runtime.modes`).

Every step is an event on the session's :class:`~counterpoint.core.bus.EventBus`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from counterpoint.core.bus import EventBus, RunScope
from counterpoint.core.calls import Call, CallResult, Interrupt, UserInterrupt
from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallWritten,
    Done,
    InterruptInjected,
    ProtocolViolation,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
    UserMessage,
)
from counterpoint.errors import CounterpointError
from counterpoint.protocol.callsyntax import MAX_CALL_CHARS, CallSyntaxError, parse_call
from counterpoint.protocol.cml import (
    CallBlock,
    CMLParser,
    MarkupError,
    ParseEvent,
    TextPiece,
    TrapMarker,
    format_interrupts,
)
from counterpoint.runtime.backends.base import Decoder, Message, Model, Prompt, SamplingParams
from counterpoint.runtime.modes import MODES, Mode, PendingPolicy, TurnEnd, WaitReason, strategy_for
from counterpoint.tools.executor import Executor
from counterpoint.tools.toolset import Toolset

__all__ = ["INTR_BAN", "MODES", "Limits", "Mode", "PendingPolicy", "RunResult", "Session"]

INTR_BAN = "[INTR"  # also catches near-misses such as "[INTR_END]"
_STRAY = frozenset({"[END]", "[HEAD]"})

Status = Literal["ok", "error", "cancelled", "limit"]


@dataclass(frozen=True)
class Limits:
    """Bounds on one session.

    A run that hits ``max_tokens`` ends with status ``limit``. A call past ``max_calls``, or made
    while ``max_pending`` calls are still in flight, comes back to the model as an error interrupt.
    ``max_concurrency`` bounds how many of the session's calls execute at once (the others queue);
    ``call_timeout_s`` applies to tools that set no timeout of their own. A call body longer than
    ``max_call_chars`` is refused unread (an error interrupt that names the limit).

    ``max_identical_calls`` bounds how often one call (the same function with the same
    arguments) runs in a session: a further copy is not run and comes back as an error interrupt
    that names the first copy, whose result the model already has. Small models fall into
    loops of the same call until the token limit; this breaks them. ``None`` lifts the bound
    (a tool whose every call differs, such as a die roll, may need that).
    """

    max_tokens: int = 1024
    max_calls: int = 64
    max_pending: int = 32
    max_turns: int = 64
    max_concurrency: int | None = None
    call_timeout_s: float | None = 60.0
    max_call_chars: int = MAX_CALL_CHARS
    max_identical_calls: int | None = 2


@dataclass
class RunResult:
    """What a finished run produced.

    ``text`` is the model's answer with the protocol markup removed; ``generated`` is everything
    the model wrote; ``transcript`` is that with every interrupt injected, in order. Times are
    seconds since the run started.
    """

    run_id: str
    status: Status
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

    Events go on ``bus`` (a new one by default; an agent or a workflow passes the bus of its run
    tree); ``emit``, if given, is subscribed to it. A subscriber that raises is detached, never
    fatal to the run.
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
        bus: EventBus | None = None,
        emit: Callable[[BaseEvent], None] | None = None,
        name: str = "session",
        run_id: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        self.model = model
        self.tools = tools
        self.mode: Mode = mode
        self._strategy = strategy_for(mode)
        self.limits = limits or Limits()
        base = params or SamplingParams()
        banned = tuple(dict.fromkeys((*base.banned, INTR_BAN)))
        self.params = base.model_copy(
            update={"banned": banned, "max_tokens": self.limits.max_tokens}
        )
        self.pending_policy: PendingPolicy = pending_policy
        self.bus = bus if bus is not None else EventBus()
        if emit is not None:
            self.bus.subscribe(emit)
        self.name = name
        self.run_id = run_id or uuid.uuid4().hex
        self.parent_run_id = parent_run_id
        self._t0 = time.perf_counter()
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
        self._user: list[UserInterrupt] = []  # user messages waiting for a safe point
        self._user_arrived = asyncio.Event()
        self._started = False
        self._over = False
        self._results: list[CallResult] = []
        self._unfinished: dict[str, Call] = {}  # written calls with no CallFinished yet
        self._text: list[str] = []
        self._transcript: list[str] = []
        self._generated: list[str] = []
        self._generated_chars = 0
        self._calls = 0
        self._identical: dict[str, list[str]] = {}  # call key -> ids of the copies that ran
        self._interrupts = 0
        self._tokens = 0
        self._first_token_t: float | None = None
        self._last_token_t: float | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _clock(self) -> float:
        return time.perf_counter() - self._t0

    def _emit(self, event: BaseEvent) -> None:
        if isinstance(event, CallFinished):
            self._unfinished.pop(event.call_id, None)
        self.bus.publish(event)

    # -- the caller's side ------------------------------------------------------------------

    def interrupt(self, text: str) -> None:
        """Send the model a message while it runs (a user interrupt).

        It is injected at the next safe point (outside any call block), all queued messages at
        once, and wakes a model that is waiting for results. Raises
        :class:`~counterpoint.errors.CounterpointError` once the run is over.
        """
        if self._over:
            raise CounterpointError("the run is over: start a new run to send another message")
        if not text.strip():
            raise CounterpointError("an interrupt needs some text")
        now = self._clock() if self._started else 0.0
        self._user.append(UserInterrupt(text=text, t=now))
        self._user_arrived.set()
        if self._started:  # before the run starts, run() reports it right after RunStarted
            self._emit(UserMessage(run_id=self.run_id, t=now, text=text))

    def cancel_call(self, call_id: str) -> bool:
        """Cancel one running tool call; the run goes on.

        The call's result is ``cancelled`` (a ``call_finished`` event says so) and reaches the
        model as an interrupt at the next safe point, like any result. Returns whether a call
        with that id was running.
        """
        if self._over:
            return False
        return self._executor.cancel(call_id)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, context: Sequence[Message] | Prompt) -> RunResult:
        """Run the session to the end and return its result. Cancelling it cancels every call."""
        if self._started:
            raise CounterpointError("a session runs once: open a new session for another run")
        self._started = True
        self._t0 = time.perf_counter()
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
        for early in self._user:  # messages sent before the run started
            self._emit(UserMessage(run_id=self.run_id, t=0.0, text=early.text))
        status: Status = "ok"
        error: str | None = None
        try:
            self._decoder = await self.model.start(
                context,
                self.params,
                tools=self.tools.specs(),
                async_results=not self._strategy.native_calls,
                scope=RunScope(self.run_id, self._t0, self.bus),
            )
            status = await self._loop(self._decoder)
        except asyncio.CancelledError:
            status, error = "cancelled", "the run was cancelled"
            raise
        except Exception as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._over = True
            await self._executor.aclose()
            for call in list(self._unfinished.values()):  # e.g. a parallel turn cut by a limit
                self._finished_unrun(call, "not run: the run ended before this call started")
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
            if self.has_ready() and not self._parser.in_critical_section:
                await self.inject_ready()
            token = await decoder.step()
            if token is None:
                await self._handle_all(self._parser.finish())
                if decoder.generated_tokens >= self.params.max_tokens:
                    return "limit"
                turns += 1
                if not await self._turn_end("eos") or turns > self.limits.max_turns:
                    return "ok"
                continue
            if token.call is not None:
                await self._on_native_call(token.call, token.call_error)
                continue
            self._on_token(token.text, token.id)
            await self._handle_all(self._parser.feed(token.text))

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
        self._generated_chars += len(text)

    async def _handle_all(self, events: list[ParseEvent]) -> None:
        for ev in events:
            if isinstance(ev, TextPiece):
                self._text.append(ev.text)
            elif isinstance(ev, CallBlock):
                await self._on_block(ev)
            elif isinstance(ev, TrapMarker):
                await self._turn_end("trap")
            elif isinstance(ev, MarkupError) and ev.raw.strip() not in _STRAY:
                # a stray [END]/[HEAD] is dropped silently: telling a model about it only adds noise
                self._violation(ev.call_id, ev.message, ev.raw)

    async def _on_block(self, block: CallBlock) -> None:
        try:
            parsed = parse_call(block.body, max_chars=self.limits.max_call_chars)
        except CallSyntaxError as exc:
            self._violation(block.call_id, str(exc), block.raw)
            return
        call = Call(
            id=block.call_id,
            name=parsed.name,
            arguments=dict(parsed.arguments),
            positional=tuple(parsed.positional),
            raw=block.body,
        )
        await self._on_call(call, native=False)

    async def _on_native_call(self, call: Call, error: str | None) -> None:
        self._parser.reserve_id(call.id)
        now = self._clock()
        if self._first_token_t is None:
            self._first_token_t = now
        self._last_token_t = now
        if error is not None:
            self._violation(call.id, f"{call.name}: {error}", call.raw)
            return
        await self._on_call(call, native=True)

    async def _on_call(self, call: Call, *, native: bool) -> None:
        self._emit(
            CallWritten(
                run_id=self.run_id,
                t=self._clock(),
                call_id=call.id,
                name=call.name,
                arguments=call.arguments,
                positional=list(call.positional),
                raw=call.raw,
                offset=self._generated_chars,
                token_index=max(0, self._tokens - 1),
                native=native,
            )
        )
        self._unfinished[call.id] = call
        if self._calls >= self.limits.max_calls:
            self._refuse(
                call, f"call limit reached ({self.limits.max_calls}): answer with what you have"
            )
            return
        if len(self._executor.pending) >= self.limits.max_pending:
            self._refuse(
                call,
                f"too many calls in flight ({self.limits.max_pending}): wait for results first",
            )
            return
        key = _identity(call)
        copies = self._identical.setdefault(key, [])
        bound = self.limits.max_identical_calls
        if bound is not None and len(copies) >= bound:
            self._refuse(
                call,
                f"{call.name} already ran {len(copies)} times with these same arguments (first "
                f"as {copies[0]}); not run again: use that result, or answer",
            )
            return
        copies.append(call.id)
        self._calls += 1
        await self._strategy.on_call(self, call)

    async def _turn_end(self, reason: TurnEnd) -> bool:
        return await self._strategy.on_turn_end(self, reason)

    # -- the Driver protocol (what modes ask of the session) ----------------------------------

    def submit(self, call: Call) -> None:
        self._executor.submit(call)

    def has_pending(self) -> bool:
        return bool(self._executor.pending)

    def has_ready(self) -> bool:
        return bool(self._local) or bool(self._user) or self._executor.ready()

    async def cancel_pending(self) -> None:
        await self._executor.aclose()

    async def inject_ready(self) -> None:
        await self._inject(self._take_ready())

    async def wait(self, *, reason: WaitReason, everything: bool) -> None:
        pending = sorted(self._executor.pending)
        self._emit(
            TrapEvent(
                run_id=self.run_id, t=self._clock(), phase="enter", pending=pending, reason=reason
            )
        )
        if everything:
            results = await self._executor.wait_all()
        else:
            results = await self._wait_one_or_user()
        self._emit(
            TrapEvent(
                run_id=self.run_id,
                t=self._clock(),
                phase="exit",
                pending=sorted(self._executor.pending),
                reason=reason,
            )
        )
        await self._inject([*self._take_local(), *results, *self._take_user()])

    async def _wait_one_or_user(self) -> list[CallResult]:
        """The next results, or nothing if a user message arrives first (it is injected then)."""
        if self._user:
            return self._executor.drain()
        self._user_arrived.clear()
        results = asyncio.ensure_future(self._executor.wait())
        user = asyncio.ensure_future(self._user_arrived.wait())
        try:
            await asyncio.wait({results, user}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            user.cancel()
            if not results.done():
                results.cancel()  # Queue.get() gives up without losing a queued result
        return results.result() if results.done() and not results.cancelled() else []

    # -- interrupts -------------------------------------------------------------------------

    def _violation(self, call_id: str | None, message: str, raw: str) -> None:
        self._emit(
            ProtocolViolation(
                run_id=self.run_id, t=self._clock(), call_id=call_id, message=message, raw=raw
            )
        )
        self._post_error(call_id or "error", message, raw=raw)

    def _refuse(self, call: Call, message: str) -> None:
        """A written call the session will not run: an error result, and its CallFinished."""
        result = self._post_error(call.id, message, raw=call.raw)
        self._finished_unrun(call, message, result.text)

    def _finished_unrun(self, call: Call, message: str, text: str | None = None) -> None:
        now = self._clock()
        self._emit(
            CallFinished(
                run_id=self.run_id,
                t=now,
                call_id=call.id,
                name=call.name,
                ok=False,
                result=text if text is not None else _error_text(message),
                error=message,
                started=now,
                duration_s=0.0,
                attempts=0,
            )
        )

    def _post_error(self, call_id: str, message: str, *, raw: str = "") -> CallResult:
        now = self._clock()
        call = Call(id=call_id, name="", raw=raw)
        result = CallResult(
            call=call, ok=False, text=_error_text(message), error=message, started=now, finished=now
        )
        self._local.append(result)
        return result

    def _take_local(self) -> list[CallResult]:
        local, self._local = self._local, []
        return local

    def _take_user(self) -> list[UserInterrupt]:
        user, self._user = self._user, []
        return user

    def _take_ready(self) -> list[Interrupt]:
        return [*self._take_local(), *self._executor.drain(), *self._take_user()]

    async def _inject(self, items: Sequence[Interrupt]) -> None:
        if not items or self._decoder is None:
            return
        decoder = self._decoder
        text = format_interrupts(items)
        before = decoder.prompt_tokens
        start = self._clock()
        await decoder.inject(items)
        results = [r for r in items if isinstance(r, CallResult)]
        self._interrupts += len(items)
        self._results.extend(r for r in results if r.call.name)
        self._transcript.append(text)
        self._emit(
            InterruptInjected(
                run_id=self.run_id,
                t=self._clock(),
                call_ids=[r.call.id if isinstance(r, CallResult) else "user" for r in items],
                text=text,
                tokens=decoder.prompt_tokens - before,
                duration_s=self._clock() - start,
            )
        )

    # -- result -----------------------------------------------------------------------------

    def _result(self, status: Status, error: str | None) -> RunResult:
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


def _error_text(message: str) -> str:
    """An error as the model reads it: ``{"error": "..."}``."""
    return json.dumps({"error": message}, ensure_ascii=False)


def _last_user_text(context: Sequence[Message] | Prompt) -> str:
    if isinstance(context, Prompt):
        return context.text
    users = [m.content for m in context if m.role == "user"]
    return users[-1] if users else ""


def _identity(call: Call) -> str:
    """What makes two calls the same call: the function and its arguments (in any order)."""
    return json.dumps(
        [call.name, call.arguments, list(call.positional)], sort_keys=True, default=repr
    )
