"""Executor faults: tools that exit, ignore cancellation or hang their thread; cancellation at
any moment. Every call still gets exactly one result, and nothing waits on a misbehaving tool."""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from counterpoint.core.calls import Call, CallResult
from counterpoint.core.events import CallFinished, CallStarted, Event
from counterpoint.errors import ConfigError
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.session import Session
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools import _threads
from counterpoint.tools.executor import Executor
from counterpoint.tools.tool import Tool, tool
from counterpoint.tools.toolset import Toolset

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class Recorder:
    """An event sink that keeps events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def finished(self) -> list[CallFinished]:
        return [e for e in self.events if isinstance(e, CallFinished)]


def make_executor(*tools: Tool, **kwargs: Any) -> tuple[Executor, Recorder]:
    recorder = Recorder()
    return Executor(Toolset(*tools), run_id="run-1", emit=recorder, **kwargs), recorder


def run_isolated(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` in an event loop of its own; an escaping SystemExit/KeyboardInterrupt fails
    the test instead of ending the test session."""
    escaped: BaseException | None = None
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except (SystemExit, KeyboardInterrupt) as exc:
        escaped = exc
    pytest.fail(f"{type(escaped).__name__} escaped the executor: {escaped!r}", pytrace=False)


@tool
async def quick(label: str = "quick") -> str:
    """Return the label at once."""
    await asyncio.sleep(0)
    return label


@tool
def sync_quick(label: str = "sync") -> str:
    """Return the label from a thread."""
    return label


@tool
async def slow(seconds: float = 10.0) -> str:
    """Sleep."""
    await asyncio.sleep(seconds)
    return "slept"


@tool
def sync_slow(seconds: float = 0.05) -> str:
    """Block a thread for a while."""
    time.sleep(seconds)
    return "done"


# -- 1. SystemExit and KeyboardInterrupt are the call's failure --------------------------------


def _argparse_tool(retries: int = 0) -> Tool:
    @tool(name="cli", retries=retries, retry_backoff=0.001)
    def cli(argv: list[str]) -> str:
        """Run a small command line."""
        parser = argparse.ArgumentParser(prog="cli")
        parser.add_argument("--count", type=int, required=True)
        return str(parser.parse_args(argv).count)

    return cli


def test_system_exit_from_argparse_in_a_sync_tool_is_the_calls_error() -> None:
    async def main() -> tuple[list[CallResult], Recorder, list[CallResult]]:
        ex, rec = make_executor(_argparse_tool(retries=2), quick)
        ex.submit(Call("bad", "cli", {"argv": ["--nope"]}))
        ex.submit(Call("ok", "quick", {"label": "still here"}))
        first = await asyncio.wait_for(ex.wait_all(), 5)
        ex.submit(Call("good", "cli", {"argv": ["--count", "3"]}))  # the run goes on
        later = await asyncio.wait_for(ex.wait_all(), 5)
        await ex.aclose()
        return first, rec, later

    first, rec, later = run_isolated(main)
    results = {r.call.id: r for r in first}
    bad = results["bad"]
    assert (bad.ok, bad.error, bad.text) == (False, "SystemExit: 2", "Error: SystemExit: 2")
    assert bad.attempts == 1  # the same every time: not retried
    assert results["ok"].text == "still here"
    assert [r.text for r in later] == ["3"]
    finished = {e.call_id: e for e in rec.finished()}
    assert finished["bad"].error == "SystemExit: 2" and not finished["bad"].ok
    assert finished["good"].ok


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit("bye")])
def test_keyboard_interrupt_and_system_exit_from_a_tool_are_its_error(
    kind: str, exc: BaseException
) -> None:
    if kind == "sync":

        @tool(name="quits")
        def quits() -> str:
            """Raise."""
            raise exc

        quitter: Tool = quits
    else:

        @tool(name="quits")
        async def aquits() -> str:
            """Raise."""
            await asyncio.sleep(0)
            raise exc

        quitter = aquits

    async def main() -> tuple[list[CallResult], Recorder]:
        ex, rec = make_executor(quitter, quick)
        ex.submit(Call("q", "quits"))
        ex.submit(Call("other", "quick"))
        results = await asyncio.wait_for(ex.wait_all(), 5)
        await ex.aclose()
        return results, rec

    results, rec = run_isolated(main)
    by_id = {r.call.id: r for r in results}
    expected = "KeyboardInterrupt" if isinstance(exc, KeyboardInterrupt) else "SystemExit: bye"
    assert by_id["q"].error == expected
    assert by_id["other"].ok
    assert sorted((e.call_id, e.error) for e in rec.finished()) == [
        ("other", None),
        ("q", expected),
    ]


def test_stop_iteration_from_a_sync_tool_is_an_error() -> None:
    @tool
    def stops() -> str:
        """Raise StopIteration."""
        raise StopIteration("empty")

    async def main() -> list[CallResult]:
        async with Executor(Toolset(stops)) as ex:
            ex.submit(Call("s", "stops"))
            return await asyncio.wait_for(ex.wait_all(), 5)

    [result] = run_isolated(main)
    assert result.error == "RuntimeError: the tool raised StopIteration: empty"


# -- 2. a result and a CallFinished for every call, whenever it is cancelled -------------------


async def within(seconds: float, aw: Awaitable[T]) -> T:
    """Await ``aw`` in a task of its own; fail (instead of hanging, as ``wait_for`` would on a
    task that ignores cancellation) if it takes more than ``seconds``."""
    task = asyncio.ensure_future(aw)
    await asyncio.wait((task,), timeout=seconds)
    if not task.done():
        pytest.fail(f"still waiting after {seconds} s", pytrace=False)
    return task.result()


async def close(ex: Executor) -> None:
    """``ex.aclose()`` in this very task (``wait_for`` would start it a loop iteration later,
    after the calls' tasks first ran), within 5 s."""
    async with asyncio.timeout(5):
        await ex.aclose()


def _check_exactly_once(ex: Executor, rec: Recorder, ids: list[str]) -> dict[str, CallResult]:
    results = ex.drain()
    assert sorted(r.call.id for r in results) == sorted(ids)
    assert sorted(e.call_id for e in rec.finished()) == sorted(ids)
    assert ex.running == 0 and ex.pending == frozenset() and not ex.ready()
    return {r.call.id: r for r in results}


async def test_calls_cancelled_before_their_task_starts_still_finish() -> None:
    ex, rec = make_executor(quick, sync_quick)
    ex.submit(Call("a", "quick"))
    ex.submit(Call("b", "sync_quick"))
    await close(ex)  # at once: neither task has run yet
    results = await asyncio.wait_for(ex.wait_all(), 5)  # used to hang
    assert sorted((r.call.id, r.error) for r in results) == [("a", "cancelled"), ("b", "cancelled")]
    assert sorted((e.call_id, e.error) for e in rec.finished()) == [
        ("a", "cancelled"),
        ("b", "cancelled"),
    ]
    assert ex.running == 0 and ex.pending == frozenset()
    started = [e for e in rec.events if isinstance(e, CallStarted)]
    assert [e.call_id for e in started] == ["a", "b"]


def _limited_tool() -> Tool:
    @tool(name="limited", max_concurrency=1)
    async def limited(seconds: float = 0.0) -> str:
        """One at a time."""
        await asyncio.sleep(seconds)
        return "limited"

    return limited


def _backoff_tool() -> Tool:
    @tool(name="flaky", retries=3, retry_backoff=0.001)
    async def flaky() -> str:
        """Always fails (then backs off and retries)."""
        raise RuntimeError("nope")

    return flaky


def _calls() -> list[Call]:
    return [
        Call("q", "quick"),
        Call("sq", "sync_quick"),
        Call("s", "slow", {"seconds": 0.01}),
        Call("ss", "sync_slow", {"seconds": 0.01}),
        Call("l1", "limited", {"seconds": 0.01}),
        Call("l2", "limited", {"seconds": 0.01}),
        Call("f", "flaky"),
        Call("bad", "quick", {"nope": 1}),  # rejected at once: its CallFinished comes in submit
    ]


@pytest.mark.parametrize("ticks", [0, 1, 2, 3, 4, 5, 6, 8, 12, 20])
async def test_every_call_finishes_once_whenever_aclose_comes(ticks: int) -> None:
    ex, rec = make_executor(
        quick, sync_quick, slow, sync_slow, _limited_tool(), _backoff_tool(), max_concurrency=5
    )
    calls = _calls()
    for call in calls:
        ex.submit(call)
    for _ in range(ticks):
        await asyncio.sleep(0)
    await close(ex)
    _check_exactly_once(ex, rec, [c.id for c in calls])
    assert await asyncio.wait_for(ex.wait_all(), 5) == []


@pytest.mark.parametrize("ticks", [0, 1, 2, 3, 4, 6, 10])
async def test_every_call_finishes_once_whenever_the_owner_is_cancelled(ticks: int) -> None:
    holder: list[tuple[Executor, Recorder]] = []
    calls = _calls()

    async def owner() -> None:
        ex, rec = make_executor(
            quick, sync_quick, slow, sync_slow, _limited_tool(), _backoff_tool()
        )
        holder.append((ex, rec))
        for call in calls:
            ex.submit(call)
        await asyncio.Event().wait()  # until cancelled (collecting nothing)

    task = asyncio.create_task(owner())
    for _ in range(ticks + 1):  # the first tick runs owner() up to its wait
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ex, rec = holder[0]
    for _ in range(50):  # the cancelled calls post their results within a few loop iterations
        if not ex.running:
            break
        await asyncio.sleep(0)
    _check_exactly_once(ex, rec, [c.id for c in calls])
    await close(ex)


async def test_a_session_cancelling_at_end_of_stream_reports_the_call_cancelled() -> None:
    events: list[Event] = []
    model = ScriptedModel(["[CALL] c1 [HEAD] slow(seconds=10) [END]", "never"])
    session = Session(
        model, Toolset(slow), mode="async", emit=events.append, pending_policy="cancel"
    )
    result = await asyncio.wait_for(session.run([Message(role="user", content="go")]), 5)
    assert result.status == "ok"
    started = [e.call_id for e in events if isinstance(e, CallStarted)]
    finished = [(e.call_id, e.error) for e in events if isinstance(e, CallFinished)]
    # Submitted, then cancelled before its task first ran: the executor itself reports it.
    assert (started, finished) == (["c1"], [("c1", "cancelled")])


# -- 3. a tool that swallows CancelledError ----------------------------------------------------


class Stubborn:
    """An async tool that swallows every cancellation and returns "ok" once released."""

    def __init__(self, *, timeout: float | None = None) -> None:
        self.release = asyncio.Event()
        self.cancels = 0
        self.returned = asyncio.Event()

        @tool(name="stubborn", timeout=timeout)
        async def stubborn() -> str:
            """Ignore cancellation."""
            while not self.release.is_set():
                try:
                    await self.release.wait()
                except asyncio.CancelledError:
                    self.cancels += 1
            self.returned.set()
            return "ok"

        self.tool: Tool = stubborn

    async def finish(self) -> None:
        self.release.set()
        await asyncio.wait_for(self.returned.wait(), 5)
        for _ in range(3):  # let its task end
            await asyncio.sleep(0)


async def test_a_tool_swallowing_cancellation_times_out_at_its_deadline() -> None:
    stubborn = Stubborn(timeout=0.1)
    ex, rec = make_executor(stubborn.tool)
    try:
        ex.submit(Call("c1", "stubborn"))
        [result] = await asyncio.wait_for(ex.wait_all(), 5)  # the tool itself never returns
        assert (result.ok, result.error) == (False, "timed out after 0.1 s")
        assert stubborn.cancels >= 1
    finally:
        await stubborn.finish()
    # Its late "ok" changes nothing: no second result, no second event.
    assert not ex.ready() and ex.drain() == []
    assert [(e.call_id, e.error) for e in rec.finished()] == [("c1", "timed out after 0.1 s")]
    await ex.aclose()


async def test_a_stubborn_tool_is_retried_after_its_timeout() -> None:
    stubborn = Stubborn()

    @tool(name="stubborn_retried", timeout=0.05, retries=1, retry_backoff=0.001)
    async def stubborn_retried() -> str:
        """Ignore cancellation."""
        return str(await stubborn.tool._execute({}, None))

    ex, _ = make_executor(stubborn_retried)
    try:
        ex.submit(Call("c1", "stubborn_retried"))
        [result] = await asyncio.wait_for(ex.wait_all(), 5)
        assert result.error == "timed out after 0.05 s (after 2 attempts)"
        assert result.attempts == 2
    finally:
        stubborn.release.set()
    await asyncio.wait_for(ex.aclose(), 5)  # both attempts' tasks end once released
    assert not ex._tool_tasks


async def test_aclose_gives_up_on_a_tool_that_ignores_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubborn = Stubborn()
    ex, rec = make_executor(stubborn.tool, slow)  # the default grace: 2 s
    try:
        ex.submit(Call("c1", "stubborn"))
        ex.submit(Call("c2", "slow"))
        await asyncio.sleep(0.02)
        with caplog.at_level(logging.WARNING, logger="counterpoint.tools.executor"):
            await within(5, ex.aclose())  # used to hang
        results = {r.call.id: r.error for r in ex.drain()}
        assert results == {"c1": "cancelled", "c2": "cancelled"}
        assert sorted((e.call_id, e.error) for e in rec.finished()) == [
            ("c1", "cancelled"),
            ("c2", "cancelled"),
        ]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "'stubborn'" in warnings[0] and "'c1'" in warnings[0]
        assert "within 2.0 s" in warnings[0]
        # Nothing left referenced by the executor; the stubborn task runs on by itself.
        assert not ex._tasks and not ex._tool_tasks
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert [t.get_name() for t in left] == ["counterpoint-tool-c1"]
    finally:
        await stubborn.finish()
    assert not ex.ready()
    assert len(rec.finished()) == 2


async def test_aclose_waits_for_a_tool_that_cleans_up_when_cancelled() -> None:
    cleaned = asyncio.Event()

    @tool
    async def tidy() -> str:
        """Clean up (briefly) when cancelled."""
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.02)
            cleaned.set()
        return "never"

    ex, _ = make_executor(tidy)
    ex.submit(Call("c1", "tidy"))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(ex.aclose(), 5)
    assert cleaned.is_set()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert [r.error for r in ex.drain()] == ["cancelled"]


async def test_cancel_grace_is_configurable_and_must_not_be_negative(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConfigError, match="cancel_grace_s"):
        Executor(Toolset(quick), cancel_grace_s=-1)
    stubborn = Stubborn()
    ex, _ = make_executor(stubborn.tool, cancel_grace_s=0.1)
    try:
        ex.submit(Call("c1", "stubborn"))
        await asyncio.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="counterpoint.tools.executor"):
            await within(1.5, ex.aclose())  # well before the default 2 s
        assert "within 0.1 s" in caplog.text
    finally:
        await stubborn.finish()


# -- 4. sync tools' threads --------------------------------------------------------------------


class Hang:
    """Sync tools that block until released; the fixture releases them at teardown."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.entered = 0
        self.returned = 0

        @tool(name="hang", timeout=0.2)
        def hang() -> str:
            """Block until released."""
            with self._lock:
                self.entered += 1
            try:
                self.release.wait(30)
            finally:
                with self._lock:
                    self.returned += 1
            return "released"

        self.tool: Tool = hang

    def close(self) -> None:
        self.release.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                if self.returned == self.entered:
                    break
            time.sleep(0.005)
        time.sleep(0.02)  # let their threads go idle


@pytest.fixture
def hang() -> Iterator[Hang]:
    hung = Hang()
    try:
        yield hung
    finally:
        hung.close()


async def test_hung_sync_tools_do_not_starve_the_other_sync_tools(hang: Hang) -> None:
    quick_sync = tool(sync_quick.fn, name="quick_sync", timeout=3.0)
    ex, _ = make_executor(hang.tool, quick_sync)
    for i in range(40):  # more than the old shared pool's 32 threads
        ex.submit(Call(f"h{i}", "hang"))
    hung = await asyncio.wait_for(ex.wait_all(), 5)
    assert {r.error for r in hung} == {"timed out after 0.2 s"}
    assert hang.entered == 40  # every one got a thread, and still holds it
    ex.submit(Call("q", "quick_sync", {"label": "through"}))
    [result] = await asyncio.wait_for(ex.wait_all(), 5)
    assert (result.ok, result.text) == (True, "through")
    await ex.aclose()


async def test_tool_threads_are_daemons_reused_and_see_the_callers_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    @tool
    def where() -> list[Any]:
        """Report the thread."""
        thread = threading.current_thread()
        return [thread.name, thread.daemon, var.get()]

    var.set("from the caller")
    first = await where.invoke({})
    second = await where.invoke({})
    assert first[1:] == [True, "from the caller"]
    assert str(first[0]).startswith("counterpoint-tool-")
    assert second[0] == first[0]  # the idle thread took the next call


async def test_past_the_thread_cap_a_sync_call_fails_with_a_clear_error(
    hang: Hang, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _threads._lock:  # idle threads are reused first: fill them, and then the cap
        live, idle = _threads._live, len(_threads._idle)
    monkeypatch.setattr(_threads, "MAX_TOOL_THREADS", live + 1)
    ex, _ = make_executor(hang.tool)
    for i in range(idle + 3):
        ex.submit(Call(f"h{i}", "hang"))
    results = await asyncio.wait_for(ex.wait_all(), 5)
    refused = [r for r in results if r.error and "threads for sync tools are busy" in r.error]
    assert refused, [r.error for r in results]
    assert refused[0].text.startswith("Error: ToolThreadLimitError: the tool could not start")
    await ex.aclose()


def test_a_hung_sync_tool_does_not_delay_interpreter_exit() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys, time
        sys.path.insert(0, sys.argv[1])
        from counterpoint.core.calls import Call
        from counterpoint.tools.executor import Executor
        from counterpoint.tools.tool import tool

        @tool(timeout=0.05)
        def hang() -> str:
            time.sleep(20)
            return "late"

        async def main() -> None:
            async with Executor([hang]) as ex:
                ex.submit(Call("c1", "hang"))
                [result] = await ex.wait_all()
            print(result.error)

        asyncio.run(main())
        print(time.time(), flush=True)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    exited = time.time()
    assert proc.returncode == 0, proc.stderr
    error, ended = proc.stdout.splitlines()
    assert error == "timed out after 0.05 s"
    assert exited - float(ended) < 3.0  # the old pool joined the hung thread: ~20 s
