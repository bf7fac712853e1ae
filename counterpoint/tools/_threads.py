"""The worker threads sync tools run in.

Sync tools get their own thread pool rather than the event loop's default executor, so that a
burst of slow sync tools never starves the model backend, which runs its forward passes in the
default executor (``asyncio.to_thread``). A thread cannot be interrupted: a sync tool that times
out or is cancelled keeps its thread until it returns, although its result is discarded.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["MAX_TOOL_THREADS", "run_in_thread"]

MAX_TOOL_THREADS = 32
"""Sync tool calls running at once, over every executor in the process; more wait for a thread."""

P = ParamSpec("P")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=MAX_TOOL_THREADS, thread_name_prefix="counterpoint-tool"
            )
        return _pool


async def run_in_thread(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn(*args, **kwargs)`` in a tool thread, with the caller's context variables."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, fn, *args, **kwargs)
    return await loop.run_in_executor(_get_pool(), call)
