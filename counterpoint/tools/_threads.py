"""The worker threads sync tools run in.

Every sync tool call gets a thread to itself (named ``counterpoint-tool-N``). Threads are
started on demand and reused: one that finished a call waits :data:`IDLE_THREAD_S` seconds for
another, then exits. There is no fixed pool to starve: a hung sync tool holds its own thread and
nothing else, and every other call gets another thread. At most :data:`MAX_TOOL_THREADS` tool
threads live at once in the process, counting those still stuck in tools that timed out or were
cancelled; past that, a call fails at once with :class:`ToolThreadLimitError` (a message for the
model) instead of waiting. The call sees the caller's context variables (a copy of its context).
The threads are not the event loop's default executor, so slow sync tools never delay what runs
there (``asyncio.to_thread``: loading a transformers model, flushing the trace writer); a
transformers model's forward passes run in a thread of their own.

A thread cannot be interrupted: a sync tool that times out or is cancelled keeps its thread until
it returns (its result is then discarded). The threads are daemon threads, so they never delay
interpreter exit: a tool still running then is stopped where it is (its ``finally`` blocks do not
run), as if the process had been killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["IDLE_THREAD_S", "MAX_TOOL_THREADS", "ToolThreadLimitError", "run_in_thread"]

MAX_TOOL_THREADS = 512
"""Tool threads alive at once in the process (busy ones, hung ones, idle ones); a sync call that
finds all of them busy fails with :class:`ToolThreadLimitError`."""

IDLE_THREAD_S = 30.0
"""How long a tool thread with nothing to do waits for the next call before it exits."""

P = ParamSpec("P")
R = TypeVar("R")


class ToolThreadLimitError(RuntimeError):
    """Every one of the :data:`MAX_TOOL_THREADS` tool threads is busy (the message is for the
    model: the call fails, it is not queued)."""


_Job = Callable[[], Callable[[], None]]
"""Runs a call in a tool thread; returns what hands its outcome over (called once the thread is
idle again, so that the caller's next call can have the same thread)."""


class _Worker:
    """A tool thread's mailbox: the next job it is handed while idle."""

    __slots__ = ("jobs",)

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()


_lock = threading.Lock()
_idle: list[_Worker] = []  # idle threads; the most recently idle one gets the next job
_live = 0  # tool threads alive: busy (hung ones included) or idle
_names = itertools.count(1)


def _reset_after_fork() -> None:  # the child process has none of the parent's threads
    global _lock, _live
    _lock = threading.Lock()
    _idle.clear()
    _live = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _dispatch(job: _Job) -> None:
    """Run ``job`` in an idle tool thread or a new one (raises :class:`ToolThreadLimitError`)."""
    global _live
    with _lock:
        if _idle:
            _idle.pop().jobs.put(job)
            return
        if _live >= MAX_TOOL_THREADS:
            raise ToolThreadLimitError(
                f"the tool could not start: all {MAX_TOOL_THREADS} threads for sync tools are "
                "busy (counting calls that timed out but have not returned yet); try again later"
            )
        _live += 1
    thread = threading.Thread(
        target=_work,
        args=(_Worker(), job),
        name=f"counterpoint-tool-{next(_names)}",
        daemon=True,  # a hung tool never delays interpreter exit
    )
    try:
        thread.start()
    except BaseException:  # "can't start new thread": the call fails with it
        with _lock:
            _live -= 1
        raise


def _work(worker: _Worker, job: _Job | None) -> None:
    global _live
    while True:
        assert job is not None
        hand_over: Callable[[], None] | None = job()
        job = None  # hold nothing of the last call while idle
        with _lock:
            _idle.append(worker)
        assert hand_over is not None
        hand_over()
        hand_over = None
        try:
            job = worker.jobs.get(timeout=IDLE_THREAD_S)
        except queue.Empty:
            with _lock:
                if worker in _idle:
                    _idle.remove(worker)
                    _live -= 1
                    return
            job = worker.jobs.get()  # handed a job just as the wait ran out: it is on its way


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # cancelled (the call timed out or was cancelled): drop the result
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, result, error)


async def run_in_thread(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn(*args, **kwargs)`` in a tool thread, with the caller's context variables.

    Cancelling the caller stops waiting at once; the thread runs on until ``fn`` returns. Any
    exception ``fn`` raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is raised here.
    """
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    future: asyncio.Future[R] = loop.create_future()

    def job() -> Callable[[], None]:
        result: Any = None
        error: BaseException | None = None
        try:
            result = ctx.run(fn, *args, **kwargs)
        except StopIteration as exc:  # a Future refuses StopIteration (as a coroutine would)
            error = RuntimeError(f"the tool raised StopIteration: {exc}")
            error.__cause__ = exc
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the caller decides
            error = exc
        return functools.partial(_hand_over, loop, future, result, error)

    _dispatch(job)
    return await future
