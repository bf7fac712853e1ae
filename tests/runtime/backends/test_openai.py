"""OpenAIModel against a real llama.cpp server and against a fault-injecting loopback server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest

from counterpoint.core.calls import Call, CallResult, UserInterrupt
from counterpoint.errors import ConfigError, CounterpointError, ProtocolError
from counterpoint.protocol.cml import CallBlock, CMLParser, format_interrupt
from counterpoint.runtime.backends import _http
from counterpoint.runtime.backends.base import (
    Decoder,
    Message,
    Model,
    Prompt,
    SamplingParams,
    Token,
)
from counterpoint.runtime.backends.openai import (
    BackendError,
    OpenAIChatDecoder,
    OpenAICompletionDecoder,
    OpenAIModel,
)
from tests.runtime.backends._fault_server import FaultServer, Reply, completion_events
from tests.runtime.backends._llama_server import LlamaServer

MAX_STEPS = 400  # every generation loop below is bounded by this

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    },
}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


async def drain(decoder: Decoder, limit: int = MAX_STEPS) -> list[str]:
    """Step until end of stream (bounded); the texts of the tokens."""
    texts: list[str] = []
    for _ in range(limit):
        token = await decoder.step()
        if token is None:
            return texts
        texts.append(token.text)
    raise AssertionError(f"no end of stream within {limit} steps")


def call_blocks(text: str) -> list[CallBlock]:
    parser = CMLParser()
    events = [*parser.feed(text), *parser.finish()]
    return [e for e in events if isinstance(e, CallBlock)]


async def drain_tokens(decoder: Decoder, limit: int = MAX_STEPS) -> list[Token]:
    """Step until end of stream (bounded); the tokens themselves."""
    tokens: list[Token] = []
    for _ in range(limit):
        token = await decoder.step()
        if token is None:
            return tokens
        tokens.append(token)
    raise AssertionError(f"no end of stream within {limit} steps")


def result(call_id: str, text: str) -> CallResult:
    return CallResult(call=Call(id=call_id, name="f"), ok=True, text=text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def chat_events(deltas: list[dict[str, Any]], finish: str) -> list[str]:
    """SSE payloads of a chat stream with these deltas."""
    chunks = [{"choices": [{"index": 0, "delta": d}]} for d in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return [*(json.dumps(c) for c in chunks), "[DONE]"]


def tool_delta(
    index: int, *, id: str | None = None, name: str = "", args: str = ""
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id is not None:
        call.update(id=id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


@pytest.fixture
def backoff_delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry backoff delays instead of sleeping them."""
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(_http, "_sleep", record)
    return delays


# -- against a real llama.cpp server -------------------------------------------------------------


@pytest.mark.model
async def test_model_satisfies_the_seam(llama_openai_model: OpenAIModel) -> None:
    assert isinstance(llama_openai_model, Model)
    decoder = await llama_openai_model.start(
        [Message(role="user", content="Hi")], SamplingParams(max_tokens=2)
    )
    assert isinstance(decoder, Decoder)
    await decoder.close()
    await decoder.close()  # idempotent
    assert await decoder.step() is None
    assert await llama_openai_model.models() == ["smollm2"]


@pytest.mark.model
async def test_plain_chat_streams_several_tokens(llama_openai_model: OpenAIModel) -> None:
    decoder = await llama_openai_model.start_chat(
        [Message(role="user", content="What is the capital of France? Answer in one sentence.")],
        SamplingParams(max_tokens=24),
    )
    texts = await drain(decoder)
    assert len(texts) > 1  # streamed, not one blob
    assert "Paris" in "".join(texts)
    assert decoder.generated_tokens == len(texts)  # llama.cpp streams one token per chunk
    assert decoder.prompt_tokens > 5
    assert len(decoder.ttfts) == 1 and decoder.restarts == []


@pytest.mark.model
async def test_streamed_completion_equals_the_non_streamed_one(
    llama_openai_model: OpenAIModel, llama_server: LlamaServer
) -> None:
    prompt = llama_openai_model.render([Message(role="user", content="Name three colours.")])
    params = SamplingParams(max_tokens=12)
    decoder = await llama_openai_model.start(prompt, params)  # no tools: raw completions
    assert isinstance(decoder, OpenAICompletionDecoder)
    streamed = "".join(await drain(decoder))
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{llama_server.base_url}/completions",
            json={"model": "x", "prompt": prompt.text, "max_tokens": 12, "temperature": 0},
        )
    assert streamed == response.json()["choices"][0]["text"]
    assert decoder.generated_tokens == 12 or decoder.finish_reason == "stop"


@pytest.mark.model
async def test_extend_restarts_on_the_whole_context(llama_openai_model: OpenAIModel) -> None:
    prompt = llama_openai_model.render([Message(role="user", content="Count from one to ten.")])
    params = SamplingParams(max_tokens=10)
    decoder = await llama_openai_model.start_completion(prompt, params)
    first = [(await decoder.step()) for _ in range(4)]
    assert all(t is not None for t in first)
    interrupt = format_interrupt("c1", '{"temp_c": 17}')
    await decoder.extend(interrupt)
    after = await drain(decoder)
    assert after  # generation went on after the restart
    head = "".join(t.text for t in first if t is not None)
    assert decoder.context == prompt.text + head + interrupt + "".join(after)
    assert len(decoder.ttfts) == 2 and len(decoder.restarts) == 1
    assert decoder.generated_tokens <= 10
    # Greedy decoding: what the restart produced is what a fresh request on that context produces.
    fresh = await llama_openai_model.start_completion(
        prompt.text + head + interrupt, SamplingParams(max_tokens=10 - len(first))
    )
    assert "".join(await drain(fresh)) == "".join(after)


@pytest.mark.model
async def test_native_tool_call_round_trip(llama_openai_model: OpenAIModel) -> None:
    model = llama_openai_model.with_tools([WEATHER_TOOL], tool_choice=FORCE_WEATHER)
    messages = [Message(role="user", content="What is the weather in Paris?")]
    decoder = await model.start(messages, SamplingParams(max_tokens=60))
    assert isinstance(decoder, OpenAIChatDecoder)  # messages + tools: native calls
    tokens = await drain_tokens(decoder)
    calls = [t.call for t in tokens if t.call is not None]
    assert calls, f"no native call in {[t.text for t in tokens]!r}"
    assert calls[0].name == "get_weather"
    assert isinstance(calls[0].arguments.get("city"), str)
    assert decoder.finish_reason in ("tool_calls", "stop")

    await decoder.inject([result(calls[0].id, '{"temp_c": 17}')])
    decoder.tool_choice = "none"  # let the model answer in text now
    await drain(decoder)
    assert len(decoder.restarts) == 1
    assistant, tool = decoder.messages[-2:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool == {
        "role": "tool",
        "tool_call_id": assistant["tool_calls"][0]["id"],
        "content": '{"temp_c": 17}',
    }


@pytest.mark.model
async def test_wrong_base_url_on_a_real_server_is_a_clear_404(llama_server: LlamaServer) -> None:
    base = llama_server.base_url.removesuffix("/v1")
    async with OpenAIModel("smollm2", base_url=base, max_retries=0) as model:
        with pytest.raises(BackendError, match="404") as caught:
            await model.start_completion("Hello")
    assert caught.value.status_code == 404
    assert "does not support this endpoint" in str(caught.value)


@pytest.mark.model
async def test_cancelling_a_step_frees_the_real_server(llama_server: LlamaServer) -> None:
    never_stop = {"logit_bias": {"0": -100, "1": -100, "2": -100}}  # SmolLM2's special tokens
    async with OpenAIModel(
        llama_server.model, base_url=llama_server.base_url, extra_body=never_stop
    ) as model:
        budget = 1900
        decoder = await model.start_completion(
            "Once upon a time", SamplingParams(max_tokens=budget)
        )
        assert await decoder.step() is not None
        started = time.perf_counter()
        for _ in range(10):
            assert await decoder.step() is not None
        rate = 10 / (time.perf_counter() - started)
        task = asyncio.create_task(drain(decoder, limit=budget + 1))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        busy_s = (budget - decoder.generated_tokens) / rate  # if the server went on generating
        # llama.cpp serves one generation at a time: quick only if the cancelled one stopped.
        started = time.perf_counter()
        other = await model.start_completion("Hi", SamplingParams(max_tokens=3))
        assert len(await asyncio.wait_for(drain(other), timeout=busy_s * 2)) >= 1
        assert time.perf_counter() - started < busy_s / 3


# -- fault injection on loopback ------------------------------------------------------------------


async def test_server_down_names_the_url(backoff_delays: list[float]) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAIModel("m", base_url=base, max_retries=2) as model:
        with pytest.raises(BackendError, match="cannot connect") as caught:
            await model.start_completion("Hello")
    assert base in str(caught.value)
    assert caught.value.status_code is None
    assert len(backoff_delays) == 2  # connection errors are retried
    assert backoff_delays[0] < backoff_delays[1]  # exponential


async def test_500_then_success_is_retried(backoff_delays: list[float]) -> None:
    replies = [
        Reply(500, {"error": {"message": "boom"}}),
        Reply(503, "overloaded"),
        Reply(events=completion_events(["Hel", "lo"])),
    ]
    async with FaultServer(replies) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_completion("Say hello")
        assert await drain(decoder) == ["Hel", "lo"]
    assert len(server.requests) == 3
    assert len(backoff_delays) == 2
    assert all(0 < d <= 8 for d in backoff_delays)


async def test_429_honours_retry_after(backoff_delays: list[float]) -> None:
    replies = [
        Reply(429, {"error": {"message": "slow down"}}, headers={"retry-after": "3"}),
        Reply(429, {"error": {"message": "slow down"}}, headers={"retry-after-ms": "250"}),
        Reply(events=completion_events(["ok"])),
    ]
    async with FaultServer(replies) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_completion("x")
        assert await drain(decoder) == ["ok"]
    assert backoff_delays == [3.0, 0.25]


async def test_cancelling_during_the_backoff_propagates_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting = asyncio.Event()

    async def hang(delay: float) -> None:
        waiting.set()
        await asyncio.Event().wait()  # a backoff that would never end

    monkeypatch.setattr(_http, "_sleep", hang)
    async with (
        FaultServer([Reply(503, "overloaded")]) as server,
        OpenAIModel("m", base_url=server.base_url, max_retries=5) as model,
    ):
        task = asyncio.create_task(model.start_completion("x"))
        await asyncio.wait_for(waiting.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
    assert len(server.requests) == 1  # no retry after the cancellation


def test_backoff_grows_exponentially_up_to_the_cap_with_bounded_jitter() -> None:
    policy = _http.RetryPolicy(initial_delay_s=0.5, max_delay_s=3.0, jitter=0.25)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):
        for _ in range(20):
            assert base <= policy.delay(attempt) <= base + 0.25
    exact = _http.RetryPolicy(initial_delay_s=0.5, jitter=0.0)
    assert [exact.delay(n) for n in range(3)] == [0.5, 1.0, 2.0]


async def test_429_that_persists_shows_the_server_message(backoff_delays: list[float]) -> None:
    reply = Reply(429, {"error": {"message": "quota exceeded for m"}}, headers={"retry-after": "1"})
    async with (
        FaultServer([reply]) as server,
        OpenAIModel("m", base_url=server.base_url, max_retries=1) as model,
    ):
        with pytest.raises(BackendError, match="quota exceeded for m") as caught:
            await model.start_completion("x")
    assert caught.value.status_code == 429
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(400, {"error": {"message": "max_tokens is too large"}}), "max_tokens is too large"),
        (Reply(401, {"error": {"message": "bad key"}}), "OPENAI_API_KEY"),
        (Reply(404, {"detail": "Not Found"}), "does not support this endpoint"),
        (Reply(422, b"plain text problem"), "plain text problem"),
    ],
)
async def test_4xx_is_a_clear_error_without_retry(
    reply: Reply, expected: str, backoff_delays: list[float]
) -> None:
    async with FaultServer([reply]) as server, OpenAIModel("m", base_url=server.base_url) as model:
        with pytest.raises(BackendError, match=expected) as caught:
            await model.start_completion("x")
    assert isinstance(caught.value, CounterpointError)
    assert caught.value.status_code == reply.status
    assert server.base_url in str(caught.value)
    assert len(server.requests) == 1 and backoff_delays == []


@pytest.mark.parametrize(
    ("reply", "error", "expected"),
    [
        (Reply(events=['{"choices": [{"text": "a"}]}', "{not json"]), ProtocolError, "not JSON"),
        (Reply(events=['["a list"]']), ProtocolError, "not a JSON object"),
        (Reply(events=['{"choices": "nope"}']), ProtocolError, "choices"),
        (Reply(200, {"choices": [{"text": "no stream"}]}), ProtocolError, "server-sent event"),
        (Reply(events=['{"error": {"message": "model crashed"}}']), BackendError, "model crashed"),
    ],
)
async def test_malformed_streams_are_protocol_errors(
    reply: Reply, error: type[Exception], expected: str
) -> None:
    async with FaultServer([reply]) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_completion("x")
        with pytest.raises(error, match=expected):
            await drain(decoder)


async def test_cancelling_step_closes_the_connection_at_once() -> None:
    reply = Reply(events=completion_events([f" w{i}" for i in range(5)]), delay_s=1.0)
    async with FaultServer([reply]) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_completion("x")
        assert await decoder.step() is not None
        task = asyncio.create_task(decoder.step())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.disconnected.wait(), timeout=5)
        # The decoder resumes after a cancelled step, on the context generated so far.
        assert await decoder.step() is not None
        assert server.requests[1].json()["prompt"] == "x w0"


async def test_a_stream_cut_midway_is_resumed_on_the_text_so_far() -> None:
    replies = [
        Reply(
            events=['{"choices": [{"text": "one"}]}', '{"choices": [{"text": " two"}]}'], cut=True
        ),
        Reply(events=completion_events([" three"])),
    ]
    async with FaultServer(replies) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_completion("Count:", SamplingParams(max_tokens=10))
        assert await drain(decoder) == ["one", " two", " three"]
    second = server.requests[1].json()
    assert second["prompt"] == "Count:one two"
    assert second["max_tokens"] == 8  # max_tokens counts the whole life of the decoder
    assert decoder.resumes == 1 and decoder.restarts == []


async def test_total_timeout_bounds_a_hanging_stream() -> None:
    reply = Reply(events=['{"choices": [{"text": "a"}]}'], hang=True)
    async with (
        FaultServer([reply]) as server,
        OpenAIModel("m", base_url=server.base_url, total_timeout=2.0) as model,
    ):
        decoder = await model.start_completion("x")
        assert await decoder.step() is not None
        with pytest.raises(BackendError, match="total timeout"):
            await asyncio.wait_for(decoder.step(), timeout=30)


async def test_extend_closes_the_stream_and_sends_the_context() -> None:
    replies = [
        Reply(events=completion_events([" a", " b", " c", " d"]), delay_s=0.05, hang=True),
        Reply(events=completion_events([" e"])),
    ]
    async with FaultServer(replies) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_completion("P:", SamplingParams(max_tokens=50, stop=("\n\n",)))
        assert (await decoder.step(), await decoder.step()) != (None, None)
        before = decoder.prompt_tokens
        await decoder.extend(" [INTR] c1 [HEAD] 5 [END]")
        assert decoder.prompt_tokens > before  # extensions count as prompt (estimated here)
        await asyncio.wait_for(server.disconnected.wait(), timeout=5)
        assert await drain(decoder) == [" e"]
    body = server.requests[1].json()
    assert body["prompt"] == "P: a b [INTR] c1 [HEAD] 5 [END]"
    assert body["max_tokens"] == 48
    assert body["stop"] == ["\n\n"]
    assert body["stream"] is True and body["model"] == "m"
    assert len(decoder.restarts) == 1


async def test_native_calls_are_structured_and_results_become_tool_messages() -> None:
    first_turn = chat_events(
        [
            {"role": "assistant", "content": "Checking."},
            tool_delta(0, id="call_A", name="get_weather", args='{"ci'),
            tool_delta(0, args='ty": "Paris"}'),
            tool_delta(1, id="call-B", name="get_time", args='{"tz": "CET"}'),
        ],
        "tool_calls",
    )
    second_turn = chat_events([{"content": "17 C at noon."}], "stop")
    replies = [Reply(events=first_turn), Reply(events=second_turn)]
    async with (
        FaultServer(replies) as server,
        OpenAIModel("m", base_url=server.base_url, tools=[WEATHER_TOOL]) as model,
    ):
        decoder = await model.start([Message(role="user", content="Weather and time in Paris?")])
        assert isinstance(decoder, OpenAIChatDecoder)
        tokens = await drain_tokens(decoder)
        assert tokens[0].text == "Checking." and tokens[0].call is None
        calls = [t.call for t in tokens if t.call is not None]
        assert all(t.text == "" for t in tokens if t.call is not None)  # no CML text round trip
        assert [(c.id, c.name) for c in calls] == [
            ("call_A", "get_weather"),
            ("call_B", "get_time"),
        ]
        assert calls[0].arguments == {"city": "Paris"}
        # Sync mode: one result at a time; no request until every call of the turn is answered.
        await decoder.inject([result("call_A", "17 C")])
        assert await decoder.step() is None
        assert len(server.requests) == 1
        await decoder.inject([result("call_B", "12:00"), UserInterrupt("Be brief.")])
        assert await drain(decoder) == ["17 C at noon."]
    body = server.requests[1].json()
    assert body["tools"] == [WEATHER_TOOL]
    assert body["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call-B",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_A", "content": "17 C"},
        {"role": "tool", "tool_call_id": "call-B", "content": "12:00"},
        {"role": "user", "content": "Be brief."},
    ]


async def test_ids_reused_by_the_server_stay_unique() -> None:
    turn = chat_events([tool_delta(0, id="call_0", name="get_weather", args="{}")], "tool_calls")
    replies = [Reply(events=turn), Reply(events=turn)]
    async with (
        FaultServer(replies) as server,
        OpenAIModel("m", base_url=server.base_url, tools=[WEATHER_TOOL]) as model,
    ):
        decoder = await model.start([Message(role="user", content="Go.")])
        (first,) = [t.call for t in await drain_tokens(decoder) if t.call is not None]
        await decoder.inject([result(first.id, "1")])
        (second,) = [t.call for t in await drain_tokens(decoder) if t.call is not None]
    assert first.id == "call_0" and second.id != "call_0"
    tool_message = server.requests[1].json()["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": "call_0", "content": "1"}


async def test_a_chat_stream_cut_midway_is_an_error() -> None:
    reply = Reply(
        events=[json.dumps({"choices": [{"index": 0, "delta": {"content": "a"}}]})], cut=True
    )
    async with FaultServer([reply]) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_chat([Message(role="user", content="Hi")])
        with pytest.raises(BackendError, match=r"without \[DONE\]"):
            await drain(decoder)


async def test_user_text_interrupts_a_chat_stream() -> None:
    replies = [
        Reply(events=chat_events([{"content": f" w{i}"} for i in range(40)], "stop"), delay_s=0.1),
        Reply(events=chat_events([{"content": "Sure."}], "stop")),
    ]
    async with FaultServer(replies) as server, OpenAIModel("m", base_url=server.base_url) as model:
        decoder = await model.start_chat([Message(role="user", content="Talk.")])
        assert (await decoder.step()) is not None
        await decoder.extend("Stop, please.")
        await asyncio.wait_for(server.disconnected.wait(), timeout=5)
        assert await drain(decoder) == ["Sure."]
    messages = server.requests[1].json()["messages"]
    assert messages[1:] == [
        {"role": "assistant", "content": " w0"},
        {"role": "user", "content": "Stop, please."},
    ]


@pytest.mark.parametrize(
    ("native", "path"), [(True, "/v1/chat/completions"), (False, "/v1/completions")]
)
async def test_start_picks_the_endpoint(native: bool, path: str) -> None:
    events = chat_events([{"content": "x"}], "stop") if native else completion_events(["x"])
    async with (
        FaultServer([Reply(events=events)]) as server,
        OpenAIModel(
            "m", base_url=server.base_url, tools=[WEATHER_TOOL], native_tools=native
        ) as model,
    ):
        messages = [Message(role="system", content="S"), Message(role="user", content="U")]
        decoder = await model.start(messages)
        assert await drain(decoder) == ["x"]
    assert server.requests[0].path == path
    body = server.requests[0].json()
    if native:
        assert body["messages"] == [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U"},
        ]
    else:  # CML: the protocol and the tools are rendered into the system message
        assert body["prompt"].startswith("<|im_start|>system\nS\n\nYou can call functions.")
        assert "get_weather" in body["prompt"]
        assert body["prompt"].endswith("<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    # An arbitrary prompt with no tools goes to raw completions as it is.
    async with (
        FaultServer([Reply(events=completion_events(["y"]))]) as server,
        OpenAIModel("m", base_url=server.base_url) as model,
    ):
        await drain(await model.start(Prompt.of("free text")))
    assert server.requests[0].path == "/v1/completions"
    assert server.requests[0].json()["prompt"] == "free text"


async def test_a_rendered_prompt_with_native_tools_is_an_error_not_a_silent_switch() -> None:
    model = OpenAIModel("m", base_url="http://127.0.0.1:9/v1", tools=[WEATHER_TOOL])
    try:
        with pytest.raises(ConfigError, match="rendered Prompt"):
            await model.start(Prompt.of("<|im_start|>user\nHi<|im_end|>\n"))
    finally:
        await model.aclose()


async def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FaultServer([Reply(events=completion_events(["x"]))]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")  # overridden below
        monkeypatch.setenv("COUNTERPOINT_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        async with OpenAIModel("m") as model:
            await drain(await model.start_completion("x"))
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"base_url": "localhost:8000"}, "not an http"),
        ({"max_retries": -1}, "max_retries"),
        ({"total_timeout": 0}, "total_timeout"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        OpenAIModel("m", **kwargs)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),  # in the past: use backoff
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    policy = _http.RetryPolicy(jitter=0.0)
    response = httpx.Response(429, headers=headers)
    delay = policy.delay(0, response)
    assert delay == (expected if expected is not None else policy.initial_delay_s)
