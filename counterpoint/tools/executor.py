"""The concurrent tool executor: each call is its own asyncio task, results arrive in completion
order, and every failure is a result written for the model, never an exception.

The session submits calls the moment the model finishes writing them and collects whatever has
finished at each safe point::

    async with Executor(toolset, run_id=run_id, clock=clock, emit=tracer.emit) as executor:
        executor.submit(call)               # returns at once; the call runs in its own task
        ...
        for result in executor.drain():     # every result ready now, in completion order
            inject(result.text)
        rest = await executor.wait_all()    # at the end of the turn

Every submitted call gets exactly one result and one ``CallFinished`` event, however it ends:
a tool's exception (``SystemExit`` and ``KeyboardInterrupt`` included: an argparse error inside a
tool is that call's failure, not the program's), a timeout, or a cancellation at any moment, even
before the call's task first ran.

Leaving the ``async with`` block (or :meth:`Executor.aclose`) cancels calls still running; so does
the cancellation or failure of the task that owns the executor (the task that created it, or the
first to submit). Calls cancelled that way still produce a (``cancelled``) result and a
``CallFinished`` event.

The tool itself runs in a task of its own, which the call only waits for: a tool cannot outlast
its deadline (the call is ``timed out`` then, whatever the tool does later) nor hold up a
cancellation. A timed-out or cancelled tool is cancelled and not waited for (nor does it keep its
concurrency slot); :meth:`Executor.aclose` gives the tools still running ``cancel_grace_s``
seconds (default 2) to stop, then logs a warning naming each one that would not (one that
swallows ``CancelledError``) and drops it: such a task may keep running in the background,
unreferenced by the executor, until it returns; whatever it returns is discarded. A sync tool's
thread cannot be stopped at all (see :mod:`counterpoint.tools._threads`); its result is discarded
too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import difflib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import tenacity
from pydantic_core import PydanticSerializationError, to_jsonable_python

from counterpoint.core.calls import Call, CallResult
from counterpoint.core.events import CallFinished, CallProgress, CallStarted, Event
from counterpoint.errors import ConfigError
from counterpoint.tools._errors import ToolArgumentError, ToolDefinitionError
from counterpoint.tools._progress import Progress
from counterpoint.tools.tool import Tool
from counterpoint.tools.toolset import ToolLike, Toolset

__all__ = ["Executor"]

_log = logging.getLogger(__name__)

_MAX_LISTED_TOOLS = 30
_sleep = asyncio.sleep  # the retry backoff's sleep (tests record the delays through it)


@dataclass
class _Outcome:
    """How one attempt ended."""

    ok: bool
    value: Any = None
    text: str = ""
    error: str | None = None
    retryable: bool = False


def _transient(outcome: _Outcome) -> bool:
    """Whether an attempt failed in a way that another attempt may not (retry it)."""
    return not outcome.ok and outcome.retryable


def _last_outcome(state: tenacity.RetryCallState) -> _Outcome:
    """The last attempt's outcome once the retries are spent (instead of tenacity's RetryError)."""
    assert state.outcome is not None
    last: _Outcome = state.outcome.result()
    return last


@dataclass
class _Active:
    """Whether an attempt still accepts progress reports (it stops when the attempt ends)."""

    running: bool = True


@dataclass
class _Record:
    """A started call: what its result needs, and whether it was posted (exactly once)."""

    call: Call
    started: float
    attempts: int = 0
    settled: bool = False


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def _exception_text(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _to_text(value: Any) -> str:
    """A ``str`` as is; anything else as compact JSON (raises ``ValueError`` or ``TypeError``)."""
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable_python(value), ensure_ascii=False, allow_nan=False)


async def _execute(tool: Tool, validated: dict[str, Any], progress: Progress) -> _Outcome:
    """Run one attempt of the tool (in its own task): every way it can end, as an outcome.

    Only ``CancelledError`` gets out. ``SystemExit`` and ``KeyboardInterrupt`` must not: asyncio
    re-raises them out of the event loop, which would end the user's program.
    """
    try:
        value = await tool._execute(validated, progress)
    except ToolArgumentError as exc:
        return _Outcome(ok=False, error=str(exc))
    except ToolDefinitionError as exc:  # e.g. a schema-only tool: it cannot ever run
        return _Outcome(ok=False, error=_exception_text(exc))
    except Exception as exc:  # a TimeoutError the tool raised itself included
        return _Outcome(ok=False, error=_exception_text(exc), retryable=True)
    except (SystemExit, KeyboardInterrupt) as exc:  # e.g. argparse's exit: the same every time
        return _Outcome(ok=False, error=_exception_text(exc))
    try:
        text = _to_text(value)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        return _Outcome(
            ok=False,
            error=(
                f"the tool returned a {type(value).__name__}, which cannot be turned into "
                f"JSON ({exc})"
            ),
        )
    return _Outcome(ok=True, value=value, text=text)


def _monotonic_since_now() -> Callable[[], float]:
    t0 = time.monotonic()
    return lambda: time.monotonic() - t0


class Executor:
    """Runs tool calls concurrently and hands back their results in completion order.

    Args:
        tools: The tools calls may name (a Toolset, or anything a Toolset is built from).
        run_id: Put on every event.
        clock: Seconds since the run started (default: since this executor was created); used
            for ``CallResult.started``/``finished`` and the events' ``t``.
        emit: Receives ``CallStarted``, ``CallProgress`` and ``CallFinished`` events. An exception
            it raises is logged and ignored: a broken sink never breaks a call.
        max_concurrency: Calls running at once over this executor (``None``: no limit).
        default_timeout_s: Timeout of one attempt for tools that set none (``None``: no timeout).
        max_result_chars: Longer result texts are cut to this length, with a note.
        cancel_grace_s: How long :meth:`aclose` waits for cancelled tools to stop (``0``: not
            at all). A tool still running after that (one that ignores cancellation) is logged
            as a warning and left behind.
    """

    def __init__(
        self,
        tools: Toolset | Iterable[ToolLike],
        *,
        run_id: str = "",
        clock: Callable[[], float] | None = None,
        emit: Callable[[Event], None] | None = None,
        max_concurrency: int | None = None,
        default_timeout_s: float | None = 60.0,
        max_result_chars: int = 4000,
        cancel_grace_s: float = 2.0,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigError("Executor max_concurrency must be >= 1 (or None for no limit)")
        if default_timeout_s is not None and not default_timeout_s > 0:
            raise ConfigError("Executor default_timeout_s must be > 0 (or None for no timeout)")
        if max_result_chars < 1:
            raise ConfigError("Executor max_result_chars must be >= 1")
        if not cancel_grace_s >= 0:
            raise ConfigError("Executor cancel_grace_s must be >= 0")
        self._tools = tools if isinstance(tools, Toolset) else Toolset(tools)
        self._run_id = run_id
        self._clock = clock if clock is not None else _monotonic_since_now()
        self._emit_cb = emit
        self._default_timeout_s = default_timeout_s
        self._max_result_chars = max_result_chars
        self._cancel_grace_s = cancel_grace_s
        self._limit = asyncio.Semaphore(max_concurrency) if max_concurrency is not None else None
        self._results: asyncio.Queue[CallResult] = asyncio.Queue()
        self._uncollected: collections.Counter[str] = collections.Counter()
        # A task per started call; it waits for the tool's own task (in _tool_tasks, with the
        # tool's name and the call's id) and posts the result.
        self._tasks: dict[asyncio.Task[None], _Record] = {}
        self._tool_tasks: dict[asyncio.Task[_Outcome], tuple[str, str]] = {}
        # Calls whose result is not posted yet. Not len(self._tasks): a task leaves that dict in a
        # done-callback, one loop iteration after it posted its result.
        self._running = 0
        self._closed = False
        self._owner: asyncio.Task[Any] | None = None
        with contextlib.suppress(RuntimeError):  # created outside a running loop: bind later
            self._bind_owner(asyncio.current_task())

    # -- public API ---------------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        """Start ``call`` and return at once (emits ``CallStarted`` once its arguments validate).

        Must be called from a coroutine on the event loop. Bad calls (unknown tool, invalid
        arguments, an id whose result is not collected yet) do not raise and are never started:
        their error result is ready at once, with a ``CallFinished`` event (``attempts=0``).
        """
        if self._closed:
            raise RuntimeError("this Executor is closed; create a new one to run more calls")
        asyncio.get_running_loop()  # raises RuntimeError outside the event loop, before any event
        if self._owner is None:
            self._bind_owner(asyncio.current_task())
        started = self._clock()
        in_flight = self._uncollected[call.id] > 0
        self._uncollected[call.id] += 1
        tool = self._tools.get(call.name)
        if in_flight:
            self._fail_now(call, started, f"call id {call.id!r} is already in use; use a new id")
            return
        if tool is None:
            self._fail_now(call, started, self._unknown_tool(call.name))
            return
        try:
            validated = tool.validate(call.arguments, call.positional)
        except ToolArgumentError as exc:
            self._fail_now(call, started, str(exc))
            return
        except Exception as exc:  # a bug in a custom Tool subclass; still a result
            self._fail_now(
                call, started, f"could not validate the arguments: {_exception_text(exc)}"
            )
            return
        # Only a call that passed validation is started: a rejected one gets CallFinished alone.
        self._emit(
            CallStarted(
                run_id=self._run_id,
                t=started,
                call_id=call.id,
                name=call.name,
                arguments=self._arguments_for_event(call, tool),
            )
        )
        record = _Record(call, started)
        task = asyncio.create_task(
            self._run(record, tool, validated), name=f"counterpoint-call-{call.id}"
        )
        self._running += 1
        self._tasks[task] = record
        # Posts the result of a call whose task ended without doing so: one cancelled before it
        # first ran (its coroutine never starts, so no handler in it runs), or a bug here.
        task.add_done_callback(self._call_done)

    @property
    def pending(self) -> frozenset[str]:
        """Ids of submitted calls whose result has not been collected yet."""
        return frozenset(cid for cid, n in self._uncollected.items() if n > 0)

    @property
    def running(self) -> int:
        """Calls still running (submitted, not finished)."""
        return self._running

    def ready(self) -> bool:
        """True when a result is waiting to be collected."""
        return not self._results.empty()

    def drain(self) -> list[CallResult]:
        """Every result ready now, in completion order; never waits."""
        out: list[CallResult] = []
        while not self._results.empty():
            out.append(self._collect(self._results.get_nowait()))
        return out

    async def wait(self, timeout: float | None = None) -> list[CallResult]:
        """Wait for at least one result (up to ``timeout`` seconds), then return every result
        ready. Returns ``[]`` on timeout, or at once when nothing is running or waiting."""
        if not self._results.empty():
            return self.drain()
        if not self._running:
            return []
        try:
            async with asyncio.timeout(timeout):
                first = await self._results.get()
        except TimeoutError:
            return []
        return [self._collect(first), *self.drain()]

    async def wait_all(self) -> list[CallResult]:
        """Wait until every submitted call has finished; return the uncollected results in
        completion order."""
        out: list[CallResult] = []
        while self._running or not self._results.empty():
            out.extend(await self.wait())
        return out

    def cancel(self, call_id: str) -> bool:
        """Cancel the running call ``call_id``; its (``cancelled``) result is posted like any
        other, so the model learns of it at the next safe point. Returns whether a running call
        had that id (a finished, unknown or never-started one is left as it is)."""
        for task, record in list(self._tasks.items()):
            if record.call.id == call_id and not record.settled:
                task.cancel()
                for tool_task, (_name, cid) in list(self._tool_tasks.items()):
                    if cid == call_id:
                        tool_task.cancel()
                return True
        return False

    async def aclose(self) -> None:
        """Cancel every running call and wait for the tools to stop, ``cancel_grace_s`` at most.

        The cancelled calls' results (``error == "cancelled"``) can still be drained; they are
        posted at once, without waiting for the tools. A tool still running after the grace
        period (one that ignores cancellation) is logged as a warning and left behind: the
        executor keeps no reference to it, but it may run on in the background until it returns.
        Tools that stop when cancelled leave no task behind. Idempotent; later :meth:`submit`
        calls raise ``RuntimeError``.
        """
        self._closed = True
        self._cancel_all()
        if self._tasks:
            # A call's task runs none of the tool's code: it stops at once, at its next await
            # (and its done-callback, which runs first, posts the result if it did not).
            await asyncio.wait(list(self._tasks))
        if not self._tool_tasks:
            return
        _, stuck = await asyncio.wait(list(self._tool_tasks), timeout=self._cancel_grace_s)
        for tool_task in stuck:
            name, call_id = self._tool_tasks.pop(tool_task, ("?", "?"))
            _log.warning(
                "tool %r (call %r) did not stop within %s s of being cancelled; left "
                "behind, it may keep running in the background",
                name,
                call_id,
                _seconds(self._cancel_grace_s),
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- running a call -----------------------------------------------------------------------

    async def _run(self, record: _Record, tool: Tool, validated: dict[str, Any]) -> None:
        timeout = tool.timeout_s if tool.timeout_s is not None else self._default_timeout_s

        async def attempt() -> _Outcome:
            record.attempts += 1
            return await self._attempt(record, tool, validated, timeout)

        # Retry a transient failure (an exception, a timeout) up to tool.retries times, waiting
        # retry_backoff_s, then twice as long for each further retry. An exception that escapes
        # an attempt (cancellation) is never retried: tenacity re-raises it at once, and
        # cancelling the backoff's sleep cancels the call.
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(tool.retries + 1),
            wait=tenacity.wait_exponential(multiplier=tool.retry_backoff_s),
            retry=tenacity.retry_if_result(_transient),
            retry_error_callback=_last_outcome,
            sleep=lambda seconds: _sleep(seconds),
        )
        try:
            outcome: _Outcome = await retrying(attempt)
        except asyncio.CancelledError:
            self._settle(record, _Outcome(ok=False, error="cancelled"))
            raise
        if outcome.error is not None and record.attempts > 1:
            outcome.error += f" (after {record.attempts} attempts)"
        self._settle(record, outcome)

    async def _attempt(
        self, record: _Record, tool: Tool, validated: dict[str, Any], timeout: float | None
    ) -> _Outcome:
        active = _Active()
        progress = Progress(self._progress_sink(record.call, active))
        try:
            async with contextlib.AsyncExitStack() as slots:
                # The tool's own limit first, then the executor's: a call waiting for its tool's
                # slot never holds one of the executor's slots.
                for sem in (tool._limiter(), self._limit):
                    if sem is not None:
                        await slots.enter_async_context(sem)
                # The tool runs in a task of its own, which this one only waits for: neither the
                # deadline nor a cancellation depends on the tool giving way.
                runner = asyncio.create_task(
                    _execute(tool, validated, progress),
                    name=f"counterpoint-tool-{record.call.id}",
                )
                self._tool_tasks[runner] = (tool.name, record.call.id)
                runner.add_done_callback(self._tool_done)
                try:
                    await asyncio.wait((runner,), timeout=timeout)
                finally:
                    ended = runner.done()
                    if not ended:  # the deadline passed, or this call was cancelled
                        runner.cancel()  # not waited for (aclose() waits, up to a limit)
        finally:
            active.running = False  # nothing the tool reports from now on is shown
        if not ended:  # the result is "timed out", whatever the tool does from now on
            assert timeout is not None
            return _Outcome(
                ok=False, error=f"timed out after {_seconds(timeout)} s", retryable=True
            )
        if runner.cancelled():  # the tool raised CancelledError of its own accord
            return _Outcome(ok=False, error="cancelled")
        exc = runner.exception()
        if exc is not None:  # a BaseException _execute lets through (GeneratorExit, ...)
            return _Outcome(ok=False, error=_exception_text(exc))
        return runner.result()

    def _truncate(self, text: str) -> str:
        limit = self._max_result_chars
        if len(text) <= limit:
            return text
        return f"{text[:limit]}… [truncated: {len(text)} characters, showing the first {limit}]"

    def _finish(self, call: Call, started: float, outcome: _Outcome, attempts: int) -> None:
        finished = self._clock()
        if outcome.ok:
            text = self._truncate(outcome.text)
        else:
            text = self._truncate(f"Error: {outcome.error}")
        result = CallResult(
            call=call,
            ok=outcome.ok,
            text=text,
            value=outcome.value if outcome.ok else None,
            error=outcome.error,
            started=started,
            finished=finished,
            attempts=max(attempts, 1),
        )
        self._results.put_nowait(result)
        self._emit(
            CallFinished(
                run_id=self._run_id,
                t=finished,
                call_id=call.id,
                name=call.name,
                ok=result.ok,
                result=result.text,
                error=result.error,
                started=started,
                duration_s=result.duration_s,
                attempts=attempts,
            )
        )

    def _settle(self, record: _Record, outcome: _Outcome) -> None:
        """Post a started call's result, the first time only."""
        if record.settled:
            return
        record.settled = True
        self._running -= 1
        self._finish(record.call, record.started, outcome, record.attempts)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        record = self._tasks.pop(task, None)
        if task.cancelled():
            outcome = _Outcome(ok=False, error="cancelled")
        else:
            exc = task.exception()
            if exc is None:
                return
            _log.error("a tool call's task failed", exc_info=exc)
            outcome = _Outcome(ok=False, error=f"internal error: {_exception_text(exc)}")
        if record is not None:
            self._settle(record, outcome)

    def _tool_done(self, task: asyncio.Task[_Outcome]) -> None:
        self._tool_tasks.pop(task, None)
        if not task.cancelled():
            task.exception()  # retrieved (the call reports it): no "never retrieved" warning

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for tool_task in list(self._tool_tasks):
            tool_task.cancel()

    def _fail_now(self, call: Call, started: float, error: str) -> None:
        self._finish(call, started, _Outcome(ok=False, error=error), 0)

    def _collect(self, result: CallResult) -> CallResult:
        cid = result.call.id
        self._uncollected[cid] -= 1
        if self._uncollected[cid] <= 0:
            del self._uncollected[cid]
        return result

    # -- helpers ------------------------------------------------------------------------------

    def _unknown_tool(self, name: str) -> str:
        names = self._tools.names
        message = f"unknown tool {name!r}."
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            message += f" Did you mean {close[0]!r}?"
        if not names:
            return message + " No tools are available."
        listed = ", ".join(names[:_MAX_LISTED_TOOLS])
        if len(names) > _MAX_LISTED_TOOLS:
            listed += f", … ({len(names) - _MAX_LISTED_TOOLS} more)"
        return f"{message} Available tools: {listed}."

    @staticmethod
    def _arguments_for_event(call: Call, tool: Tool | None) -> dict[str, Any]:
        """The call's arguments by name for the event; positional ones mapped when they fit."""
        arguments = dict(call.arguments)
        if not call.positional:
            return arguments
        names = tool._positional[: len(call.positional)] if tool is not None else ()
        if len(names) == len(call.positional) and not set(names) & set(arguments):
            arguments.update(zip(names, call.positional, strict=True))
        else:
            arguments["*args"] = list(call.positional)
        return arguments

    def _emit(self, event: Event) -> None:
        if self._emit_cb is None:
            return
        try:
            self._emit_cb(event)
        except Exception:
            _log.exception("the event sink raised on a %s event; ignored", event.kind)

    def _progress_sink(self, call: Call, active: _Active) -> Callable[[str, float | None], None]:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def emit(message: str, fraction: float | None, t: float) -> None:
            if active.running:
                self._emit(
                    CallProgress(
                        run_id=self._run_id,
                        t=t,
                        call_id=call.id,
                        name=call.name,
                        message=message,
                        fraction=fraction,
                    )
                )

        def sink(message: str, fraction: float | None) -> None:
            t = self._clock()
            if threading.get_ident() == loop_thread:
                emit(message, fraction, t)
            else:  # a sync tool in its worker thread: hand the event to the loop
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(emit, message, fraction, t)

        return sink

    def _bind_owner(self, task: asyncio.Task[Any] | None) -> None:
        if task is None or self._owner is not None:
            return
        self._owner = task
        task.add_done_callback(self._on_owner_done)

    def _on_owner_done(self, owner: asyncio.Task[Any]) -> None:
        # The owner returned normally: leave running calls alone (it may have handed the
        # executor on). Cancelled or failed: nobody will collect them, so cancel them.
        if owner.cancelled() or owner.exception() is not None:
            self._cancel_all()
