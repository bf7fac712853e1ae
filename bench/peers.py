"""counterpoint's async mode side by side with PydanticAI and the OpenAI Agents SDK.

The workloads of ``bench/async_latency.py`` (counterpoint.testing.workloads: the parallel set and
the multi-step set, tool latencies drawn deterministically from 30–500 ms) at 5 ms per token, run
in one process, task by task, through three frameworks:

- **counterpoint** ``async`` mode on ScriptedModel driven by the workload's IdealPolicy, exactly as
  ``bench/async_latency.py`` runs it: calls are dispatched while the model keeps writing, results
  are injected as interrupts;
- **PydanticAI** (``pydantic-ai-slim``): an ``Agent`` whose model is a ``FunctionModel`` with a
  ``stream_function``, run through ``Agent.run(..., event_stream_handler=...)`` (the streamed model
  path); the tools are ``pydantic_ai.Tool`` objects over typed async functions;
- **OpenAI Agents SDK** (``openai-agents``): an ``Agent`` whose model is a custom ``Model`` subclass
  (``stream_response`` emits Responses-API stream events, ``get_response`` collects them), run
  through ``Runner.run_streamed``; the tools are ``function_tool``s. Tracing is disabled and no
  OpenAI client is ever constructed (the bench refuses one if anything tries).

Both peers are driven by the same IdealPolicy, a turn at a time: a peer cannot interleave
generation with tool execution, so each model request writes every call the policy has ready (one
dependency level of the multi-step set, all calls of a parallel task), as tool-call parts streamed
at the same token rate and the same number of tokens per call as counterpoint's CML call; the
framework's own loop dispatches the tools (each sleeps the same simulated latency) and sends the
results back; the next request writes the next level; the last writes the final answer as text
tokens. The bench checks that every peer made the same calls as counterpoint (same count per task,
same functions and arguments), and whether each ran a turn's calls concurrently; each framework's
figure is set against the latency bound (counterpoint.testing.latency) of what it did: ``async``
for counterpoint, ``parallel`` for a framework that ran a turn's calls together, ``sync`` for one
that ran them one after another. Efficiency = bound / measured.

Latency is measured from the first generated token to the last (the paper's measure, the one
``bench/async_latency.py`` reports); the wall time of the whole run call is reported too.
Speedups are peer latency / counterpoint latency. Run ``python bench/peers.py [--quick]``; needs
the ``bench`` extra. Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from async_latency import PROMPT, bound

from counterpoint.runtime.session import Session
from counterpoint.testing.scripted import ScriptedModel, scripted_tokens
from counterpoint.testing.workloads import (
    FINAL_ANSWER,
    IdealPolicy,
    Task,
    function_latency,
    multistep_set,
    parallel_set,
    task_toolset,
)

FRAMEWORKS = ("counterpoint", "pydantic_ai", "openai_agents")
_CALL_RE = re.compile(
    r'\[CALL\]\s*(\w+)\s*\[HEAD\]\s*(\w+)\(item="([^"]*)", step=(\d+)\)\s*\[END\]'
)


class BenchError(RuntimeError):
    """A self-check of the bench failed."""


# -- the shared script: IdealPolicy, a turn at a time --------------------------------------------


@dataclass(frozen=True)
class PeerCall:
    """One call as IdealPolicy wrote it, with its CML token count (the time it takes to write)."""

    call_id: str
    name: str
    args: dict[str, Any]
    tokens: int

    def arg_chunks(self) -> list[str]:
        """The call's JSON arguments in ``tokens`` pieces (padded with JSON whitespace if short)."""
        text = json.dumps(self.args)
        text += " " * max(0, self.tokens - len(text))
        cuts = [len(text) * i // self.tokens for i in range(self.tokens + 1)]
        return [text[a:b] for a, b in itertools.pairwise(cuts)]


class TurnScript:
    """IdealPolicy for a peer that cannot interleave: each request gets every call that is ready.

    The policy is asked for parts until it would wait; the calls it wrote form the turn. Results
    are told to it by call id (the only thing it reads from an interrupt).
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.policy = IdealPolicy(task)
        self.turns: list[list[PeerCall]] = []
        self.final_requests = 0

    def next_turn(self, done_ids: Iterable[str]) -> list[PeerCall] | str:
        extensions = [f"[INTR] {call_id} [HEAD] done" for call_id in sorted(set(done_ids))]
        calls: list[PeerCall] = []
        while True:
            part = self.policy(extensions)
            if part is None or part == "":
                break
            match = _CALL_RE.fullmatch(part.strip())
            if match is None:  # the final answer
                if calls:
                    raise BenchError(f"{self.task.id}: final answer in the same turn as calls")
                self.final_requests += 1
                return part
            call_id, name, item, step = match.groups()
            args = {"item": item, "step": int(step)}
            calls.append(PeerCall(call_id, name, args, len(scripted_tokens(part))))
        if not calls:
            raise BenchError(
                f"{self.task.id}: asked for a turn with nothing ready (done {extensions})"
            )
        self.turns.append(calls)
        return calls


class Pacer:
    """Token pacing as ScriptedDecoder does it: one token every ``dt``, no drift within a request.

    A new request (a new model call) restarts the schedule from now, as the scripted decoder does
    after the session waited on a tool. Records the first and last token times of the run, and per
    request its first and last token times and token count (to tell the time the framework's
    consumption of the stream cost from its turnaround between requests).
    """

    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.tokens = 0
        self.requests: list[list[float]] = []  # [first_t, last_t, tokens] per model request
        self._next_due: float | None = None

    def restart(self) -> None:
        self._next_due = None
        self.requests.append([0.0, 0.0, 0])

    async def token(self) -> None:
        now = time.perf_counter()
        due = now + self.dt if self._next_due is None else self._next_due + self.dt
        if self._next_due is not None and now - self._next_due > self.dt:
            due = now + self.dt
        self._next_due = due
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.perf_counter()
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        self.tokens += 1
        request = self.requests[-1]
        if not request[2]:
            request[0] = t
        request[1] = t
        request[2] += 1

    @property
    def stream_slip_s(self) -> float:
        """Time lost inside the streams: spans of the requests beyond their tokens' own time."""
        return sum(last - first - (n - 1) * self.dt for first, last, n in self.requests if n)

    @property
    def latency_s(self) -> float:
        if self.first_t is None or self.last_t is None:
            raise BenchError("no token was generated")
        return self.last_t - self.first_t


@dataclass
class ToolLog:
    """What a peer's tools were actually asked to do, with start and end times."""

    task: Task
    runs: list[tuple[str, dict[str, Any], float, float]] = field(default_factory=list)

    async def execute(self, name: str, item: str, step: int) -> dict[str, Any]:
        start = time.perf_counter()
        await asyncio.sleep(function_latency(name))
        self.runs.append((name, {"item": item, "step": step}, start, time.perf_counter()))
        return {"function": name, "ok": True, "item": item, "step": step}


@dataclass
class PeerRun:
    latency_s: float
    wall_s: float
    calls: int
    turns: int
    requests: int  # model requests (turns of calls and the final answer)
    stream_slip_s: float  # of the latency, time lost while the framework consumed the streams
    multi_turns: int  # turns of 2+ calls
    concurrent_turns: int  # ... whose executions all overlapped
    sequential_turns: int  # ... executed one after another


def check_peer(
    framework: str, script: TurnScript, log: ToolLog, output: str
) -> tuple[int, int, int]:
    """Check a peer made exactly the policy's calls; classify how it ran each turn's calls."""
    task = script.task
    if output.strip() != FINAL_ANSWER:
        raise BenchError(f"{framework} {task.id}: final output {output!r}")
    if script.final_requests != 1:
        raise BenchError(f"{framework} {task.id}: {script.final_requests} final-answer requests")
    expected = sorted((n, json.dumps({"item": task.id, "step": si})) for _, si, n in task.calls())
    executed = sorted((n, json.dumps(args)) for n, args, _, _ in log.runs)
    written = sorted((c.name, json.dumps(c.args)) for turn in script.turns for c in turn)
    if executed != expected or written != expected:
        raise BenchError(
            f"{framework} {task.id}: calls differ from the workload's\n"
            f"  expected {expected}\n  written  {written}\n  executed {executed}"
        )
    times = {name: (start, end) for name, _, start, end in log.runs}
    concurrent = sequential = 0
    for turn in script.turns:
        if len(turn) < 2:
            continue
        spans = [times[c.name] for c in turn]
        if max(s for s, _ in spans) < min(e for _, e in spans):
            concurrent += 1
        else:
            ordered = sorted(spans)
            if all(a[1] <= b[0] + 1e-4 for a, b in itertools.pairwise(ordered)):
                sequential += 1
    return sum(len(turn) >= 2 for turn in script.turns), concurrent, sequential


def finished_run(name: str, script: Any, log: Any, output: Any, pacer: Any, wall: float) -> PeerRun:
    """A peer's run, checked against its script (:func:`check_peer`) and measured."""
    multi, concurrent, sequential = check_peer(name, script, log, output)
    return PeerRun(
        pacer.latency_s,
        wall,
        len(log.runs),
        len(script.turns),
        len(pacer.requests),
        pacer.stream_slip_s,
        multi,
        concurrent,
        sequential,
    )


# -- counterpoint --------------------------------------------------------------------------------


async def run_counterpoint(task: Task, dt: float) -> PeerRun:
    model = ScriptedModel(IdealPolicy(task), token_time_s=dt)
    session = Session(model, task_toolset(task), mode="async")
    t0 = time.perf_counter()
    result = await session.run(PROMPT)
    wall = time.perf_counter() - t0
    if result.status != "ok" or not all(r.ok for r in result.calls):
        raise BenchError(f"counterpoint {task.id}: {result.status} {result.calls}")
    return PeerRun(result.latency_s, wall, len(result.calls), 0, 0, 0.0, 0, 0, 0)


# -- PydanticAI ----------------------------------------------------------------------------------


def make_pydantic_ai_runner(dt: float) -> Callable[[Task], Any]:
    from pydantic_ai import Agent, Tool
    from pydantic_ai.messages import ModelRequest, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

    async def run(task: Task) -> PeerRun:
        script = TurnScript(task)
        pacer = Pacer(dt)
        log = ToolLog(task)

        async def stream(messages: list[Any], info: AgentInfo) -> AsyncIterator[Any]:
            offered = {t.name for t in info.function_tools}
            done = [
                part.tool_call_id
                for message in messages
                if isinstance(message, ModelRequest)
                for part in message.parts
                if isinstance(part, ToolReturnPart)
                and isinstance(part.content, dict)
                and part.content.get("ok") is True
            ]
            turn = script.next_turn(done)
            pacer.restart()
            if isinstance(turn, str):
                for piece in scripted_tokens(turn):
                    await pacer.token()
                    yield piece
                return
            for index, call in enumerate(turn):
                if call.name not in offered:
                    raise BenchError(f"pydantic_ai {task.id}: {call.name} not offered")
                for k, chunk in enumerate(call.arg_chunks()):
                    await pacer.token()
                    if k == 0:
                        yield {index: DeltaToolCall(call.name, chunk, tool_call_id=call.call_id)}
                    else:
                        yield {index: DeltaToolCall(json_args=chunk)}

        def make_tool(name: str) -> Tool[None]:
            async def impl(item: str, step: int) -> dict[str, Any]:
                return await log.execute(name, item, step)

            latency_ms = function_latency(name) * 1000
            return Tool(
                impl, name=name, description=f"A simulated function taking {latency_ms:.0f} ms."
            )

        names = sorted({n for chain in task.chains for n in chain})
        agent = Agent(
            FunctionModel(stream_function=stream, model_name="paced-ideal-policy"),
            tools=[make_tool(n) for n in names],
            instructions=PROMPT[0].content,
            output_type=str,
        )
        events = 0

        async def on_events(_ctx: Any, stream_events: Any) -> None:
            nonlocal events
            async for _ in stream_events:
                events += 1

        t0 = time.perf_counter()
        result = await agent.run(PROMPT[1].content, event_stream_handler=on_events)
        wall = time.perf_counter() - t0
        if events == 0:
            raise BenchError(f"pydantic_ai {task.id}: no streamed events")
        return finished_run("pydantic_ai", script, log, result.output, pacer, wall)

    return run


# -- OpenAI Agents SDK ---------------------------------------------------------------------------


def make_openai_agents_runner(dt: float, *, streamed: bool = True) -> Callable[[Task], Any]:
    import openai
    from agents import (
        Agent,
        ModelSettings,
        RunConfig,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import (
        Response,
        ResponseCompletedEvent,
        ResponseContentPartAddedEvent,
        ResponseContentPartDoneEvent,
        ResponseCreatedEvent,
        ResponseFunctionCallArgumentsDeltaEvent,
        ResponseFunctionCallArgumentsDoneEvent,
        ResponseFunctionToolCall,
        ResponseOutputItemAddedEvent,
        ResponseOutputItemDoneEvent,
        ResponseOutputMessage,
        ResponseOutputText,
        ResponseTextDeltaEvent,
        ResponseTextDoneEvent,
    )

    set_tracing_disabled(True)

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise BenchError("bench/peers.py must never construct an OpenAI client")

    openai.AsyncOpenAI.__init__ = refuse  # type: ignore[method-assign]
    openai.OpenAI.__init__ = refuse  # type: ignore[method-assign]

    class PacedPolicyModel(Model):
        """A Model writing IdealPolicy's turns as Responses-API stream events, paced per token."""

        def __init__(self, script: TurnScript, pacer: Pacer) -> None:
            self.script = script
            self.pacer = pacer
            self.requests = 0

        def _done_ids(self, items: str | list[Any]) -> list[str]:
            if isinstance(items, str):
                return []
            return [
                item["call_id"]
                for item in items
                if isinstance(item, dict) and item.get("type") == "function_call_output"
            ]

        async def get_response(
            self,
            system_instructions: str | None,
            input: str | list[Any],
            model_settings: Any,
            tools: list[Any],
            output_schema: Any,
            handoffs: list[Any],
            tracing: Any,
            **kwargs: Any,
        ) -> ModelResponse:
            final: Response | None = None
            async for event in self.stream_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                **kwargs,
            ):
                if isinstance(event, ResponseCompletedEvent):
                    final = event.response
            assert final is not None
            return ModelResponse(
                output=list(final.output), usage=Usage(requests=1), response_id=None
            )

        async def stream_response(
            self,
            system_instructions: str | None,
            input: str | list[Any],
            model_settings: Any,
            tools: list[Any],
            output_schema: Any,
            handoffs: list[Any],
            tracing: Any,
            **kwargs: Any,
        ) -> AsyncIterator[Any]:
            self.requests += 1
            offered = {getattr(t, "name", None) for t in tools}
            turn = self.script.next_turn(self._done_ids(input))
            self.pacer.restart()
            rid = f"resp_{self.requests}"
            seq = 0

            def nxt() -> int:
                nonlocal seq
                seq += 1
                return seq - 1

            def response(output: list[Any], status: Any) -> Response:
                return Response(
                    id=rid,
                    created_at=0,
                    model="paced-ideal-policy",
                    object="response",
                    output=output,
                    tool_choice="auto",
                    tools=[],
                    top_p=None,
                    parallel_tool_calls=True,
                    status=status,
                )

            yield ResponseCreatedEvent(
                type="response.created", response=response([], "in_progress"), sequence_number=nxt()
            )
            output: list[Any] = []
            if isinstance(turn, str):
                mid = f"msg_{self.requests}"
                yield ResponseOutputItemAddedEvent(
                    type="response.output_item.added",
                    item=ResponseOutputMessage(
                        id=mid, type="message", role="assistant", status="in_progress", content=[]
                    ),
                    output_index=0,
                    sequence_number=nxt(),
                )
                empty = ResponseOutputText(text="", type="output_text", annotations=[], logprobs=[])
                yield ResponseContentPartAddedEvent(
                    type="response.content_part.added",
                    item_id=mid,
                    output_index=0,
                    content_index=0,
                    part=empty,
                    sequence_number=nxt(),
                )
                for piece in scripted_tokens(turn):
                    await self.pacer.token()
                    yield ResponseTextDeltaEvent(
                        type="response.output_text.delta",
                        item_id=mid,
                        output_index=0,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                        sequence_number=nxt(),
                    )
                part = ResponseOutputText(
                    text=turn, type="output_text", annotations=[], logprobs=[]
                )
                yield ResponseTextDoneEvent(
                    type="response.output_text.done",
                    item_id=mid,
                    output_index=0,
                    content_index=0,
                    text=turn,
                    logprobs=[],
                    sequence_number=nxt(),
                )
                yield ResponseContentPartDoneEvent(
                    type="response.content_part.done",
                    item_id=mid,
                    output_index=0,
                    content_index=0,
                    part=part,
                    sequence_number=nxt(),
                )
                message = ResponseOutputMessage(
                    id=mid, type="message", role="assistant", status="completed", content=[part]
                )
                yield ResponseOutputItemDoneEvent(
                    type="response.output_item.done",
                    item=message,
                    output_index=0,
                    sequence_number=nxt(),
                )
                output.append(message)
            else:
                for index, call in enumerate(turn):
                    if call.name not in offered:
                        raise BenchError(
                            f"openai_agents {self.script.task.id}: {call.name} not offered"
                        )
                    item_id = f"fc_{call.call_id}"
                    for k, chunk in enumerate(call.arg_chunks()):
                        await self.pacer.token()
                        if k == 0:
                            yield ResponseOutputItemAddedEvent(
                                type="response.output_item.added",
                                item=ResponseFunctionToolCall(
                                    id=item_id,
                                    call_id=call.call_id,
                                    type="function_call",
                                    name=call.name,
                                    arguments="",
                                    status="in_progress",
                                ),
                                output_index=index,
                                sequence_number=nxt(),
                            )
                        yield ResponseFunctionCallArgumentsDeltaEvent(
                            type="response.function_call_arguments.delta",
                            item_id=item_id,
                            output_index=index,
                            delta=chunk,
                            sequence_number=nxt(),
                        )
                    arguments = "".join(call.arg_chunks())
                    yield ResponseFunctionCallArgumentsDoneEvent.model_validate(
                        {
                            "type": "response.function_call_arguments.done",
                            "item_id": item_id,
                            "output_index": index,
                            "arguments": arguments,
                            "name": call.name,
                            "sequence_number": nxt(),
                        }
                    )
                    done = ResponseFunctionToolCall(
                        id=item_id,
                        call_id=call.call_id,
                        type="function_call",
                        name=call.name,
                        arguments=arguments,
                        status="completed",
                    )
                    yield ResponseOutputItemDoneEvent(
                        type="response.output_item.done",
                        item=done,
                        output_index=index,
                        sequence_number=nxt(),
                    )
                    output.append(done)
            yield ResponseCompletedEvent(
                type="response.completed",
                response=response(output, "completed"),
                sequence_number=nxt(),
            )

    async def run(task: Task) -> PeerRun:
        script = TurnScript(task)
        pacer = Pacer(dt)
        log = ToolLog(task)

        def make_tool(name: str) -> Any:
            async def impl(item: str, step: int) -> dict[str, Any]:
                return await log.execute(name, item, step)

            latency_ms = function_latency(name) * 1000
            return function_tool(
                impl,
                name_override=name,
                description_override=f"A simulated function taking {latency_ms:.0f} ms.",
            )

        names = sorted({n for chain in task.chains for n in chain})
        model = PacedPolicyModel(script, pacer)
        agent = Agent(
            name="bench",
            instructions=PROMPT[0].content,
            tools=[make_tool(n) for n in names],
            model=model,
            model_settings=ModelSettings(parallel_tool_calls=True),
        )
        options: dict[str, Any] = {
            "max_turns": len(task.calls()) + 4,
            "run_config": RunConfig(tracing_disabled=True),
        }
        t0 = time.perf_counter()
        if streamed:
            streaming = Runner.run_streamed(agent, PROMPT[1].content, **options)
            events = 0
            async for _ in streaming.stream_events():
                events += 1
            if events == 0:
                raise BenchError(f"openai_agents {task.id}: no streamed events")
            output = streaming.final_output
        else:  # get_response: the same pacing, no stream events
            output = (await Runner.run(agent, PROMPT[1].content, **options)).final_output
        wall = time.perf_counter() - t0
        return finished_run("openai_agents", script, log, str(output), pacer, wall)

    return run


# -- the side-by-side run ------------------------------------------------------------------------


def framework_mode(framework: str, runs: Sequence[PeerRun]) -> str:
    """The latency model matching how a framework ran the calls of a turn."""
    if framework == "counterpoint":
        return "async"
    multi = sum(r.multi_turns for r in runs)
    concurrent = sum(r.concurrent_turns for r in runs)
    sequential = sum(r.sequential_turns for r in runs)
    if multi and concurrent == multi:
        return "parallel"
    if multi and sequential == multi:
        return "sequential"
    raise BenchError(
        f"{framework}: of {multi} turns of several calls, {concurrent} ran their calls "
        f"concurrently and {sequential} one after another; no latency bound matches"
    )


async def run_set(
    name: str, tasks: Sequence[Task], dt: float, runners: dict[str, Callable[[Task], Any]]
) -> dict[str, Any]:
    runs: dict[str, list[PeerRun]] = {f: [] for f in FRAMEWORKS}
    for task in tasks:
        per_task = {}
        for framework in FRAMEWORKS:  # interleaved, so drift of the machine hits each alike
            run = await runners[framework](task)
            runs[framework].append(run)
            per_task[framework] = run.calls
        if len(set(per_task.values())) != 1 or per_task["counterpoint"] != len(task.calls()):
            raise BenchError(f"{task.id}: tool call counts differ: {per_task}")
    out: dict[str, Any] = {"set": name, "tasks": len(tasks)}
    print(f"\n{name} set: {len(tasks)} tasks, {dt * 1000:.0f} ms/token")
    print(
        f"{'framework':14} {'tools ran':>10} {'bound':>9} {'latency s':>10} {'bound s':>8} "
        f"{'efficiency':>10} {'wall s':>8}"
    )
    for framework in FRAMEWORKS:
        mode = framework_mode(framework, runs[framework])
        bound_mode = {"sequential": "sync"}.get(mode, mode)
        measured = sum(r.latency_s for r in runs[framework]) / len(tasks)
        wall = sum(r.wall_s for r in runs[framework]) / len(tasks)
        bnd = sum(bound(t, bound_mode, dt) for t in tasks) / len(tasks)
        ran = "interleaved" if framework == "counterpoint" else mode
        out[framework] = {
            "tools": ran,
            "bound": bound_mode,
            "latency_s": round(measured, 4),
            "bound_s": round(bnd, 4),
            "efficiency": round(bnd / measured, 3),
            "wall_s": round(wall, 4),
            "calls": sum(r.calls for r in runs[framework]),
        }
        line = (
            f"{framework:14} {ran:>10} {bound_mode:>9} {measured:10.3f} {bnd:8.3f} "
            f"{bnd / measured:10.3f} {wall:8.3f}"
        )
        if requests := sum(r.requests for r in runs[framework]):
            # the gap to the bound, per model request, and the part of it lost inside the streams
            gap_ms = (measured - bnd) * len(tasks) / requests * 1000
            slip_ms = sum(r.stream_slip_s for r in runs[framework]) / requests * 1000
            out[framework]["model_requests"] = requests
            out[framework]["gap_ms_per_model_request"] = round(gap_ms, 2)
            out[framework]["stream_slip_ms_per_model_request"] = round(slip_ms, 2)
            line += f"   gap {gap_ms:.1f} ms/request, {slip_ms:.1f} of it in the stream"
        print(line)
    cp = out["counterpoint"]["latency_s"]
    for peer in FRAMEWORKS[1:]:
        out[f"speedup_vs_{peer}"] = round(out[peer]["latency_s"] / cp, 3)
        out[f"bound_speedup_vs_{peer}"] = round(
            out[peer]["bound_s"] / out["counterpoint"]["bound_s"], 3
        )
    print(
        "speedup of counterpoint async: "
        + ", ".join(
            f"vs {p} {out[f'speedup_vs_{p}']:.2f} (bound {out[f'bound_speedup_vs_{p}']:.2f})"
            for p in FRAMEWORKS[1:]
        )
    )
    return out


async def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=14, help="tasks per set")
    parser.add_argument("--quick", action="store_true", help="4 tasks per set")
    parser.add_argument("--token-ms", type=float, default=5.0, help="ms per generated token")
    args = parser.parse_args(argv)
    n_tasks = 4 if args.quick else args.tasks
    dt = args.token_ms / 1000
    try:
        import agents
        import pydantic_ai
    except ImportError as exc:
        sys.exit(f"bench/peers.py needs the bench extra (pip install -e '.[bench]'): {exc}")
    from importlib.metadata import version

    versions = {
        "pydantic_ai": version("pydantic-ai-slim"),
        "openai_agents": version("openai-agents"),
    }
    del agents, pydantic_ai
    print("peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    async def counterpoint_runner(task: Task) -> PeerRun:
        return await run_counterpoint(task, dt)

    runners: dict[str, Callable[[Task], Any]] = {
        "counterpoint": counterpoint_runner,
        "pydantic_ai": make_pydantic_ai_runner(dt),
        "openai_agents": make_openai_agents_runner(dt),
    }
    for framework in FRAMEWORKS:  # warm-up: first-run imports and lazy set-up, not measured
        await runners[framework](parallel_set(1, seed=99)[0])

    sets = [
        await run_set("parallel", parallel_set(n_tasks), dt, runners),
        await run_set("multistep", multistep_set(n_tasks), dt, runners),
    ]
    result: dict[str, Any] = {
        "token_ms": args.token_ms,
        "tasks_per_set": n_tasks,
        "versions": versions,
    }
    for s in sets:
        name = s["set"]
        for peer in FRAMEWORKS[1:]:
            result[f"speedup_vs_{peer}_{name}_set"] = s[f"speedup_vs_{peer}"]
            result[f"bound_speedup_vs_{peer}_{name}_set"] = s[f"bound_speedup_vs_{peer}"]
        for framework in FRAMEWORKS:
            f = s[framework]
            key = f"{framework}_{name}"
            result[f"{key}_latency_s"] = f["latency_s"]
            result[f"{key}_bound_s"] = f["bound_s"]
            result[f"{key}_bound"] = f["bound"]
            result[f"{key}_efficiency"] = f["efficiency"]
            if "gap_ms_per_model_request" in f:
                result[f"{key}_gap_ms_per_model_request"] = f["gap_ms_per_model_request"]
    for peer in FRAMEWORKS[1:]:  # overall: total latency over both sets (equal task counts)
        peer_total = sum(s[peer]["latency_s"] for s in sets)
        cp_total = sum(s["counterpoint"]["latency_s"] for s in sets)
        result[f"speedup_vs_{peer}"] = round(peer_total / cp_total, 3)
        peer_wall = sum(s[peer]["wall_s"] for s in sets)
        cp_wall = sum(s["counterpoint"]["wall_s"] for s in sets)
        result[f"speedup_vs_{peer}_wall"] = round(peer_wall / cp_wall, 3)
        result[f"{peer}_tools_concurrent"] = all(s[peer]["tools"] == "parallel" for s in sets)
    result["calls_checked"] = sum(s["counterpoint"]["calls"] for s in sets)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except BenchError as exc:
        sys.exit(f"bench/peers.py: self-check failed: {exc}")
