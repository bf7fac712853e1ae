"""Executor: concurrent calls, completion order, errors as results, limits, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from counterpoint.core.calls import Call, CallResult
from counterpoint.core.events import (
    CallFinished,
    CallProgress,
    CallStarted,
    Event,
    event_adapter,
)
from counterpoint.errors import ConfigError
from counterpoint.tools import executor as executor_module
from counterpoint.tools.executor import Executor, _seconds
from counterpoint.tools.tool import Progress, Tool, ToolArgumentError, tool
from counterpoint.tools.toolset import Toolset

# -- tools ------------------------------------------------------------------------------------


@tool
async def sleep_for(seconds: float, label: str = "") -> str:
    """Sleep, then return the label."""
    await asyncio.sleep(seconds)
    return label or f"slept {seconds}"


@tool
def sync_sleep(seconds: float) -> str:
    """Block a thread for a while."""
    time.sleep(seconds)
    return "done"


@tool
async def get_weather(city: str, unit: str = "c") -> dict[str, Any]:
    """Current weather."""
    return {"city": city, "unit": unit, "temp": 17.5, "sky": "ensoleillé"}


@tool
def fail(message: str) -> None:
    """Always raises."""
    raise ValueError(message)


class Forecast(BaseModel):
    city: str
    days: list[int]


@tool
def forecast(city: str) -> Forecast:
    """A pydantic model as the result."""
    return Forecast(city=city, days=[1, 2])


@tool
def opaque() -> object:
    """Returns something JSON cannot hold."""
    return object()


@tool
def long_text(n: int) -> str:
    """A long string."""
    return "x" * n


def make_flaky(failures: int, *, retries: int, exc: type[Exception] = RuntimeError) -> Tool:
    """A tool that raises ``failures`` times, then succeeds; counts its attempts."""
    state = {"attempts": 0}

    @tool(name="flaky", retries=retries, retry_backoff=0.001)
    def flaky() -> int:
        state["attempts"] += 1
        if state["attempts"] <= failures:
            raise exc(f"failure {state['attempts']}")
        return state["attempts"]

    return flaky


class Recorder:
    """An event sink that keeps events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def make_executor(*tools: Any, **kwargs: Any) -> tuple[Executor, Recorder]:
    recorder = Recorder()
    return Executor(Toolset(*tools), run_id="run-1", emit=recorder, **kwargs), recorder


def only_task_left() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


# -- delivery ---------------------------------------------------------------------------------


async def test_results_arrive_in_completion_order() -> None:
    ex, _ = make_executor(sleep_for)
    ex.submit(Call("slow", "sleep_for", {"seconds": 0.2}))
    ex.submit(Call("fast", "sleep_for", {"seconds": 0.05}))
    first = await ex.wait()
    assert [r.call.id for r in first] == ["fast"]
    assert ex.pending == frozenset({"slow"})
    rest = await ex.wait_all()
    assert [r.call.id for r in rest] == ["slow"]
    assert rest[0].finished > first[0].finished
    assert ex.pending == frozenset()


async def test_submit_does_not_block_and_drain_does_not_wait() -> None:
    ex, _ = make_executor(sleep_for)
    ex.submit(Call("c1", "sleep_for", {"seconds": 0.05, "label": "a"}))
    assert ex.pending == frozenset({"c1"})
    assert ex.running == 1
    assert not ex.ready()
    assert ex.drain() == []
    results = await ex.wait_all()
    assert [(r.ok, r.text, r.value) for r in results] == [(True, "a", "a")]
    assert not ex.ready() and ex.running == 0


async def test_wait_times_out_with_empty_list_and_returns_at_once_when_idle() -> None:
    ex, _ = make_executor(sleep_for)
    assert await ex.wait() == []  # nothing submitted: no waiting forever
    assert await ex.wait_all() == []
    ex.submit(Call("c1", "sleep_for", {"seconds": 0.1}))
    assert await ex.wait(timeout=0.01) == []
    assert ex.pending == frozenset({"c1"})
    assert [r.call.id for r in await ex.wait_all()] == ["c1"]


async def test_wait_returns_every_result_ready() -> None:
    ex, _ = make_executor(sleep_for, get_weather)
    ex.submit(Call("a", "get_weather", {"city": "Paris"}))
    ex.submit(Call("b", "get_weather", {"city": "Rome"}))
    ex.submit(Call("c", "nope"))
    await asyncio.sleep(0.01)
    assert ex.ready()
    results = await ex.wait()
    assert sorted(r.call.id for r in results) == ["a", "b", "c"]


async def test_result_text() -> None:
    ex, _ = make_executor(get_weather, forecast, long_text, max_result_chars=50)
    ex.submit(Call("w", "get_weather", {"city": "Nice"}))
    ex.submit(Call("f", "forecast", {"city": "Nice"}))
    ex.submit(Call("s", "long_text", {"n": 10}))
    ex.submit(Call("l", "long_text", {"n": 500}))
    by_id = {r.call.id: r for r in await ex.wait_all()}
    weather = '{"city": "Nice", "unit": "c", "temp": 17.5, "sky": "ensoleillé"}'
    assert by_id["w"].text == (
        weather[:50] + f"… [truncated: {len(weather)} characters, showing the first 50]"
    )
    assert by_id["w"].value["sky"] == "ensoleillé"  # the value itself is not truncated
    assert by_id["f"].text == '{"city": "Nice", "days": [1, 2]}'
    assert isinstance(by_id["f"].value, Forecast)
    assert by_id["s"].text == "x" * 10  # a str is injected as is, not JSON-quoted
    assert by_id["l"].text == "x" * 50 + "… [truncated: 500 characters, showing the first 50]"


async def test_positional_arguments() -> None:
    ex, rec = make_executor(get_weather)
    ex.submit(Call("c1", "get_weather", {"unit": "f"}, positional=("Oslo",)))
    [result] = await ex.wait_all()
    assert result.value == {"city": "Oslo", "unit": "f", "temp": 17.5, "sky": "ensoleillé"}
    assert rec.of(CallStarted)[0].arguments == {"unit": "f", "city": "Oslo"}


# -- events and the clock ---------------------------------------------------------------------


async def test_events_and_clock() -> None:
    ticks = iter(float(i) for i in range(100))
    rec = Recorder()
    ex = Executor(Toolset(get_weather), run_id="r9", clock=lambda: next(ticks), emit=rec)
    ex.submit(Call("c1", "get_weather", {"city": "Lima"}))
    [result] = await ex.wait_all()
    started, finished = rec.of(CallStarted), rec.of(CallFinished)
    assert [type(e) for e in rec.events] == [CallStarted, CallFinished]
    assert started[0].run_id == finished[0].run_id == "r9"
    assert started[0].arguments == {"city": "Lima"}
    assert (started[0].t, result.started) == (0.0, 0.0)
    assert (finished[0].t, result.finished) == (1.0, 1.0)
    assert finished[0].started == 0.0 and finished[0].duration_s == 1.0
    assert finished[0].ok and finished[0].result == result.text and finished[0].attempts == 1
    for event in rec.events:  # events survive a JSON round trip (what the tracer stores)
        assert event_adapter.validate_json(event.model_dump_json()) == event


async def test_executor_accepts_a_plain_list_of_tools() -> None:
    ex = Executor([get_weather, fail])
    ex.submit(Call("c1", "get_weather", {"city": "Oslo"}))
    assert [r.ok for r in await ex.wait_all()] == [True]


def test_submit_outside_the_event_loop_raises() -> None:
    ex = Executor(Toolset(get_weather))
    with pytest.raises(RuntimeError, match="no running event loop"):
        ex.submit(Call("c1", "get_weather", {"city": "Oslo"}))
    assert ex.pending == frozenset()


async def test_progress_events_from_async_and_sync_tools() -> None:
    @tool
    async def crawl(pages: int, progress: Progress) -> int:
        for i in range(pages):
            await asyncio.sleep(0)
            progress(f"page {i + 1}", (i + 1) / pages)
        return pages

    @tool
    def index(progress: Progress) -> str:
        assert threading.current_thread() is not threading.main_thread()
        progress("indexing")
        progress("almost", 0.9)
        return "ok"

    ex, rec = make_executor(crawl, index)
    ex.submit(Call("c", "crawl", {"pages": 2}))
    ex.submit(Call("i", "index"))
    await ex.wait_all()
    progress = rec.of(CallProgress)
    crawl_events = [(e.message, e.fraction) for e in progress if e.call_id == "c"]
    index_events = [(e.message, e.fraction) for e in progress if e.call_id == "i"]
    assert crawl_events == [("page 1", 0.5), ("page 2", 1.0)]
    assert index_events == [("indexing", None), ("almost", 0.9)]
    assert all(e.name in ("crawl", "index") and e.run_id == "run-1" for e in progress)
    # every progress event comes between its call's start and finish
    order = [(type(e).__name__, getattr(e, "call_id", "")) for e in rec.events]
    for cid in ("c", "i"):
        mine = [kind for kind, c in order if c == cid]
        assert mine[0] == "CallStarted" and mine[-1] == "CallFinished"


async def test_a_failing_event_sink_does_not_break_calls(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    ex = Executor(Toolset(get_weather), emit=broken)
    ex.submit(Call("c1", "get_weather", {"city": "Oslo"}))
    [result] = await ex.wait_all()
    assert result.ok
    assert "event sink raised" in caplog.text


# -- errors are results -----------------------------------------------------------------------


async def test_unknown_tool_lists_names_and_suggests() -> None:
    ex, rec = make_executor(get_weather, sleep_for)
    ex.submit(Call("c1", "get_wether", {"city": "Paris"}))
    assert ex.ready()  # answered at once, no task
    assert ex.running == 0
    [result] = ex.drain()
    assert not result.ok
    assert result.error == (
        "unknown tool 'get_wether'. Did you mean 'get_weather'? "
        "Available tools: get_weather, sleep_for."
    )
    assert result.text == f"Error: {result.error}"
    assert rec.of(CallFinished)[0].error == result.error


async def test_invalid_arguments_are_an_error_result_without_retry() -> None:
    calls = 0

    @tool(retries=3)
    def strict(n: int) -> int:
        nonlocal calls
        calls += 1
        return n

    ex, _ = make_executor(strict)
    ex.submit(Call("c1", "strict", {"n": "many"}))
    [result] = await ex.wait_all()
    assert not result.ok and calls == 0
    assert result.error is not None
    assert result.error.startswith("invalid arguments for strict: argument 'n': Input should be")
    assert result.attempts == 1


async def test_tool_exceptions_become_short_messages() -> None:
    ex, _ = make_executor(fail)
    ex.submit(Call("c1", "fail", {"message": "no such city"}))
    [result] = await ex.wait_all()
    assert not result.ok
    assert result.error == "ValueError: no such city"
    assert result.text == "Error: ValueError: no such city"
    assert "Traceback" not in result.text and result.value is None


async def test_argument_error_raised_by_the_tool_is_not_retried() -> None:
    calls = 0

    @tool(retries=2)
    def picky(city: str) -> str:
        nonlocal calls
        calls += 1
        raise ToolArgumentError(f"no city called {city!r}; try a capital")

    ex, _ = make_executor(picky)
    ex.submit(Call("c1", "picky", {"city": "Atlantis"}))
    [result] = await ex.wait_all()
    assert calls == 1
    assert result.error == "no city called 'Atlantis'; try a capital"


async def test_non_json_result_is_an_error() -> None:
    ex, _ = make_executor(opaque)
    ex.submit(Call("c1", "opaque"))
    [result] = await ex.wait_all()
    assert not result.ok
    assert result.error is not None and "cannot be turned into JSON" in result.error


async def test_timeout() -> None:
    @tool(timeout=0.05)
    async def stuck() -> None:
        await asyncio.sleep(10)

    ex, rec = make_executor(stuck, sleep_for, default_timeout_s=0.1)
    ex.submit(Call("t1", "stuck"))
    ex.submit(Call("t2", "sleep_for", {"seconds": 10}))  # the executor's default applies
    results = {r.call.id: r for r in await ex.wait_all()}
    assert results["t1"].error == "timed out after 0.05 s"
    assert results["t2"].error == "timed out after 0.1 s"
    assert results["t1"].duration_s < 5 and results["t2"].duration_s < 5
    assert {e.ok for e in rec.of(CallFinished)} == {False}


def test_seconds_in_messages() -> None:
    # "timed out after 2.0 s" without waiting 2 s in a test
    assert [_seconds(x) for x in (2.0, 10, 0.05, 0.1, 0.125)] == [
        "2.0",
        "10.0",
        "0.05",
        "0.1",
        "0.12",
    ]


async def test_retries_on_exceptions() -> None:
    ex, rec = make_executor(make_flaky(2, retries=2))
    ex.submit(Call("c1", "flaky"))
    [result] = await ex.wait_all()
    assert result.ok and result.value == 3 and result.attempts == 3
    assert rec.of(CallFinished)[0].attempts == 3


async def test_retries_exhausted() -> None:
    ex, _ = make_executor(make_flaky(5, retries=1))
    ex.submit(Call("c1", "flaky"))
    [result] = await ex.wait_all()
    assert not result.ok and result.attempts == 2
    assert result.error == "RuntimeError: failure 2 (after 2 attempts)"


async def test_retry_backoff_doubles_for_each_further_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(executor_module, "_sleep", record)

    @tool(name="flaky", retries=3, retry_backoff=0.25)
    def always_fails() -> None:
        raise RuntimeError("down")

    ex, rec = make_executor(always_fails)
    ex.submit(Call("c1", "flaky"))
    [result] = await ex.wait_all()
    assert delays == [0.25, 0.5, 1.0]
    assert result.attempts == rec.of(CallFinished)[0].attempts == 4
    assert result.error == "RuntimeError: down (after 4 attempts)"


async def test_cancelling_during_the_backoff_stops_at_once() -> None:
    failed = asyncio.Event()

    @tool(name="flaky", retries=5, retry_backoff=30.0)
    async def fails_once_then_waits() -> None:
        failed.set()
        raise RuntimeError("down")

    ex, rec = make_executor(fails_once_then_waits)
    ex.submit(Call("c1", "flaky"))
    await asyncio.wait_for(failed.wait(), timeout=5)
    await asyncio.sleep(0)  # into the 30 s backoff
    await asyncio.wait_for(ex.aclose(), timeout=5)  # does not wait out the backoff
    [result] = ex.drain()
    assert result.error == "cancelled" and result.attempts == 1
    assert rec.of(CallFinished)[0].attempts == 1
    assert only_task_left()


async def test_a_schema_only_tool_is_not_retried() -> None:
    # Tool.from_schema without an implementation: calling it can never succeed, so its
    # failure is not transient and its retries do not apply
    spec = {"name": "lookup", "parameters": {"type": "dict", "properties": {}}}
    described = Tool.from_schema(spec, retries=3, retry_backoff_s=0.001)
    ex, rec = make_executor(described)
    ex.submit(Call("c1", "lookup"))
    [result] = await ex.wait_all()
    assert not result.ok and result.attempts == 1
    assert result.error is not None and "has no implementation" in result.error
    assert "attempts" not in result.error
    assert rec.of(CallFinished)[0].attempts == 1


async def test_retries_on_timeouts() -> None:
    attempts = 0

    @tool(timeout=0.05, retries=2, retry_backoff=0.001)
    async def slow_then_fast() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(10)
        return "fine"

    ex, _ = make_executor(slow_then_fast)
    ex.submit(Call("c1", "slow_then_fast"))
    [result] = await ex.wait_all()
    assert (result.ok, result.text, result.attempts) == (True, "fine", 2)


async def test_a_tool_raising_timeout_error_itself_is_not_reported_as_our_timeout() -> None:
    @tool
    def connect() -> None:
        raise TimeoutError("upstream did not answer")

    ex, _ = make_executor(connect)
    ex.submit(Call("c1", "connect"))
    [result] = await ex.wait_all()
    assert result.error == "TimeoutError: upstream did not answer"


async def test_duplicate_id_in_flight_is_an_error_result() -> None:
    ex, _ = make_executor(sleep_for)
    ex.submit(Call("c1", "sleep_for", {"seconds": 0.05}))
    ex.submit(Call("c1", "sleep_for", {"seconds": 0.05}))
    results = await ex.wait_all()
    assert [r.ok for r in results] == [False, True]
    assert results[0].error == "call id 'c1' is already in use; use a new id"
    assert ex.pending == frozenset()
    ex.submit(Call("c1", "sleep_for", {"seconds": 0}))  # collected ids may be used again
    assert [r.ok for r in await ex.wait_all()] == [True]


def test_bad_executor_settings() -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        Executor(Toolset(), max_concurrency=0)
    with pytest.raises(ConfigError, match="default_timeout_s"):
        Executor(Toolset(), default_timeout_s=0)
    with pytest.raises(ConfigError, match="max_result_chars"):
        Executor(Toolset(), max_result_chars=0)


# -- concurrency limits -----------------------------------------------------------------------


class Gauge:
    """Counts calls running at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.starts: list[str] = []

    def tool(self, name: str, seconds: float, **options: Any) -> Tool:
        async def run(label: str) -> str:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.starts.append(label)
            try:
                await asyncio.sleep(seconds)
            finally:
                self.now -= 1
            return label

        return tool(name=name, **options)(run)


async def test_per_tool_limit_is_respected_and_all_calls_complete() -> None:
    gauge = Gauge()
    limited = gauge.tool("limited", 0.02, max_concurrency=2)
    ex, _ = make_executor(limited)
    for i in range(8):
        ex.submit(Call(f"c{i}", "limited", {"label": str(i)}))
    results = await ex.wait_all()
    assert sorted(r.call.id for r in results) == [f"c{i}" for i in range(8)]
    assert all(r.ok for r in results)
    assert gauge.peak == 2


async def test_per_tool_limit_is_shared_by_executors_on_a_loop() -> None:
    gauge = Gauge()
    limited = gauge.tool("limited", 0.02, max_concurrency=1)
    ex1, _ = make_executor(limited)
    ex2, _ = make_executor(limited)
    for i in range(3):
        ex1.submit(Call(f"a{i}", "limited", {"label": f"a{i}"}))
        ex2.submit(Call(f"b{i}", "limited", {"label": f"b{i}"}))
    r1, r2 = await asyncio.gather(ex1.wait_all(), ex2.wait_all())
    assert len(r1) == len(r2) == 3
    assert gauge.peak == 1


async def test_executor_limit_is_respected_and_all_calls_complete() -> None:
    gauge = Gauge()
    ex, _ = make_executor(gauge.tool("a", 0.02), gauge.tool("b", 0.02), max_concurrency=3)
    for i in range(10):
        ex.submit(Call(f"c{i}", "a" if i % 2 else "b", {"label": str(i)}))
    results = await ex.wait_all()
    assert len(results) == 10 and all(r.ok for r in results)
    assert gauge.peak == 3


async def test_a_call_waiting_for_its_tool_does_not_hold_an_executor_slot() -> None:
    gauge = Gauge()
    slow = gauge.tool("slow", 0.1, max_concurrency=1)
    other = gauge.tool("other", 0.01)
    ex, _ = make_executor(slow, other, max_concurrency=2)
    ex.submit(Call("s1", "slow", {"label": "s1"}))
    ex.submit(Call("s2", "slow", {"label": "s2"}))  # waits for slow's slot
    ex.submit(Call("o1", "other", {"label": "o1"}))  # must not wait for s1 to finish
    results = await ex.wait_all()
    assert [r.call.id for r in results] == ["o1", "s1", "s2"]
    assert gauge.starts == ["s1", "o1", "s2"]


# -- threads, cancellation, no orphans ---------------------------------------------------------


async def test_a_sync_tool_does_not_block_the_loop() -> None:
    ex, _ = make_executor(sync_sleep, sleep_for)
    ex.submit(Call("blocking", "sync_sleep", {"seconds": 0.3}))
    ex.submit(Call("async", "sleep_for", {"seconds": 0.02}))
    results = await ex.wait_all()
    # Had the sync tool run on the loop, the async call could not even start before it ended.
    assert [r.call.id for r in results] == ["async", "blocking"]
    assert results[0].finished < results[1].finished


async def test_aclose_cancels_in_flight_calls_and_leaves_no_task() -> None:
    ex, rec = make_executor(sleep_for, sync_sleep)
    ex.submit(Call("a", "sleep_for", {"seconds": 10}))
    ex.submit(Call("b", "sync_sleep", {"seconds": 0.2}))
    ex.submit(Call("c", "sleep_for", {"seconds": 0}))
    await asyncio.sleep(0.02)
    await ex.aclose()
    assert only_task_left()
    results = {r.call.id: r for r in ex.drain()}
    assert results["c"].ok
    assert (results["a"].ok, results["a"].error) == (False, "cancelled")
    assert results["b"].error == "cancelled"
    assert {e.call_id: e.error for e in rec.of(CallFinished)} == {
        "a": "cancelled",
        "b": "cancelled",
        "c": None,
    }
    assert ex.pending == frozenset()
    with pytest.raises(RuntimeError, match="closed"):
        ex.submit(Call("d", "sleep_for", {"seconds": 0}))
    await ex.aclose()  # idempotent


async def test_async_with_closes_the_executor() -> None:
    async with Executor(Toolset(sleep_for)) as ex:
        ex.submit(Call("a", "sleep_for", {"seconds": 10}))
        await asyncio.sleep(0)
    assert only_task_left()
    assert [r.error for r in ex.drain()] == ["cancelled"]


async def test_cancelling_the_owner_task_cancels_its_calls() -> None:
    started = asyncio.Event()
    holder: list[Executor] = []

    async def owner() -> None:
        ex = Executor(Toolset(sleep_for, sync_sleep))
        holder.append(ex)
        ex.submit(Call("a", "sleep_for", {"seconds": 10}))
        ex.submit(Call("b", "sync_sleep", {"seconds": 0.2}))
        started.set()
        await ex.wait_all()

    task = asyncio.create_task(owner())
    await started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(5):  # let the cancelled call tasks run their handlers
        await asyncio.sleep(0)
    assert only_task_left()
    assert sorted((r.call.id, r.error) for r in holder[0].drain()) == [
        ("a", "cancelled"),
        ("b", "cancelled"),
    ]


async def test_owner_returning_normally_leaves_handed_over_calls_running() -> None:
    async def submitter(ex: Executor) -> None:
        ex.submit(Call("a", "sleep_for", {"seconds": 0.02, "label": "kept"}))

    ex = Executor(Toolset(sleep_for))  # owned by this test's task
    await asyncio.create_task(submitter(ex))
    [result] = await ex.wait_all()
    assert result.ok and result.text == "kept"


async def test_a_waiter_is_woken_by_cancellation() -> None:
    ex = Executor(Toolset(sleep_for))
    ex.submit(Call("a", "sleep_for", {"seconds": 10}))
    waiter = asyncio.create_task(ex.wait())
    await asyncio.sleep(0.01)
    await ex.aclose()
    results: list[CallResult] = await asyncio.wait_for(waiter, timeout=5)
    assert [r.error for r in results] == ["cancelled"]


async def test_progress_after_timeout_is_dropped() -> None:
    release, reported = threading.Event(), threading.Event()

    @tool(timeout=0.02)
    def lingering(progress: Progress) -> str:
        progress("in time")
        release.wait(5)
        progress("too late")
        reported.set()
        return "late"

    ex, rec = make_executor(lingering)
    ex.submit(Call("c1", "lingering"))
    [result] = await ex.wait_all()
    assert result.error == "timed out after 0.02 s"
    release.set()
    assert await asyncio.to_thread(reported.wait, 5)
    for _ in range(3):  # let the loop run the callback the thread scheduled
        await asyncio.sleep(0)
    assert [e.message for e in rec.of(CallProgress)] == ["in time"]


# -- cancelling one call ----------------------------------------------------------------------


async def test_cancelling_one_call_posts_its_cancelled_result_and_spares_the_others() -> None:
    ex, rec = make_executor(sleep_for)
    ex.submit(Call("long", "sleep_for", {"seconds": 30}))
    ex.submit(Call("short", "sleep_for", {"seconds": 0.05, "label": "kept"}))
    await asyncio.sleep(0)
    assert ex.cancel("long") is True
    results = {r.call.id: r for r in await ex.wait_all()}
    assert results["long"].ok is False and results["long"].error == "cancelled"
    assert results["short"].ok is True and "kept" in results["short"].text
    finished = {e.call_id: e for e in rec.of(CallFinished)}
    assert finished["long"].error == "cancelled" and finished["short"].ok
    assert ex.cancel("long") is False  # already finished
    assert ex.cancel("nobody") is False
    assert ex.running == 0 and only_task_left()
    await ex.aclose()
