"""The worker thread of a local model: jobs in order, decode steps batched per tick.

Every forward pass of a :class:`~counterpoint.runtime.backends.transformers.TransformersModel`
runs in its one :class:`Worker` thread, so the event loop stays free and passes never race.
Two kinds of work reach it:

- **jobs** (a prompt's prefill, an extension, teacher forcing, a KV-reuse pass): callables run
  one at a time, in the order they were submitted;
- **steps** (one token of one decoder): every step waiting when the worker comes round is run
  together as one *tick*, by the ``run_steps`` callback the model gives, which feeds all the
  one-token forward passes of the tick in one batched pass.

A tick waits up to ``gather_s`` (2 ms) for the decoders that stepped in the last two ticks to
come back (they resubmit from the event loop just after the worker resolves them), so decoders
never fall out of phase into ticks of one. Ticks and jobs alternate, so a waiting prefill never
starves the decoders, and a long prefill calls :meth:`Worker.service` between its chunks to run
the steps that arrived meanwhile: one session's prompt or interrupt stalls the others for one
chunk at most. At most ``max_batch``
steps share a tick; the rest wait for the next. A step whose caller has given up (its future is
cancelled) before its tick is dropped without running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["StepRequest", "Worker"]

_T = TypeVar("_T")
_S = TypeVar("_S")


@dataclass(eq=False)
class StepRequest(Generic[_S]):
    """One decoder's request for one token, resolved by the tick that runs it."""

    subject: _S
    future: Future[Any] = field(default_factory=Future)


class Worker(Generic[_S]):
    """One daemon thread running jobs in order and batching the steps of a tick.

    ``run_steps`` is called in the worker thread with the live requests of a tick (never more
    than ``max_batch``) and must resolve every request's future.
    """

    def __init__(
        self,
        run_steps: Callable[[Sequence[StepRequest[_S]]], None],
        *,
        max_batch: int = 16,
        gather_s: float = 0.002,
        name: str = "counterpoint-model",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run_steps = run_steps
        self.max_batch = max_batch
        self.gather_s = gather_s
        """How long a tick may wait for the steps of the previous tick's decoders to come back
        (they are resubmitted from the event loop just after the worker resolves them)."""
        self._seen: dict[int, int] = {}  # id(subject) -> the last tick it stepped in
        self._cond = threading.Condition()
        self._jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._steps: deque[StepRequest[_S]] = deque()
        self._closed = False
        self._ticking = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.ticks = 0
        """Ticks run so far (each one batched pass over the steps waiting then)."""
        self.stepped = 0
        """Steps run so far (``stepped / ticks`` is the mean batch size)."""

    # ------------------------------------------------------------------------------ submit

    def submit(self, job: Callable[[], _T]) -> Future[_T]:
        """Queue ``job``; its result (or exception) resolves the returned future."""
        future: Future[_T] = Future()
        with self._cond:
            self._check_open()
            self._jobs.append((job, future))
            self._cond.notify()
        return future

    def submit_step(self, subject: _S) -> Future[Any]:
        """Queue one step of ``subject`` for the next tick."""
        request = StepRequest(subject)
        with self._cond:
            self._check_open()
            self._steps.append(request)
            self._cond.notify()
        return request.future

    async def run(self, job: Callable[[], _T]) -> _T:
        """:meth:`submit` and await the result."""
        return await asyncio.wrap_future(self.submit(job))

    async def step(self, subject: _S) -> Any:
        """:meth:`submit_step` and await the result."""
        return await asyncio.wrap_future(self.submit_step(subject))

    # ------------------------------------------------------------------------------ worker side

    def service(self) -> None:
        """Run one tick of the steps waiting now, if any (worker thread only: a long job calls
        it between its chunks). Inside a tick it does nothing: ticks do not nest."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("Worker.service runs only in the worker thread, inside a job")
        if not self._ticking:
            self._tick()

    @property
    def waiting_steps(self) -> int:
        """Steps queued for the next tick."""
        with self._cond:
            return len(self._steps)

    def _gather(self) -> None:
        """Under the lock: give the decoders that stepped in the last two ticks ``gather_s`` to
        resubmit, so a tick is not started by the first of them alone (and decoders that fell
        out of phase come back into one tick)."""
        if not self._steps or self._jobs:
            return
        recent = {key for key, tick in self._seen.items() if tick >= self.ticks - 1}
        deadline = time.monotonic() + self.gather_s
        while not self._jobs and not self._closed:
            if recent <= {id(r.subject) for r in self._steps}:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take_steps(self) -> list[StepRequest[_S]]:
        with self._cond:
            taken: list[StepRequest[_S]] = []
            while self._steps and len(taken) < self.max_batch:
                request = self._steps.popleft()
                if request.future.set_running_or_notify_cancel():
                    taken.append(request)
            return taken

    def _tick(self) -> None:
        requests = self._take_steps()
        if not requests:
            return
        self.ticks += 1
        self.stepped += len(requests)
        for request in requests:
            self._seen[id(request.subject)] = self.ticks
        if len(self._seen) > 4 * self.max_batch:
            self._seen = {k: t for k, t in self._seen.items() if t >= self.ticks - 1}
        self._ticking = True
        try:
            self._run_steps(requests)
        except BaseException as exc:  # the callback's own failure: fail what it left open
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._ticking = False

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._steps and not self._closed:
                    self._cond.wait()
                self._gather()
                if self._closed:
                    pending = [f for _, f in self._jobs] + [r.future for r in self._steps]
                    self._jobs.clear()
                    self._steps.clear()
                    break
                job = self._jobs.popleft() if self._jobs else None
            self._tick()
            if job is not None:
                self._run_job(*job)
        for future in pending:
            future.cancel()

    @staticmethod
    def _run_job(job: Callable[[], Any], future: Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = job()
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)

    # ------------------------------------------------------------------------------ lifetime

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the model's worker is closed")

    def close(self, *, wait: bool = True) -> None:
        """Stop after the job or tick in progress; what is still queued is cancelled."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()
