"""Reading an OpenAI-style server-sent event stream as JSON chunks.

:class:`ChunkStream` wraps one open streamed response. ``await stream.next()`` returns the next
JSON chunk (a dict), or ``None`` after ``data: [DONE]`` (or at the end of a body that carried a
``finish_reason``; a body that ends before either was cut off: :class:`StreamInterrupted`). SSE
framing is parsed by ``httpx-sse``; this module only checks what the OpenAI protocol adds on top:
every data line is a JSON object, an ``error`` object in the stream is the server failing
mid-generation. A request's total deadline (event-loop time) bounds every read, and a stall
timeout bounds the wait for each data chunk: keep-alive comments do not reset it, so a server that
trickles keep-alives but sends nothing is given up on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

from counterpoint.errors import ProtocolError
from counterpoint.runtime.backends._http import BackendError

__all__ = ["ChunkStream", "StreamInterrupted"]

_MAX_SHOWN = 200
_MAX_TRAILING_EVENTS = 16


class StreamInterrupted(BackendError):
    """The connection failed or timed out in the middle of a stream (after a 2xx answer)."""


class ChunkStream:
    """The JSON chunks of one streamed completion. Not reusable; ``aclose()`` is idempotent.

    Args:
        response: an open 2xx streamed response; the stream owns it from now on.
        deadline: event-loop time after which reading fails with :class:`StreamInterrupted`.
        stall_timeout_s: longest wait for one data chunk (keep-alives do not count).
    """

    def __init__(
        self,
        response: httpx.Response,
        deadline: float | None = None,
        *,
        stall_timeout_s: float | None = None,
    ) -> None:
        self._response = response
        self._deadline = deadline
        self._stall_s = stall_timeout_s
        self._url = str(response.request.url)
        self._events: AsyncGenerator[ServerSentEvent, None] = EventSource(response).aiter_sse()
        self._done = False
        self._finish_seen = False

    @property
    def closed(self) -> bool:
        return self._done

    async def next(self) -> dict[str, Any] | None:
        """The next chunk, or ``None`` at the end of the stream (which closes it).

        Any failure, and cancellation, closes the response before propagating.
        """
        if self._done:
            return None
        deadline = self._deadline
        stalled = False
        if self._stall_s is not None:
            stall_at = asyncio.get_running_loop().time() + self._stall_s
            stalled = deadline is None or stall_at < deadline
            deadline = stall_at if stalled else deadline
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await self._events.__anext__()
                except StopAsyncIteration:
                    await self.aclose()
                    if not self._finish_seen:
                        raise StreamInterrupted(
                            f"{self._url} ended the stream without [DONE] or a finish_reason "
                            "(the connection was cut); check the server's log, or retry",
                            url=self._url,
                        ) from None
                    return None
                chunk = self._decode(event)
                if self._done:
                    await self._drain()
                    return None
                if chunk is not None:
                    return chunk
        except SSEError as exc:
            await self.aclose()
            raise ProtocolError(
                f"{self._url} did not answer with a server-sent event stream ({exc}); "
                "is base_url an OpenAI-compatible server?"
            ) from exc
        except TimeoutError as exc:
            await self.aclose()
            if stalled:
                raise StreamInterrupted(
                    f"{self._url} sent no data for {self._stall_s:g} s (stall_timeout); check "
                    "the server, or raise stall_timeout",
                    url=self._url,
                ) from exc
            raise BackendError(
                f"{self._url} did not finish within the total timeout; raise total_timeout or "
                "lower max_tokens",
                url=self._url,
            ) from exc
        except httpx.TransportError as exc:
            await self.aclose()
            raise StreamInterrupted(
                f"{self._url} dropped the stream ({type(exc).__name__}: {exc or 'no detail'}); "
                "check the server's log, or retry",
                url=self._url,
            ) from exc
        except BaseException:
            await self.aclose()
            raise

    async def _drain(self) -> None:
        """After ``[DONE]``: read the (normally empty) rest so the connection can be reused."""
        try:
            for _ in range(_MAX_TRAILING_EVENTS):
                await self._events.__anext__()
        except (StopAsyncIteration, httpx.TransportError):
            pass  # the generation is complete; a hiccup after [DONE] changes nothing
        finally:
            await self.aclose()

    def _decode(self, event: ServerSentEvent) -> dict[str, Any] | None:
        data = event.data.strip()
        if not data:
            return None  # keep-alive or comment-only event
        if data == "[DONE]":
            self._done = True
            return None
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ProtocolError(
                f"{self._url} sent a malformed stream event (not JSON): {data[:_MAX_SHOWN]!r}"
            ) from exc
        if not isinstance(chunk, dict):
            raise ProtocolError(
                f"{self._url} sent a stream event that is not a JSON object: {data[:_MAX_SHOWN]!r}"
            )
        error = chunk.get("error")
        if event.event == "error" or error is not None:
            message = error.get("message", error) if isinstance(error, dict) else error or data
            raise BackendError(
                f"{self._url} failed while streaming: {str(message)[:_MAX_SHOWN]}",
                url=self._url,
            )
        choices = chunk.get("choices")
        if isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("finish_reason") for c in choices
        ):
            self._finish_seen = True
        return chunk

    async def aclose(self) -> None:
        """Close the event iterator and the response (the connection is dropped if unread)."""
        self._done = True
        try:
            await self._events.aclose()
        finally:
            await self._response.aclose()
