"""HTTP plumbing for the OpenAI-compatible backend: errors, retries, opening a streamed request.

One job: turn "POST this JSON to that URL and stream the answer" into either an open
:class:`httpx.Response` whose status is 2xx, or a :class:`BackendError` whose message says what went
wrong and what to do. Connection failures, 408/409/429 and 5xx answers are retried by
``tenacity`` with exponential backoff and jitter, honouring ``Retry-After`` (and
``retry-after-ms``) when the server sends one, the way the OpenAI SDK does. Two failures are not
retried, because retrying only multiplies the wait: a server that accepted the request and did not
answer within the read timeout (a stalled server), and a ``Retry-After`` longer than
``max_retry_after_s`` (the error says how long the server asked to wait).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

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

    At most ``max_retries`` retries. The n-th retry (n = 0, 1, ...) waits
    ``min(initial_delay_s * 2**n, max_delay_s)`` plus a random jitter of up to ``jitter``
    seconds (tenacity's ``wait_exponential`` + ``wait_random``), unless the server asked for a
    delay with ``Retry-After`` (honoured up to ``max_retry_after_s``).
    """

    max_retries: int = 2
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.25
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), after ``response``."""
        state = tenacity.RetryCallState(tenacity.AsyncRetrying(), None, (), {})
        state.attempt_number = attempt + 1
        return self._delay(state, response)

    def wait(self, state: tenacity.RetryCallState) -> float:
        """The tenacity wait strategy: what :meth:`delay` says after the failed attempt."""
        failure = state.outcome.exception() if state.outcome is not None else None
        response = failure.response if isinstance(failure, _RetryableStatus) else None
        return self._delay(state, response)

    def _delay(self, state: tenacity.RetryCallState, response: httpx.Response | None) -> float:
        if response is not None:
            asked = retry_after_s(response.headers)
            if asked is not None and 0 <= asked <= self.max_retry_after_s:
                return asked
        backoff = tenacity.wait_exponential(
            multiplier=self.initial_delay_s, max=self.max_delay_s
        ) + tenacity.wait_random(0, self.jitter)
        return float(backoff(state))


class _RetryableStatus(Exception):
    """A transient HTTP answer (408, 409, 429, 5xx): ``response`` is closed, ``content`` read."""

    def __init__(self, response: httpx.Response, content: bytes) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.content = content


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


def _stalled(url: str, exc: httpx.TransportError) -> BackendError:
    return BackendError(
        f"OpenAI-compatible server at {url} accepted the request but did not answer within the "
        f"read timeout ({type(exc).__name__}); check the server, or raise timeout=",
        url=url,
    )


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

    async def attempt() -> httpx.Response:
        request = client.build_request("POST", url, json=dict(body), headers=request_headers)
        try:
            response = await client.send(request, stream=True)  # a TransportError is retried
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            raise _stalled(url, exc) from exc  # accepted, then silent: retrying only waits again
        if response.is_success:
            return response
        try:
            content = await response.aread()
        except httpx.TransportError:
            content = b""
        finally:
            await response.aclose()
        if response.status_code in _RETRY_STATUSES:
            asked = retry_after_s(response.headers)
            if asked is not None and asked > retry.max_retry_after_s:
                raise BackendError(
                    f"{url} answered {response.status_code} and asked to wait {asked:.0f} s "
                    f"before retrying, longer than max_retry_after_s={retry.max_retry_after_s:g} "
                    f"s: retry after that ({server_message(content)})",
                    url=url,
                    status_code=response.status_code,
                )
            raise _RetryableStatus(response, content)
        raise _status_error(
            url, response.status_code, response.reason_phrase, server_message(content)
        )

    # Only the transient failures are retried; anything else (a BackendError for a 4xx,
    # cancellation) propagates at once. Once the retries are spent, the last failure is re-raised.
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(retry.max_retries + 1),
        wait=retry.wait,
        retry=tenacity.retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
        sleep=lambda seconds: _sleep(seconds),
        reraise=True,
    )
    try:
        response: httpx.Response = await retrying(attempt)
    except httpx.TransportError as exc:
        raise _transport_error(url, exc) from exc
    except _RetryableStatus as failure:
        answer = failure.response
        raise _status_error(
            url, answer.status_code, answer.reason_phrase, server_message(failure.content)
        ) from None
    return response
