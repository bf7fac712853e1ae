"""One OpenAI-compatible server as the decoders see it: a client, a base URL, headers, policies.

:meth:`Endpoint.stream` opens a streamed POST (with retries, see :mod:`._http`) and wraps it in a
:class:`~._sse.ChunkStream` whose reads share the request's total deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from counterpoint.runtime.backends._http import BackendError, RetryPolicy, open_stream
from counterpoint.runtime.backends._sse import ChunkStream

__all__ = ["Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send requests.

    Args:
        client: the pooled client (keep-alive) shared by every decoder of a model.
        base_url: e.g. ``http://127.0.0.1:8000/v1``; paths are appended to it.
        model: the ``model`` field of every request.
        headers: sent with every request (``Authorization``...).
        retry: retries of transient failures while opening a request.
        total_timeout_s: bound on one request from sending it to the end of its stream.
        stall_timeout_s: bound on the wait for each data chunk of a stream.
        extra_body: extra JSON fields merged into every request body (server-specific options).
    """

    client: httpx.AsyncClient
    base_url: str
    model: str
    headers: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    total_timeout_s: float | None = None
    stall_timeout_s: float | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    async def stream(self, path: str, body: Mapping[str, Any]) -> ChunkStream:
        """POST ``body`` (plus ``model``, ``stream`` and ``extra_body``) and stream the answer."""
        url = self.url(path)
        payload = {"model": self.model, **body, **self.extra_body, "stream": True}
        loop = asyncio.get_running_loop()
        deadline = None if self.total_timeout_s is None else loop.time() + self.total_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                response = await open_stream(
                    self.client, url, payload, headers=self.headers, retry=self.retry
                )
        except TimeoutError as exc:
            raise BackendError(
                f"{url} did not answer within the total timeout of {self.total_timeout_s} s "
                "(retries included); raise total_timeout or check the server",
                url=url,
            ) from exc
        return ChunkStream(response, deadline, stall_timeout_s=self.stall_timeout_s)
