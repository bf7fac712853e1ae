"""The local model's worker thread: jobs in order, steps batched per tick (no model needed)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence

import pytest

from counterpoint.runtime.backends._worker import StepRequest, Worker


class Recorder:
    """A ``run_steps`` callback that records each tick's subjects and answers ``subject * 10``."""

    def __init__(self) -> None:
        self.ticks: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, requests: Sequence[StepRequest[int]]) -> None:
        self.gate.wait(5)
        self.ticks.append([r.subject for r in requests])
        for r in requests:
            if r.subject < 0:
                r.future.set_exception(ValueError(f"bad subject {r.subject}"))
            else:
                r.future.set_result(r.subject * 10)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def worker(recorder: Recorder) -> Iterator[Worker[int]]:
    w: Worker[int] = Worker(recorder, max_batch=3)
    yield w
    w.close()


async def test_jobs_run_in_order_in_one_thread(worker: Worker[int]) -> None:
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i

    results = await asyncio.gather(*(worker.run(lambda i=i: job(i)) for i in range(5)))
    assert results == [0, 1, 2, 3, 4]
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert {name for _, name in seen} == {"counterpoint-model"}


async def test_steps_waiting_together_share_a_tick_up_to_max_batch(
    worker: Worker[int], recorder: Recorder
) -> None:
    recorder.gate.clear()  # hold the first tick so the rest queue up behind it
    first = asyncio.ensure_future(worker.step(1))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(worker.step(i)) for i in range(2, 7)]
    await asyncio.sleep(0.05)
    recorder.gate.set()
    assert await first == 10
    assert [await r for r in rest] == [20, 30, 40, 50, 60]
    assert recorder.ticks == [[1], [2, 3, 4], [5, 6]]
    assert (worker.ticks, worker.stepped) == (3, 6)


async def test_a_failing_step_fails_alone(worker: Worker[int], recorder: Recorder) -> None:
    recorder.gate.clear()
    blocker = asyncio.ensure_future(worker.step(0))
    await asyncio.sleep(0.05)
    good, bad = worker.step(1), worker.step(-1)
    recorder.gate.set()
    await blocker
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0] == 10
    assert isinstance(results[1], ValueError) and "bad subject -1" in str(results[1])


async def test_a_cancelled_step_never_runs(worker: Worker[int], recorder: Recorder) -> None:
    recorder.gate.clear()
    blocker = asyncio.ensure_future(worker.step(0))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(worker.step(7))
    kept = asyncio.ensure_future(worker.step(8))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await blocker
    assert await kept == 80
    assert 7 not in [s for tick in recorder.ticks for s in tick]


async def test_a_callback_that_forgets_a_future_fails_it_rather_than_hanging() -> None:
    def broken(requests: Sequence[StepRequest[int]]) -> None:
        raise RuntimeError("broken batch")

    w: Worker[int] = Worker(broken)
    try:
        with pytest.raises(RuntimeError, match="broken batch"):
            await asyncio.wait_for(w.step(1), 5)
        assert await w.run(lambda: "still serving") == "still serving"
    finally:
        w.close()


async def test_service_runs_waiting_steps_between_chunks_of_a_job(
    worker: Worker[int], recorder: Recorder
) -> None:
    """A long job calls service() between its chunks: steps queued meanwhile run then."""
    queued = threading.Event()
    ticks_seen: list[int] = []

    def long_job() -> str:
        queued.wait(5)
        for _ in range(3):
            worker.service()
            ticks_seen.append(len(recorder.ticks))
        return "done"

    job = asyncio.ensure_future(worker.run(long_job))
    await asyncio.sleep(0.05)
    step = asyncio.ensure_future(worker.step(4))
    await asyncio.sleep(0.05)
    queued.set()
    assert await job == "done"
    assert await step == 40
    assert ticks_seen == [1, 1, 1]  # served at the first chunk boundary, and only once


async def test_service_is_refused_outside_the_worker(worker: Worker[int]) -> None:
    with pytest.raises(RuntimeError, match="worker thread"):
        worker.service()


async def test_close_cancels_what_is_queued(recorder: Recorder) -> None:
    w: Worker[int] = Worker(recorder)
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "finished"

    running = w.submit(slow)
    started.wait(5)
    queued = w.submit(lambda: "never")
    step = w.submit_step(3)
    closer = threading.Thread(target=w.close)
    closer.start()
    release.set()
    closer.join(5)
    assert running.result(5) == "finished"
    assert queued.cancelled() and step.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        w.submit(lambda: None)


def test_max_batch_must_be_positive(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Worker(recorder, max_batch=0)
