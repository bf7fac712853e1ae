"""Agent: instructions, tools, a model and a mode; ``run`` a prompt, ``stream`` its events, or
``start`` it and talk to it while it runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Sequence
from typing import Any

from counterpoint.core.bus import EventBus
from counterpoint.core.events import BaseEvent, Done, EventSink
from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.protocol.prompt import build_system_prompt
from counterpoint.runtime.backends.base import Message, Model, SamplingParams, ToolChoice
from counterpoint.runtime.backends.registry import resolve_model
from counterpoint.runtime.session import Limits, Mode, PendingPolicy, RunResult, Session
from counterpoint.tools.tool import Tool
from counterpoint.tools.toolset import Toolset

__all__ = ["Agent", "RunHandle", "run_sync"]

Prompt_ = str | Sequence[Message]


class Agent:
    """An LLM agent that calls tools through the CML protocol.

    Args:
        name: a name for traces and reports.
        instructions: the agent's own instructions (the start of its system prompt; the backend
            adds the protocol and the tools, or sends the tools natively).
        tools: tools, or plain functions (wrapped with ``@tool``), or a Toolset.
        model: a Model, a model spec (``"embedded"``, a local path, a cached hub id,
            ``"openai:NAME"``), or None for the embedded default.
        mode: ``"async"`` (default), ``"parallel"`` or ``"sync"``.
        params: sampling parameters (greedy by default).
        tool_choice: ``"auto"`` (the default: the model decides), ``"required"`` (the first thing
            the model writes is a call), ``"none"`` (no call) or a tool's name (the first call is
            to it); overrides ``params.tool_choice``. The local backend enforces it while
            decoding.
        limits: bounds on tokens, calls and pending calls.
        pending_policy: what end of stream with calls still running means: ``"wait"`` (an implicit
            trap, the default) or ``"cancel"``.
        tracer: where events are recorded: True for the default SQLite tracer, False for none, or
            any EventSink. It is subscribed to the bus of each run the agent starts itself; a run
            on a bus the caller passes leaves the subscriptions to the caller.
    """

    def __init__(
        self,
        name: str = "agent",
        instructions: str = "You are a helpful assistant. Answer briefly.",
        tools: Toolset | Iterable[Tool | Callable[..., Any]] = (),
        model: Model | str | None = None,
        mode: Mode = "async",
        *,
        params: SamplingParams | None = None,
        limits: Limits | None = None,
        pending_policy: PendingPolicy = "wait",
        tracer: EventSink | bool = True,
        tool_choice: ToolChoice | None = None,
    ) -> None:
        self.name = name
        self.instructions = instructions
        self.tools = tools if isinstance(tools, Toolset) else Toolset(tools)
        self._model_spec = model
        self._model: Model | None = model if not isinstance(model, str | None) else None
        self.mode: Mode = mode
        if tool_choice is not None:
            base = (params or SamplingParams()).model_dump()
            try:
                params = SamplingParams.model_validate({**base, "tool_choice": tool_choice})
            except ValueError as exc:
                raise ConfigError(
                    f"tool_choice must be 'auto', 'required', 'none' or a tool's name, "
                    f"got {tool_choice!r}"
                ) from exc
        self.params = params
        self.limits = limits
        self.pending_policy: PendingPolicy = pending_policy
        self._tracer_spec = tracer

    @property
    def model(self) -> Model:
        """The model, loaded on first use."""
        if self._model is None:
            spec = self._model_spec if isinstance(self._model_spec, str) else None
            self._model = resolve_model(spec)
        return self._model

    @property
    def model_key(self) -> str:
        """What names this agent's model in a workflow's concurrency limits (``model:KEY``): the
        model spec it was given (``"embedded"``, ``"openai:NAME"``...), or a Model's name."""
        if isinstance(self._model_spec, str):
            return self._model_spec
        if self._model is not None:
            return self._model.name
        return "embedded"

    def replace(self, **changes: Any) -> Agent:
        """A copy of this agent with some of its constructor arguments changed.

        ``agent.replace(model=other)`` runs the same agent on another model.
        """
        fields: dict[str, Any] = {
            "name": self.name,
            "instructions": self.instructions,
            "tools": self.tools,
            "model": self._model if self._model is not None else self._model_spec,
            "mode": self.mode,
            "params": self.params,
            "limits": self.limits,
            "pending_policy": self.pending_policy,
            "tracer": self._tracer_spec,
            "tool_choice": None,
        }
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"Agent.replace() got unknown field(s): {', '.join(sorted(unknown))}")
        fields.update(changes)
        return Agent(**fields)

    def system_prompt(self) -> str:
        """The system prompt a CML backend renders: the instructions, the protocol, the tools.

        (A backend with native tool calls sends the instructions alone and the tools natively.)
        """
        return build_system_prompt(self.instructions, self.tools.specs())

    def messages(self, prompt: Prompt_) -> list[Message]:
        """The chat messages a run starts from: the instructions, then the user's prompt.

        A list that already starts with a system message is used as it is.
        """
        system = Message(role="system", content=self.instructions)
        if isinstance(prompt, str):
            return [system, Message(role="user", content=prompt)]
        given = list(prompt)
        return given if given and given[0].role == "system" else [system, *given]

    def _sinks(self) -> list[EventSink]:
        tracer = self._tracer_spec
        if tracer is True:
            from counterpoint.runtime.tracing import default_tracer

            return [default_tracer()]
        if tracer is False:
            return []
        return [tracer]

    def session(
        self,
        *,
        bus: EventBus | None = None,
        emit: Callable[[BaseEvent], None] | None = None,
        parent_run_id: str | None = None,
        mode: Mode | None = None,
        run_id: str | None = None,
    ) -> Session:
        """A new session of this agent (one run) on ``bus`` (a new bus with the tracer if None)."""
        if bus is None:
            bus = EventBus()
            for sink in self._sinks():
                bus.subscribe(sink)
        return Session(
            self.model,
            self.tools,
            mode=mode or self.mode,
            params=self.params,
            limits=self.limits,
            pending_policy=self.pending_policy,
            bus=bus,
            emit=emit,
            name=self.name,
            run_id=run_id,
            parent_run_id=parent_run_id,
        )

    async def run(
        self,
        prompt: Prompt_,
        *,
        parent_run_id: str | None = None,
        mode: Mode | None = None,
        bus: EventBus | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Run the agent on ``prompt`` and return the result (answer, calls, timings, usage).

        ``run_id`` names the run (default: a fresh id); ``parent_run_id`` ties it to the run it
        serves (a workflow's).
        """
        session = self.session(bus=bus, parent_run_id=parent_run_id, mode=mode, run_id=run_id)
        return await session.run(self.messages(prompt))

    def start(
        self,
        prompt: Prompt_,
        *,
        parent_run_id: str | None = None,
        mode: Mode | None = None,
        bus: EventBus | None = None,
    ) -> RunHandle:
        """Start a run in the background and return its handle (call from a running loop).

        ``handle.interrupt("also check Rome")`` sends the model a message mid-run;
        ``async for event in handle`` reads its events; ``await handle.result()`` its result.
        """
        session = self.session(bus=bus, parent_run_id=parent_run_id, mode=mode)
        return RunHandle(session, self.messages(prompt))

    async def stream(
        self, prompt: Prompt_, *, mode: Mode | None = None
    ) -> AsyncIterator[BaseEvent]:
        """Run the agent and yield its events as they happen, ending with ``done``.

        Closing the iterator early cancels the run and every call in flight.
        """
        handle = self.start(prompt, mode=mode)
        try:
            async for event in handle:
                yield event
            await handle.result()
        finally:
            await handle.cancel()

    def run_sync(self, prompt: Prompt_, *, mode: Mode | None = None) -> RunResult:
        """``run`` for scripts: runs its own event loop."""
        return asyncio.run(self.run(prompt, mode=mode))


class RunHandle:
    """A run going on in the background (see :meth:`Agent.start`).

    Iterate it for the run's events (each iteration sees them from the start of the run, ending
    with ``done``), await :meth:`result` for its :class:`RunResult` (or await the handle itself),
    :meth:`interrupt` to send the model a message, :meth:`cancel_call` to cancel one tool call,
    :meth:`cancel` to stop it.
    """

    def __init__(self, session: Session, messages: list[Message]) -> None:
        self.session = session
        self._history: list[BaseEvent] = []
        self._listeners: list[asyncio.Queue[BaseEvent | None]] = []
        session.bus.subscribe(self._record, name="run handle")
        self._task = asyncio.get_running_loop().create_task(session.run(messages))
        self._task.add_done_callback(self._ended)

    @property
    def run_id(self) -> str:
        return self.session.run_id

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self._task.done()

    def interrupt(self, text: str) -> None:
        """Send the model ``text`` as a user interrupt, injected at the next safe point."""
        if self._task.done():
            raise CounterpointError("the run is over: start a new run to send another message")
        self.session.interrupt(text)

    def cancel_call(self, call_id: str) -> bool:
        """Cancel one running tool call (the model gets a ``cancelled`` result and goes on);
        whether a call with that id was running."""
        return self.session.cancel_call(call_id)

    async def result(self) -> RunResult:
        """Wait for the run to end; its result (or its exception)."""
        return await asyncio.shield(self._task)

    def __await__(self) -> Generator[Any, None, RunResult]:
        return self.result().__await__()

    async def cancel(self) -> None:
        """Cancel the run and every call in flight; returns once it has stopped. Idempotent."""
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    def __aiter__(self) -> AsyncIterator[BaseEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[BaseEvent]:
        queue: asyncio.Queue[BaseEvent | None] = asyncio.Queue()
        for past in self._history:
            queue.put_nowait(past)
        if self._task.done():
            queue.put_nowait(None)
        else:
            self._listeners.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
                if isinstance(event, Done):
                    return
        finally:
            with contextlib.suppress(ValueError):
                self._listeners.remove(queue)

    def _record(self, event: BaseEvent) -> None:
        self._history.append(event)
        for queue in self._listeners:
            queue.put_nowait(event)

    def _ended(self, _task: asyncio.Task[RunResult]) -> None:
        for queue in self._listeners:
            queue.put_nowait(None)


def run_sync(agent: Agent, prompt: Prompt_) -> RunResult:
    """Run ``agent`` on ``prompt`` from synchronous code."""
    return agent.run_sync(prompt)
