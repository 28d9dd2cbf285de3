"""``OpenAIModel``: the :class:`~purpose_agent.agents.model.Model` protocol on the
official ``openai`` SDK, for OpenAI and any OpenAI-compatible server (``base_url``).

The SDK is imported when a model is created, not when this module is, so the agents
layer loads without the ``openai`` extra installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from purpose_agent.agents._errors import ModelError
from purpose_agent.agents._sdk import PerLoop, sdk_error
from purpose_agent.agents.model import Message, ModelResponse, Price, ToolCall, Usage

BASE_URL_ENV = ("PURPOSE_AGENT_BASE_URL", "OPENAI_BASE_URL")
_NO_KEY = "no-key"  # local OpenAI-compatible servers usually ignore the key


class OpenAIModel:
    """A chat model reached through the ``openai`` SDK's chat completions API.

    ``base_url`` (else ``$PURPOSE_AGENT_BASE_URL``, else ``$OPENAI_BASE_URL``, else
    OpenAI) points it at any OpenAI-compatible server. The key is ``api_key`` or
    ``$OPENAI_API_KEY``; it is sent only in the ``Authorization`` header and never
    appears in events, errors, the journal or this object's repr. Transient failures
    (429, 5xx, timeouts, dropped connections) are retried by the SDK up to
    ``max_retries`` times with its own backoff (honouring ``Retry-After``); after that,
    :meth:`complete` raises :class:`ModelError` naming the HTTP status.
    ``extra`` is passed to every request (e.g. ``{"temperature": 0}``). ``prices`` (a
    :class:`~purpose_agent.agents.Price`) makes every call's cost journaled with its usage.
    An agent's ``output_type`` is sent as ``response_format`` (``json_schema``).
    Under ``await flow.arun(...)`` calls go through the SDK's ``AsyncOpenAI`` client
    (:meth:`acomplete`), so one event loop drives many agents at once.
    """

    provider = "openai"  # gen_ai.provider.name in telemetry

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 2,
                 extra: dict[str, Any] | None = None, prices: Price | None = None) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ImportError("OpenAIModel needs the openai SDK: pip install "
                              "'purpose-agent[openai]'") from exc
        if not isinstance(model, str) or not model:
            raise ValueError("OpenAIModel needs a model name, e.g. OpenAIModel('gpt-4o-mini')")
        self.name = model
        self.base_url = base_url or next(
            (os.environ[var] for var in BASE_URL_ENV if os.environ.get(var)), None)
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise ValueError("OpenAIModel has no API key: pass api_key=... or set "
                                 "OPENAI_API_KEY (or set base_url for a local server)")
            key = _NO_KEY
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.extra = dict(extra or {})
        if prices is not None and not isinstance(prices, Price):
            raise TypeError(f"OpenAIModel prices must be a Price, got {prices!r}")
        self.prices = prices
        self._api_key = key
        self._openai = openai
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url,
                                     timeout=self.timeout, max_retries=self.max_retries)
        self._async = PerLoop(lambda: openai.AsyncOpenAI(
            api_key=key, base_url=self.base_url, timeout=self.timeout,
            max_retries=self.max_retries))

    def complete(self, messages: list[Message], tools: list[dict[str, Any]], *,
                 output: dict[str, Any] | None = None,
                 on_token: Callable[[str], None] | None = None) -> ModelResponse:
        """One chat completion. Raises :class:`ModelError` once the SDK gave up.

        ``output`` (``{"name", "description", "schema"}``) asks for a final answer in
        that JSON schema, as ``response_format``; what comes back is not trusted (the
        agent validates it). ``on_token`` streams the answer: it is called with each
        piece of text as it arrives, and the whole response is returned at the end."""
        request = self._request(messages, tools, output, stream=on_token is not None)
        try:
            completion = self._client.chat.completions.create(**request)
            if on_token is None:
                return _response(completion, self.name)
            chunks = _Chunks(self.name)
            for chunk in completion:
                chunks.add(chunk, on_token)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from None
        return chunks.response()

    async def acomplete(self, messages: list[Message], tools: list[dict[str, Any]], *,
                        output: dict[str, Any] | None = None,
                        on_token: Callable[[str], None] | None = None) -> ModelResponse:
        """:meth:`complete` on the SDK's ``AsyncOpenAI`` client (one per event loop)."""
        request = self._request(messages, tools, output, stream=on_token is not None)
        try:
            completion = await self._async.client().chat.completions.create(**request)
            if on_token is None:
                return _response(completion, self.name)
            chunks = _Chunks(self.name)
            async for chunk in completion:
                chunks.add(chunk, on_token)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from None
        return chunks.response()

    def _request(self, messages: list[Message], tools: list[dict[str, Any]],
                 output: dict[str, Any] | None, *, stream: bool) -> dict[str, Any]:
        request: dict[str, Any] = {**self.extra, "model": self.name,
                                   "messages": [m.to_dict() for m in messages]}
        if stream:
            request.update(stream=True, stream_options={"include_usage": True})
        if tools:
            request["tools"] = [{"type": "function", "function": spec} for spec in tools]
        if output is not None:
            # Not strict: OpenAI's strict mode refuses most pydantic schemas (optional
            # fields, defaults), and the agent validates the answer anyway.
            request["response_format"] = {"type": "json_schema", "json_schema": {
                "name": output["name"], "description": output.get("description") or "",
                "schema": output["schema"], "strict": False}}
        return request

    def _error(self, exc: Exception) -> ModelError:
        return sdk_error(self._openai, exc, api_key=self._api_key, timeout=self.timeout,
                         max_retries=self.max_retries,
                         where=f"model {self.name!r} at {self.base_url or 'api.openai.com'}")

    def __repr__(self) -> str:
        prices = f", prices={self.prices!r}" if self.prices is not None else ""
        return (f"OpenAIModel({self.name!r}, base_url={self.base_url!r}, "
                f"timeout={self.timeout:g}, max_retries={self.max_retries}{prices})")


def _response(completion: Any, model: str) -> ModelResponse:
    if not getattr(completion, "choices", None):
        raise ModelError(f"model {model!r} returned no choices; the server's answer is not a "
                         "chat completion")
    choice = completion.choices[0]
    msg = choice.message
    calls = [ToolCall(id=c.id or f"call_{i}", name=c.function.name,
                      arguments=c.function.arguments or "{}")
             for i, c in enumerate(msg.tool_calls or ()) if getattr(c, "function", None)]
    usage = completion.usage
    details = getattr(usage, "prompt_tokens_details", None)
    return ModelResponse(
        message=Message(role="assistant", content=msg.content, tool_calls=calls),
        usage=Usage(_count(usage, "prompt_tokens"), _count(usage, "completion_tokens"),
                    _count(details, "cached_tokens"), _count(details, "cache_write_tokens")),
        model=str(completion.model or model),
        finish_reason=choice.finish_reason,
    )


class _Chunks:
    """A streamed chat completion put back together: text, tool calls (their pieces by
    index), finish reason and usage (the last chunk, asked with ``include_usage``)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.seen = False

    def add(self, chunk: Any, on_token: Callable[[str], None]) -> None:
        self.seen = True
        self.model = str(getattr(chunk, "model", None) or self.model)
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or ():
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                self.text.append(delta.content)
                on_token(delta.content)
            for piece in delta.tool_calls or ():
                call = self.calls.setdefault(piece.index, {"id": "", "name": "", "args": []})
                call["id"] = piece.id or call["id"]
                if piece.function is not None:
                    call["name"] = piece.function.name or call["name"]
                    call["args"].append(piece.function.arguments or "")

    def response(self) -> ModelResponse:
        if not self.seen:
            raise ModelError(f"model {self.model!r} streamed nothing; the server's answer is "
                             "not a chat completion stream")
        calls = [ToolCall(id=c["id"] or f"call_{i}", name=c["name"],
                          arguments="".join(c["args"]) or "{}")
                 for i, c in sorted(self.calls.items())]
        details = getattr(self.usage, "prompt_tokens_details", None)
        return ModelResponse(
            message=Message("assistant", content="".join(self.text) if self.text else None,
                            tool_calls=calls),
            usage=Usage(_count(self.usage, "prompt_tokens"),
                        _count(self.usage, "completion_tokens"),
                        _count(details, "cached_tokens"), _count(details, "cache_write_tokens")),
            model=self.model, finish_reason=self.finish_reason)


def _count(obj: Any, name: str) -> int:
    """A token count from the SDK's usage objects, 0 when the server left it out."""
    return int(getattr(obj, name, 0) or 0)


__all__ = ["OpenAIModel"]
