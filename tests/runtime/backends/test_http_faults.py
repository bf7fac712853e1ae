"""Servers that misbehave slowly: silent after accepting, trickling keep-alives, asking to wait
too long. Each must be given up on quickly, with a message that names what to change."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from counterpoint.runtime.backends._http import BackendError
from counterpoint.runtime.backends._sse import StreamInterrupted
from counterpoint.runtime.backends.openai import DEFAULT_TIMEOUT, OpenAIModel
from tests.runtime.backends._fault_server import FaultServer, Reply


class SilentServer:
    """Accepts connections, reads nothing, answers nothing; counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        self._server.close()


def test_default_timeouts_give_up_on_a_silent_server_within_30_s() -> None:
    assert DEFAULT_TIMEOUT.read is not None and DEFAULT_TIMEOUT.read <= 30


async def test_a_silent_server_is_not_retried() -> None:
    async with (
        SilentServer() as server,
        OpenAIModel(
            "m", base_url=server.base_url, timeout=httpx.Timeout(0.3, connect=2.0), max_retries=2
        ) as model,
    ):
        began = time.perf_counter()
        with pytest.raises(BackendError, match="did not answer within the read timeout"):
            await model.start_completion("hi")
        elapsed = time.perf_counter() - began
    assert server.connections == 1  # no retry: each would only wait the read timeout again
    assert elapsed < 5


async def test_a_keep_alive_trickle_is_given_up_on_after_the_stall_timeout() -> None:
    trickle = Reply(events=["" for _ in range(200)], delay_s=0.05)  # keep-alives, never data
    async with (
        FaultServer([trickle]) as server,
        OpenAIModel("m", base_url=server.base_url, stall_timeout=0.5, max_retries=0) as model,
    ):
        decoder = await model.start_completion("hi")
        began = time.perf_counter()
        with pytest.raises(StreamInterrupted, match=r"no data for 0\.5 s"):
            await decoder.step()
        assert time.perf_counter() - began < 5  # not the 600 s total timeout


async def test_a_retry_after_past_the_limit_fails_fast_with_the_wait() -> None:
    busy = Reply(
        status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "120"}
    )
    async with (
        FaultServer([busy]) as server,
        OpenAIModel("m", base_url=server.base_url, max_retries=3) as model,
    ):
        with pytest.raises(BackendError, match="asked to wait 120 s") as caught:
            await model.start_completion("hi")
    assert len(server.requests) == 1 and caught.value.status_code == 429
    assert "slow down" in str(caught.value)


async def test_data_chunks_reset_the_stall_timeout() -> None:
    pieces = [json.dumps({"choices": [{"index": 0, "text": "x"}]}) for _ in range(8)]
    last = json.dumps({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    slow = Reply(events=[*pieces, last, "[DONE]"], delay_s=0.2)  # 1.8 s in all, 0.2 s apart
    async with (
        FaultServer([slow]) as server,
        OpenAIModel("m", base_url=server.base_url, stall_timeout=0.6, max_retries=0) as model,
    ):
        decoder = await model.start_completion("hi")
        texts = []
        while (token := await decoder.step()) is not None:
            texts.append(token.text)
    assert texts == ["x"] * 8
