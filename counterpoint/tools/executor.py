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

Leaving the ``async with`` block (or :meth:`Executor.aclose`) cancels calls still running; so does
the cancellation or failure of the task that owns the executor (the task that created it, or the
first to submit). Calls cancelled that way still produce a (``cancelled``) result and a
``CallFinished`` event.
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

from pydantic_core import PydanticSerializationError, to_jsonable_python

from counterpoint.errors import ConfigError
from counterpoint.runtime.calls import Call, CallResult
from counterpoint.runtime.events import CallFinished, CallProgress, CallStarted, Event
from counterpoint.tools._errors import ToolArgumentError
from counterpoint.tools._progress import Progress
from counterpoint.tools.tool import Tool
from counterpoint.tools.toolset import ToolLike, Toolset

__all__ = ["Executor"]

_log = logging.getLogger(__name__)

_MAX_LISTED_TOOLS = 30


@dataclass
class _Outcome:
    """How one attempt ended."""

    ok: bool
    value: Any = None
    text: str = ""
    error: str | None = None
    retryable: bool = False


@dataclass
class _Active:
    """Whether a call still accepts progress reports (it stops when the call finishes)."""

    running: bool = True


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
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigError("Executor max_concurrency must be >= 1 (or None for no limit)")
        if default_timeout_s is not None and not default_timeout_s > 0:
            raise ConfigError("Executor default_timeout_s must be > 0 (or None for no timeout)")
        if max_result_chars < 1:
            raise ConfigError("Executor max_result_chars must be >= 1")
        self._tools = tools if isinstance(tools, Toolset) else Toolset(tools)
        self._run_id = run_id
        self._clock = clock if clock is not None else _monotonic_since_now()
        self._emit_cb = emit
        self._default_timeout_s = default_timeout_s
        self._max_result_chars = max_result_chars
        self._limit = asyncio.Semaphore(max_concurrency) if max_concurrency is not None else None
        self._results: asyncio.Queue[CallResult] = asyncio.Queue()
        self._uncollected: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls whose result is not posted yet. Not len(self._tasks): a task leaves that set in a
        # done-callback, one loop iteration after it posted its result.
        self._running = 0
        self._closed = False
        self._owner: asyncio.Task[Any] | None = None
        with contextlib.suppress(RuntimeError):  # created outside a running loop: bind later
            self._bind_owner(asyncio.current_task())

    # -- public API ---------------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        """Start ``call`` and return at once (emits ``CallStarted``).

        Must be called from a coroutine on the event loop. Bad calls (unknown tool, invalid
        arguments, an id whose result is not collected yet) do not raise: their error result
        is ready at once.
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
        self._emit(
            CallStarted(
                run_id=self._run_id,
                t=started,
                call_id=call.id,
                name=call.name,
                arguments=self._arguments_for_event(call, tool),
            )
        )
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
        task = asyncio.create_task(
            self._run(call, tool, validated, started), name=f"counterpoint-call-{call.id}"
        )
        self._running += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    async def aclose(self) -> None:
        """Cancel every running call and wait for their tasks to end; no task is left behind.

        The cancelled calls' results (``error == "cancelled"``) can still be drained. Idempotent;
        later :meth:`submit` calls raise ``RuntimeError``.
        """
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

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

    async def _run(self, call: Call, tool: Tool, validated: dict[str, Any], started: float) -> None:
        active = _Active()
        progress = Progress(self._progress_sink(call, active))
        timeout = tool.timeout_s if tool.timeout_s is not None else self._default_timeout_s
        attempts = 0
        try:
            while True:
                attempts += 1
                outcome = await self._attempt(tool, validated, progress, timeout)
                if outcome.ok or not outcome.retryable or attempts > tool.retries:
                    break
                await asyncio.sleep(tool.retry_backoff_s * 2 ** (attempts - 1))
        except asyncio.CancelledError:
            outcome = _Outcome(ok=False, error="cancelled")
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: report, then let them go
            outcome = _Outcome(ok=False, error=_exception_text(exc))
            raise
        else:
            if outcome.error is not None and attempts > 1:
                outcome.error += f" (after {attempts} attempts)"
        finally:
            active.running = False
            self._running -= 1
            self._finish(call, started, outcome, attempts)

    async def _attempt(
        self, tool: Tool, validated: dict[str, Any], progress: Progress, timeout: float | None
    ) -> _Outcome:
        async with contextlib.AsyncExitStack() as slots:
            # The tool's own limit first, then the executor's: a call waiting for its tool's
            # slot never holds one of the executor's slots.
            for sem in (tool._limiter(), self._limit):
                if sem is not None:
                    await slots.enter_async_context(sem)
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    value = await tool._execute(validated, progress)
            except TimeoutError as exc:
                if deadline.expired() and timeout is not None:
                    error = f"timed out after {_seconds(timeout)} s"
                    return _Outcome(ok=False, error=error, retryable=True)
                return _Outcome(ok=False, error=_exception_text(exc), retryable=True)
            except ToolArgumentError as exc:
                return _Outcome(ok=False, error=str(exc))
            except Exception as exc:
                return _Outcome(ok=False, error=_exception_text(exc), retryable=True)
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
                attempts=result.attempts,
            )
        )

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
            for task in list(self._tasks):
                task.cancel()
