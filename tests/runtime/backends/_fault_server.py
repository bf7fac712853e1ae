"""A tiny HTTP/1.1 server on loopback that answers with scripted replies, for fault injection.

Each request takes the next :class:`Reply` from the queue (the last one repeats). A reply is a
status with a body, or a server-sent event stream whose events can be paced, broken off, or held
open. The server records every request and notices when a client closes a connection mid-reply
(:attr:`FaultServer.disconnected`), which is how tests see that cancellation closed the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultServer", "Reply", "completion_events"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
_MAX_REQUEST_BYTES = 1 << 20


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    Args:
        status: the HTTP status.
        body: a plain body (JSON-encoded if not bytes) when ``events`` is ``None``.
        headers: extra headers.
        events: SSE ``data:`` payloads to stream instead of a body (strings sent as they are).
        delay_s: pause before each event.
        hang: after the events, keep the connection open until the client closes it.
        cut: after the events, drop the connection without finishing the stream.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: Sequence[str] | None = None
    delay_s: float = 0.0
    hang: bool = False
    cut: bool = False


def completion_events(pieces: Sequence[str], *, finish: str = "stop") -> list[str]:
    """SSE payloads of a ``/v1/completions`` stream writing ``pieces`` then ``[DONE]``."""
    events = [
        json.dumps({"object": "text_completion", "choices": [{"index": 0, "text": p}]})
        for p in pieces
    ]
    last = {"choices": [{"index": 0, "text": "", "finish_reason": finish}]}
    return [*events, json.dumps(last), "[DONE]"]


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FaultServer:
    """Serve scripted replies on ``127.0.0.1`` at a free port. Use as ``async with``."""

    def __init__(self, replies: Sequence[Reply]) -> None:
        if not replies:
            raise ValueError("a FaultServer needs at least one reply")
        self._replies = list(replies)
        self.requests: list[_Request] = []
        self.disconnected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.base_url = ""

    async def __aenter__(self) -> FaultServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # handlers see the connection end and return
        await asyncio.wait_for(self._server.wait_closed(), timeout=10)

    def _next_reply(self) -> Reply:
        return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_REQUEST_BYTES:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = min(int(headers.get("content-length", "0")), _MAX_REQUEST_BYTES)
        body = await reader.readexactly(length) if length else b""
        self.requests.append(_Request(method, path, headers, body))
        reply = self._next_reply()
        reason = _REASONS.get(reply.status, "Status")
        if reply.events is None:
            payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body)
            data = payload if isinstance(payload, bytes) else payload.encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
            writer.write(
                f"HTTP/1.1 {reply.status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(data)}\r\n{extra}\r\n".encode()
                + data
            )
            await writer.drain()
            return True
        await self._stream(reply, reason, reader, writer)
        return False

    async def _stream(
        self,
        reply: Reply,
        reason: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        headers = {"content-type": "text/event-stream", **reply.headers}
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"HTTP/1.1 {reply.status} {reason}\r\nconnection: close\r\n{extra}\r\n".encode()
        )
        await writer.drain()
        eof = asyncio.ensure_future(reader.read(1))  # b"" when the client closes its side
        try:
            for event in reply.events or ():
                if reply.delay_s:
                    done, _ = await asyncio.wait({eof}, timeout=reply.delay_s)
                    if done:
                        self.disconnected.set()
                        return
                writer.write(f"data: {event}\n\n".encode())
                await writer.drain()
            if reply.cut:
                transport = writer.transport
                transport.abort()
                return
            if reply.hang:
                await eof
                self.disconnected.set()
        except ConnectionError:
            self.disconnected.set()
        finally:
            eof.cancel()
