"""Fixtures for the HTTP backend's tests: a real llama.cpp server on loopback (one per session)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from counterpoint.runtime.backends.openai import OpenAIModel
from tests.runtime.backends._llama_server import LlamaServer, llama_cpp_available


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """``python -m llama_cpp.server`` on the embedded GGUF at a free loopback port."""
    if not llama_cpp_available():
        pytest.skip(
            "llama_cpp is not importable: pip install 'llama-cpp-python[server]==0.3.36' "
            "(the Makefile's setup does) to run the real-server tests"
        )
    # One thread: the tests' models are tiny, and the machine is shared with the test process.
    with LlamaServer.start(threads=1) as server:
        yield server


@pytest.fixture
async def llama_openai_model(llama_server: LlamaServer) -> AsyncIterator[OpenAIModel]:
    """An OpenAIModel pointed at the session's llama.cpp server, closed after the test."""
    async with OpenAIModel(
        llama_server.model, base_url=llama_server.base_url, api_key="unused"
    ) as model:
        yield model
