"""Agent: instructions, tools, a model and a mode; ``run`` a prompt or ``stream`` its events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from counterpoint.agents._prompt import build_system_prompt
from counterpoint.runtime.backends.base import Message, Model, SamplingParams
from counterpoint.runtime.backends.registry import resolve_model
from counterpoint.runtime.events import Done, Event, EventSink
from counterpoint.runtime.session import Limits, Mode, PendingPolicy, RunResult, Session
from counterpoint.tools.tool import Tool
from counterpoint.tools.toolset import Toolset

__all__ = ["Agent", "run_sync"]

Prompt_ = str | Sequence[Message]


@runtime_checkable
class _ToolAware(Protocol):
    """A backend that can call tools natively (OpenAIModel)."""

    def with_tools(self, tools: Sequence[Any], *, native_tools: bool | None = None) -> Model: ...


class Agent:
    """An LLM agent that calls tools through the CML protocol.

    Args:
        name: a name for traces and reports.
        instructions: the agent's own instructions (the start of its system prompt).
        tools: tools, or plain functions (wrapped with ``@tool``), or a Toolset.
        model: a Model, a model spec (``"embedded"``, a local path, a cached hub id,
            ``"openai:NAME"``), or None for the embedded default.
        mode: ``"async"`` (default), ``"parallel"`` or ``"sync"``.
        params: sampling parameters (greedy by default).
        limits: bounds on tokens, calls and pending calls.
        pending_policy: what end of stream with calls still running means: ``"wait"`` (an implicit
            trap, the default) or ``"cancel"``.
        tracer: where events are recorded: True for the default SQLite tracer, False for none, or
            any EventSink.
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
    ) -> None:
        self.name = name
        self.instructions = instructions
        self.tools = tools if isinstance(tools, Toolset) else Toolset(tools)
        self._model_spec = model
        self._model: Model | None = model if not isinstance(model, str | None) else None
        self.mode: Mode = mode
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

    def system_prompt(self, mode: Mode | None = None) -> str:
        """The system prompt: the instructions, then the CML protocol and the tools.

        Where the backend calls tools natively (an OpenAI-compatible server in sync or parallel
        mode) the server describes the tools itself and the prompt is the instructions alone.
        """
        if self._native(mode or self.mode):
            return self.instructions
        return build_system_prompt(self.instructions, self.tools)

    def _native(self, mode: Mode) -> bool:
        return mode != "async" and len(self.tools) > 0 and isinstance(self.model, _ToolAware)

    def _model_for(self, mode: Mode) -> Model:
        """The model, told about the tools when it can call them natively."""
        model = self.model
        if isinstance(model, _ToolAware) and len(self.tools):
            return model.with_tools(self.tools.openai_schemas(), native_tools=mode != "async")
        return model

    def messages(self, prompt: Prompt_, *, mode: Mode | None = None) -> list[Message]:
        """The chat messages a run starts from: the system prompt, then the user's prompt."""
        system = Message(role="system", content=self.system_prompt(mode))
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
        emit: Callable[[Event], None] | None = None,
        parent_run_id: str | None = None,
        mode: Mode | None = None,
    ) -> Session:
        """A new session of this agent (one run)."""
        sinks = self._sinks()

        def fanout(event: Event) -> None:
            for sink in sinks:
                sink.emit(event)
            if emit is not None:
                emit(event)

        return Session(
            self._model_for(mode or self.mode),
            self.tools,
            mode=mode or self.mode,
            params=self.params,
            limits=self.limits,
            pending_policy=self.pending_policy,
            emit=fanout,
            name=self.name,
            parent_run_id=parent_run_id,
        )

    async def run(
        self, prompt: Prompt_, *, parent_run_id: str | None = None, mode: Mode | None = None
    ) -> RunResult:
        """Run the agent on ``prompt`` and return the result (answer, calls, timings, usage)."""
        session = self.session(parent_run_id=parent_run_id, mode=mode)
        return await session.run(self.messages(prompt, mode=session.mode))

    async def stream(self, prompt: Prompt_, *, mode: Mode | None = None) -> AsyncIterator[Event]:
        """Run the agent and yield its events as they happen, ending with ``done``.

        Closing the iterator early cancels the run and every call in flight.
        """
        queue: asyncio.Queue[Event] = asyncio.Queue()
        session = self.session(emit=queue.put_nowait, mode=mode)
        task = asyncio.create_task(session.run(self.messages(prompt, mode=session.mode)))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    while not queue.empty():
                        yield queue.get_nowait()
                    task.result()  # the run ended without a done event: raise its error
                    return
                event = getter.result()
                yield event
                if isinstance(event, Done):
                    await task
                    return
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def run_sync(self, prompt: Prompt_, *, mode: Mode | None = None) -> RunResult:
        """``run`` for scripts: runs its own event loop."""
        return asyncio.run(self.run(prompt, mode=mode))


def run_sync(agent: Agent, prompt: Prompt_) -> RunResult:
    """Run ``agent`` on ``prompt`` from synchronous code."""
    return agent.run_sync(prompt)
