"""HTTP plumbing for the OpenAI-compatible backend: errors, retries, opening a streamed request.

One job: turn "POST this JSON to that URL and stream the answer" into either an open
:class:`httpx.Response` whose status is 2xx, or a :class:`BackendError` whose message says what went
wrong and what to do. Connection failures, timeouts, 408/409/429 and 5xx answers are retried with
exponential backoff and jitter, honouring ``Retry-After`` (and ``retry-after-ms``) when the server
sends one, the way the OpenAI SDK does.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from counterpoint.errors import CounterpointError

__all__ = ["BackendError", "RetryPolicy", "open_stream", "server_message"]

_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_MESSAGE_CHARS = 500
_sleep = asyncio.sleep  # the backoff's sleep (tests record the delays through it)


class BackendError(CounterpointError):
    """An OpenAI-compatible server could not be reached or refused a request.

    Attributes:
        url: the URL that was requested.
        status_code: the HTTP status the server answered, or ``None`` if there was no answer
            (connection refused, timeout, dropped connection).
    """

    def __init__(self, message: str, *, url: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed for a transient reason.

    The n-th retry (n = 0, 1, ...) waits ``min(initial_delay_s * 2**n, max_delay_s)`` scaled by a
    random factor in ``[1 - jitter, 1]``, unless the server asked for a delay with ``Retry-After``
    (honoured up to ``max_retry_after_s``).
    """

    max_retries: int = 2
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.25
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if response is not None:
            asked = retry_after_s(response.headers)
            if asked is not None and 0 <= asked <= self.max_retry_after_s:
                return asked
        base: float = min(self.initial_delay_s * 2.0**attempt, self.max_delay_s)
        return base * (1.0 - self.jitter * random.random())


def retry_after_s(headers: httpx.Headers) -> float | None:
    """The delay a server asked for in ``retry-after-ms`` or ``Retry-After``, in seconds."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # neither seconds nor an HTTP date: fall back to backoff
    return parsed.timestamp() - time.time()


def server_message(body: bytes) -> str:
    """The human-readable part of an error body (OpenAI ``error.message``, FastAPI ``detail``)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
        return _clip(text) or "(empty body)"
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping) and "message" in error:
            return _clip(str(error["message"]))
        if isinstance(error, str):
            return _clip(error)
        if "detail" in data:
            return _clip(
                json.dumps(data["detail"])
                if not isinstance(data["detail"], str)
                else data["detail"]
            )
        if "message" in data:
            return _clip(str(data["message"]))
    return _clip(text)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "..."


def _status_error(url: str, status: int, reason: str, message: str) -> BackendError:
    head = f"{url} answered {status} {reason}".rstrip()
    if status == 404:
        hint = (
            "the server does not support this endpoint or model; check base_url (it usually ends "
            "in /v1) and the model name"
        )
    elif status in (401, 403):
        hint = "check the API key (api_key=, OPENAI_API_KEY or COUNTERPOINT_API_KEY)"
    elif status == 429:
        hint = "the server is rate limiting; retry later or raise max_retries"
    elif status >= 500:
        hint = "the server failed; check its log, retry later or raise max_retries"
    else:
        hint = "fix the request (model name, parameters, tool schemas)"
    return BackendError(f"{head}: {message} ({hint})", url=url, status_code=status)


def _transport_error(url: str, exc: httpx.TransportError) -> BackendError:
    if isinstance(exc, httpx.ConnectError):
        what = "cannot connect (is the server running and listening there?)"
    elif isinstance(exc, httpx.TimeoutException):
        what = "timed out (the server is too slow or unreachable; raise the timeout?)"
    else:
        what = "lost the connection"
    detail = str(exc) or type(exc).__name__
    return BackendError(
        f"OpenAI-compatible server at {url}: {what}: {detail}. Start the server, or point "
        "base_url= / OPENAI_BASE_URL / COUNTERPOINT_BASE_URL at a running one.",
        url=url,
    )


async def open_stream(
    client: httpx.AsyncClient,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    retry: RetryPolicy,
) -> httpx.Response:
    """POST ``body`` to ``url`` asking for a stream; return the open 2xx response.

    The caller owns the response and must ``aclose()`` it. Transient failures are retried per
    ``retry``; anything else, or a transient failure that outlasts the retries, raises
    :class:`BackendError`. Cancellation closes whatever is open and propagates.
    """
    request_headers = {"Accept": "text/event-stream", "Cache-Control": "no-store", **headers}
    attempt = 0
    while True:
        request = client.build_request("POST", url, json=dict(body), headers=request_headers)
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            if attempt >= retry.max_retries:
                raise _transport_error(url, exc) from exc
            await _sleep(retry.delay(attempt))
            attempt += 1
            continue
        if response.is_success:
            return response
        try:
            content = await response.aread()
        except httpx.TransportError:
            content = b""
        finally:
            await response.aclose()
        if response.status_code in _RETRY_STATUSES and attempt < retry.max_retries:
            await _sleep(retry.delay(attempt, response))
            attempt += 1
            continue
        raise _status_error(
            url, response.status_code, response.reason_phrase, server_message(content)
        )
