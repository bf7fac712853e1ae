"""OpenAIModel: any OpenAI-compatible server (OpenAI, llama.cpp, vLLM, Ollama...) over httpx.

Two ways to generate, chosen per :meth:`OpenAIModel.start`:

* **Raw completions + CML** (``/v1/completions``), for the ``async`` mode: the prompt is text (a
  ChatML rendering of the messages), the model writes CML calls as text, and every
  ``extend`` restarts the request with the interrupt appended (AsyncLM's Async-Naive).
* **Chat + native tool calls** (``/v1/chat/completions`` with ``tools``), for the ``sync`` and
  ``parallel`` modes: the server's own chat template and tool-call format are used; native tool
  calls reach the session as structured calls and results go back as ``role: "tool"`` messages.

``start`` uses chat when there are tools, ``native_tools`` is on and results are not injected
mid-stream (``async_results=False``); then the context must be messages (a rendered
:class:`Prompt` is a :class:`~counterpoint.errors.ConfigError`, never a silent switch to raw
completions). Otherwise raw completions, with the protocol and the tools in the system message.
``start_chat`` and ``start_completion`` choose explicitly.

One pooled :class:`httpx.AsyncClient` (keep-alive) serves every generation; close it with
:meth:`OpenAIModel.aclose` (or ``async with``). Transient failures (connection errors, 408/409/429,
5xx) are retried with exponential backoff and jitter honouring ``Retry-After``; everything else is a
:class:`BackendError` (a :class:`~counterpoint.errors.CounterpointError`) that names the URL and
says what to do. A malformed stream is a :class:`~counterpoint.errors.ProtocolError`.

Configuration from the environment: ``COUNTERPOINT_BASE_URL`` or ``OPENAI_BASE_URL`` (default
``https://api.openai.com/v1``), ``COUNTERPOINT_API_KEY`` or ``OPENAI_API_KEY`` (optional: local
servers need none).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import ToolSpec
from counterpoint.errors import ConfigError, ProtocolError
from counterpoint.runtime.backends._cml_messages import cml_messages
from counterpoint.runtime.backends._http import BackendError, RetryPolicy
from counterpoint.runtime.backends._http_cml import normalize_tools, render_chatml
from counterpoint.runtime.backends._http_decoders import OpenAIChatDecoder, OpenAICompletionDecoder
from counterpoint.runtime.backends._http_endpoint import Endpoint
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "BackendError",
    "OpenAIChatDecoder",
    "OpenAICompletionDecoder",
    "OpenAIModel",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = httpx.Timeout(25.0, connect=5.0)
"""Connect within 5 s; at most 25 s between two reads (or for a write / a pooled connection).

A server that accepts a request and stays silent is given up on after the read timeout, without
retrying (retries would only multiply the wait)."""


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _spec(entry: Mapping[str, Any]) -> ToolSpec:
    """A ToolSpec from a normalised OpenAI tool entry."""
    function = entry["function"]
    name = str(function.get("name", ""))
    description = str(function.get("description") or "")
    return ToolSpec(
        name=name,
        description=description,
        parameters=function.get("parameters") or {"type": "object", "properties": {}},
        signature=f"{name}(...) - {description}" if description else f"{name}(...)",
    )


def _message_dict(message: Message) -> dict[str, Any]:
    if message.role == "tool":  # a tool message needs a tool_call_id the Message does not carry
        return {"role": "user", "content": f"Tool result: {message.content}"}
    return {"role": message.role, "content": message.content}


class OpenAIModel:
    """A model behind an OpenAI-compatible HTTP API.

    Args:
        model: the ``model`` field of requests (e.g. ``gpt-4o-mini``; llama.cpp accepts any name).
        base_url: the API root, usually ending in ``/v1``. Default: ``COUNTERPOINT_BASE_URL``,
            ``OPENAI_BASE_URL``, then ``https://api.openai.com/v1``.
        api_key: sent as ``Authorization: Bearer``. Default: ``COUNTERPOINT_API_KEY``,
            ``OPENAI_API_KEY``, else none.
        tools: OpenAI tool entries (or bare function schemas) for native tool calls.
        native_tools: use chat with native tool calls when there are tools (sync/parallel modes);
            ``False`` keeps raw completions and CML text (async mode).
        tool_choice: sent with tools (``"auto"``, ``"required"``, or a named function).
        timeout: httpx timeouts (connect, read, write, pool), or one number for all of them.
        total_timeout: bound in seconds on one request, from sending it to its last chunk.
        stall_timeout: bound in seconds on the wait for each data chunk of a stream (a server
            that only sends keep-alives is given up on), or None.
        max_retries: retries of a transient failure (0 disables them).
        client: an :class:`httpx.AsyncClient` to use instead of a private one (not closed by us).
        headers: extra headers for every request.
        extra_body: extra JSON fields for every request (server-specific options).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        native_tools: bool = True,
        tool_choice: str | Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        total_timeout: float | None = 600.0,
        stall_timeout: float | None = 30.0,
        max_retries: int = 2,
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not model:
            raise ConfigError("OpenAIModel needs a model name (the 'model' field of requests)")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {max_retries}")
        if total_timeout is not None and total_timeout <= 0:
            raise ConfigError(
                f"total_timeout must be positive seconds or None, not {total_timeout}"
            )
        url = base_url or _env("COUNTERPOINT_BASE_URL", "OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url {url!r} is not an http(s) URL; pass e.g. base_url="
                "'http://127.0.0.1:8080/v1' or set OPENAI_BASE_URL"
            )
        self._model = model
        self.base_url = url.rstrip("/")
        key = api_key or _env("COUNTERPOINT_API_KEY", "OPENAI_API_KEY")
        request_headers = {"User-Agent": "counterpoint", **(headers or {})}
        if key:
            request_headers["Authorization"] = f"Bearer {key}"
        self.tools: list[dict[str, Any]] = normalize_tools(tools or ())
        self.native_tools = native_tools
        self.tool_choice = tool_choice
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._endpoint = Endpoint(
            client=self._client,
            base_url=self.base_url,
            model=model,
            headers=request_headers,
            retry=RetryPolicy(max_retries=max_retries),
            total_timeout_s=total_timeout,
            stall_timeout_s=stall_timeout,
            extra_body=dict(extra_body or {}),
        )

    @property
    def name(self) -> str:
        return self._model

    def with_tools(
        self,
        tools: Sequence[Mapping[str, Any]],
        *,
        native_tools: bool | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
    ) -> OpenAIModel:
        """A copy of this model with other tools, sharing its client (close the original)."""
        copy = object.__new__(OpenAIModel)
        copy.__dict__.update(self.__dict__)
        copy.tools = normalize_tools(tools)
        copy.native_tools = self.native_tools if native_tools is None else native_tools
        copy.tool_choice = tool_choice if tool_choice is not None else self.tool_choice
        copy._owns_client = False
        return copy

    def render(self, messages: Sequence[Message]) -> Prompt:
        """ChatML text for raw completions (the server applies its own template for chat);
        control tokens inside the messages are neutralised."""
        return render_chatml(messages)

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> OpenAIChatDecoder | OpenAICompletionDecoder:
        """Open a generation: chat with native tool calls, or raw completions with CML.

        ``tools`` (else the tools this model was built with) go to the server natively when
        ``native_tools`` is on and ``async_results`` is off; otherwise they are described in the
        system message for CML. The first request is sent before this returns, so an unreachable
        server or a rejected request raises here (:class:`BackendError`).
        """
        entries = [t.openai() for t in tools] if tools else self.tools
        if self.native_tools and entries and not async_results:
            if isinstance(context, Prompt):
                raise ConfigError(
                    "a rendered Prompt cannot be sent with native tool calls (chat completions "
                    "take messages): pass chat messages, or use async mode for raw completions"
                )
            return await self.start_chat(context, params, tools=entries)
        if isinstance(context, Prompt):
            if tools:
                raise ConfigError(
                    "a rendered Prompt cannot take tools: pass chat messages and the backend "
                    "renders the protocol and the tools"
                )
            return await self.start_completion(context, params)
        specs = tuple(tools) or tuple(_spec(entry) for entry in self.tools)
        return await self.start_completion(cml_messages(context, specs), params)

    async def start_chat(
        self,
        messages: Sequence[Message | Mapping[str, Any]],
        params: SamplingParams | None = None,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
    ) -> OpenAIChatDecoder:
        """Open a chat generation (with this model's tools unless ``tools`` is given)."""
        dicts = [_message_dict(m) if isinstance(m, Message) else dict(m) for m in messages]
        decoder = OpenAIChatDecoder(
            self._endpoint,
            dicts,
            params or SamplingParams(),
            tools=self.tools if tools is None else normalize_tools(tools),
            tool_choice=self.tool_choice if tool_choice is None else tool_choice,
        )
        await decoder.open()
        return decoder

    async def start_completion(
        self, context: Sequence[Message] | Prompt | str, params: SamplingParams | None = None
    ) -> OpenAICompletionDecoder:
        """Open a raw completion on a prompt (messages are rendered as ChatML first)."""
        if isinstance(context, str):
            text = context
        elif isinstance(context, Prompt):
            text = context.text
        else:
            text = self.render(context).text
        decoder = OpenAICompletionDecoder(self._endpoint, text, params or SamplingParams())
        await decoder.open()
        return decoder

    async def models(self) -> list[str]:
        """The model ids the server lists at ``GET /models`` (a cheap health check)."""
        url = self._endpoint.url("models")
        try:
            response = await self._client.get(url, headers=dict(self._endpoint.headers))
        except httpx.TransportError as exc:
            raise BackendError(
                f"OpenAI-compatible server at {url}: cannot connect ({exc}). Start the server, "
                "or point base_url= / OPENAI_BASE_URL at a running one.",
                url=url,
            ) from exc
        if not response.is_success:
            raise BackendError(
                f"{url} answered {response.status_code}: {response.text[:300]}",
                url=url,
                status_code=response.status_code,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ProtocolError(f"{url} did not answer with JSON: {response.text[:200]!r}") from exc
        entries = data.get("data", []) if isinstance(data, dict) else []
        return [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]

    async def aclose(self) -> None:
        """Close the pooled client (if this model created it). Idempotent."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> OpenAIModel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
