"""``AnthropicModel``: the :class:`~purpose_agent.agents.model.Model` protocol on the
official ``anthropic`` SDK (Anthropic's Messages API).

The agent speaks OpenAI's chat format; this adapter maps it both ways: system messages
to the ``system`` parameter, tool calls to ``tool_use`` blocks and tool results to
``tool_result`` blocks (consecutive ones in one user message, as the API requires),
stop reasons to OpenAI's words (``end_turn`` → ``stop``, ``tool_use`` →
``tool_calls``, ``max_tokens`` → ``length``, ``refusal`` → ``content_filter``), and
usage so that ``input_tokens`` counts the whole prompt (Anthropic reports cache reads
and writes apart from it). The SDK is imported when a model is created.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from purpose_agent.agents._errors import ModelError
from purpose_agent.agents._sdk import PerLoop, sdk_error
from purpose_agent.agents.model import Message, ModelResponse, Price, ToolCall, Usage

_NO_KEY = "no-key"  # local Anthropic-compatible servers may ignore the key
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls",
           "max_tokens": "length", "model_context_window_exceeded": "length",
           "refusal": "content_filter"}


class AnthropicModel:
    """A Claude model reached through the ``anthropic`` SDK's Messages API.

    The key is ``api_key`` or ``$ANTHROPIC_API_KEY``; it is sent only in the SDK's
    authentication header (``Authorization: Bearer`` with anthropic 2.x) and never appears in events, errors, the journal or this
    object's repr. ``base_url`` (else ``$ANTHROPIC_BASE_URL``, else Anthropic) points it
    elsewhere. ``max_tokens`` caps each answer (the API requires a cap). Transient
    failures (429, 5xx, 529 overloaded, timeouts, dropped connections) are retried by
    the SDK up to ``max_retries`` times with its own backoff; after that
    :meth:`complete` raises :class:`ModelError` naming the HTTP status. ``extra`` is
    passed to every request (e.g. ``{"temperature": 0}``); ``prices`` (a
    :class:`~purpose_agent.agents.Price`) makes every call's cost journaled. An agent's
    ``output_type`` is sent as ``output_config`` (a JSON schema format). Under
    ``await flow.arun(...)`` calls go through the SDK's ``AsyncAnthropic`` client.
    With ``on_token`` a call streams (the Messages API's Server-Sent Events, read
    through the SDK's stream): each piece of text is handed over as it arrives and the
    whole message, usage included, is returned when the stream ends.
    """

    provider = "anthropic"  # gen_ai.provider.name in telemetry

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 max_tokens: int = 4096, timeout: float = 60.0, max_retries: int = 2,
                 extra: dict[str, Any] | None = None, prices: Price | None = None) -> None:
        try:
            import anthropic
        except ImportError as exc:
            raise ImportError("AnthropicModel needs the anthropic SDK: pip install "
                              "'purpose-agent[anthropic]'") from exc
        if not isinstance(model, str) or not model:
            raise ValueError("AnthropicModel needs a model name, e.g. "
                             "AnthropicModel('claude-sonnet-4-5')")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"AnthropicModel max_tokens must be a positive int, got "
                             f"{max_tokens!r}")
        if prices is not None and not isinstance(prices, Price):
            raise TypeError(f"AnthropicModel prices must be a Price, got {prices!r}")
        self.name = model
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            if self.base_url is None:
                raise ValueError("AnthropicModel has no API key: pass api_key=... or set "
                                 "ANTHROPIC_API_KEY (or set base_url for a local server)")
            key = _NO_KEY
        self.max_tokens = max_tokens
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.extra = dict(extra or {})
        self.prices = prices
        self._api_key = key
        self._anthropic = anthropic
        self._client = anthropic.Anthropic(api_key=key, base_url=self.base_url,
                                           timeout=self.timeout, max_retries=self.max_retries)
        self._async = PerLoop(lambda: anthropic.AsyncAnthropic(
            api_key=key, base_url=self.base_url, timeout=self.timeout,
            max_retries=self.max_retries))

    def complete(self, messages: list[Message], tools: list[dict[str, Any]], *,
                 output: dict[str, Any] | None = None,
                 on_token: Callable[[str], None] | None = None) -> ModelResponse:
        """One Messages API call. Raises :class:`ModelError` once the SDK gave up.

        ``output`` (``{"name", "description", "schema"}``) asks for a final answer in
        that JSON schema; what comes back is not trusted (the agent validates it).
        ``on_token`` streams the answer: it is called with each piece of text as it
        arrives, and the whole response is returned at the end."""
        request = self._request(messages, tools, output)
        try:
            if on_token is None:
                return from_anthropic(self._client.messages.create(**request), self.name)
            events = _Events(self.name)
            with self._client.messages.create(**request, stream=True) as stream:
                for event in stream:
                    events.add(event, on_token)
        except self._anthropic.AnthropicError as exc:
            raise self._error(exc) from None
        return events.response()

    async def acomplete(self, messages: list[Message], tools: list[dict[str, Any]], *,
                        output: dict[str, Any] | None = None,
                        on_token: Callable[[str], None] | None = None) -> ModelResponse:
        """:meth:`complete` on the SDK's ``AsyncAnthropic`` client (one per event loop)."""
        request = self._request(messages, tools, output)
        client = self._async.client()
        try:
            if on_token is None:
                return from_anthropic(await client.messages.create(**request), self.name)
            events = _Events(self.name)
            async with await client.messages.create(**request, stream=True) as stream:
                async for event in stream:
                    events.add(event, on_token)
        except self._anthropic.AnthropicError as exc:
            raise self._error(exc) from None
        return events.response()

    def _request(self, messages: list[Message], tools: list[dict[str, Any]],
                 output: dict[str, Any] | None) -> dict[str, Any]:
        system, turns = to_anthropic(messages)
        request: dict[str, Any] = {"max_tokens": self.max_tokens, **self.extra,
                                   "model": self.name, "messages": turns}
        if system:
            request["system"] = system
        if tools:
            request["tools"] = [{"name": t["name"], "description": t.get("description", ""),
                                 "input_schema": t["parameters"]} for t in tools]
        if output is not None:
            request["output_config"] = {"format": {"type": "json_schema",
                                                   "schema": _closed(output["schema"])}}
        return request

    def _error(self, exc: Exception) -> ModelError:
        return sdk_error(self._anthropic, exc, api_key=self._api_key, timeout=self.timeout,
                         max_retries=self.max_retries,
                         where=f"model {self.name!r} at {self.base_url or 'api.anthropic.com'}")

    def __repr__(self) -> str:
        prices = f", prices={self.prices!r}" if self.prices is not None else ""
        return (f"AnthropicModel({self.name!r}, base_url={self.base_url!r}, "
                f"max_tokens={self.max_tokens}, timeout={self.timeout:g}, "
                f"max_retries={self.max_retries}{prices})")


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Messages API turns) for a conversation in the chat format."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        # The API wants alternating turns, all of one tool round's results in one.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for m in messages:
        if m.role == "system":
            if m.content:
                system.append(m.content)
        elif m.role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m.tool_call_id or "",
                          "content": m.content or ""}])
        elif m.role == "assistant":
            blocks: list[dict[str, Any]] = []
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name,
                        "input": _arguments(c.arguments)} for c in m.tool_calls]
            # An empty turn is refused by the API; keep the turn, say it was empty.
            add("assistant", blocks or [{"type": "text", "text": "(no answer)"}])
        else:
            add("user", [{"type": "text", "text": m.content or "(empty message)"}])
    return "\n\n".join(system), turns


def from_anthropic(message: Any, model: str) -> ModelResponse:
    """The :class:`ModelResponse` for the SDK's ``Message``."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for i, block in enumerate(getattr(message, "content", None) or ()):
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use":
            arguments = block.input
            calls.append(ToolCall(id=block.id or f"toolu_{i}", name=block.name,
                                  arguments=arguments if isinstance(arguments, str)
                                  else json.dumps(arguments)))
    if getattr(message, "content", None) is None:
        raise ModelError(f"model {model!r} returned no content; the server's answer is not "
                         "a Messages API message")
    usage = message.usage
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    reason = message.stop_reason
    return ModelResponse(
        message=Message("assistant", content="\n\n".join(texts) if texts else None,
                        tool_calls=calls),
        usage=Usage(_count(usage, "input_tokens") + cache_read + cache_write,
                    _count(usage, "output_tokens"), cache_read, cache_write),
        model=str(message.model or model),
        finish_reason=_FINISH.get(reason, reason) if reason else None,
    )


class _Events:
    """A streamed message put back together from the SDK's raw stream events.

    The raw events are read, not the SDK's accumulating helper (``messages.stream``):
    the helper parses a tool's input JSON leniently as it grows, so an input cut short
    (``max_tokens`` mid-call) would come out as a smaller, valid object; kept as the
    text the model sent, it goes back to the model as a tool error, as OpenAI's does.
    Usage is ``message_start``'s, overwritten by the cumulative counts each
    ``message_delta`` carries (output tokens always, input and cache counts when sent).
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, int] = {}
        self.stop_reason: str | None = None

    def add(self, event: Any, on_token: Callable[[str], None]) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.started = True
            self.model = str(event.message.model or self.model)
            self._count(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block
            self.blocks[event.index] = {"type": block.type, "text": [],
                                        "id": getattr(block, "id", ""),
                                        "name": getattr(block, "name", "")}
        elif kind == "content_block_delta":
            block = self.blocks.setdefault(event.index, {"type": "text", "text": []})
            delta = event.delta
            if delta.type == "text_delta" and block["type"] == "text":
                block["text"].append(delta.text)
                on_token(delta.text)
            elif delta.type == "input_json_delta":
                block["text"].append(delta.partial_json)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self._count(event.usage)

    def _count(self, usage: Any) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                     "cache_creation_input_tokens"):
            value = getattr(usage, name, None)
            if value is not None:
                self.usage[name] = int(value)

    def response(self) -> ModelResponse:
        if not self.started:
            raise ModelError(f"model {self.model!r} streamed no message; the server's answer "
                             "is not a Messages API stream")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for index, block in sorted(self.blocks.items()):
            if block["type"] == "text":
                texts.append("".join(block["text"]))
            elif block["type"] == "tool_use":
                calls.append(ToolCall(id=block["id"] or f"toolu_{index}", name=block["name"],
                                      arguments="".join(block["text"]) or "{}"))
        cache_read = self.usage.get("cache_read_input_tokens", 0)
        cache_write = self.usage.get("cache_creation_input_tokens", 0)
        reason = self.stop_reason
        return ModelResponse(
            message=Message("assistant", content="\n\n".join(texts) if texts else None,
                            tool_calls=calls),
            usage=Usage(self.usage.get("input_tokens", 0) + cache_read + cache_write,
                        self.usage.get("output_tokens", 0), cache_read, cache_write),
            model=self.model, finish_reason=_FINISH.get(reason, reason) if reason else None)


def _arguments(text: str) -> Any:
    """A tool call's JSON arguments as the object ``tool_use`` needs."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        value = None
    # Arguments that were never an object (the model sent broken JSON, in a conversation
    # begun with another provider) are kept, as text, for the model to see.
    return value if isinstance(value, dict) else {"_arguments": text}


def _closed(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that does not say
    (Anthropic's structured outputs require closed objects)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _count(obj: Any, name: str) -> int:
    return int(getattr(obj, name, 0) or 0)


__all__ = ["AnthropicModel"]
