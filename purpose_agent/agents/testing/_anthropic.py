"""``AnthropicTestServer``: the scripted server on Anthropic's Messages wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from purpose_agent.agents.model import ModelResponse
from purpose_agent.agents.testing._server import STREAM_PIECE, ScriptedServer, sse

# OpenAI's finish reasons (what scripts and ModelResponse speak) in Anthropic's words.
_STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens",
                 "content_filter": "refusal"}
_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error",
                     404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


class AnthropicTestServer(ScriptedServer):
    """A scripted server speaking Anthropic's Messages API (``POST /v1/messages``); the
    key goes in the ``x-api-key`` header or as ``Authorization: Bearer <key>`` (what the
    anthropic SDK 2.x sends). Usage is reported the Anthropic way: a
    script's ``input_tokens`` minus its cached and cache-written tokens as
    ``input_tokens``, those as ``cache_read_input_tokens`` /
    ``cache_creation_input_tokens``. See :class:`ScriptedServer` for the rest."""

    routes = ("/v1/messages",)
    url_path = ""

    def _credential(self, handler: BaseHTTPRequestHandler) -> tuple[str | None, bool]:
        # The API takes x-api-key; the anthropic SDK 2.x sends Authorization: Bearer.
        key, bearer = handler.headers.get("x-api-key"), handler.headers.get("Authorization")
        return key or bearer, self.api_key in (key, (bearer or "").removeprefix("Bearer "))

    def _bad_request(self, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return "the body must be a JSON object with messages"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        roles = [m.get("role") for m in body["messages"] if isinstance(m, dict)]
        if any(role not in ("user", "assistant") for role in roles):
            return f"messages: roles must be user or assistant, got {roles}"
        return None

    def _error_body(self, status: int, message: str) -> Any:
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def _success(self, response: ModelResponse, number: int, body: dict[str, Any]) -> Any:
        content: list[dict[str, Any]] = []
        if response.message.content:
            content.append({"type": "text", "text": response.message.content})
        for call in response.message.tool_calls:
            try:
                arguments = json.loads(call.arguments)
            except ValueError:
                arguments = call.arguments  # a scripted broken call, sent as is
            content.append({"type": "tool_use", "id": call.id, "name": call.name,
                            "input": arguments})
        return {**self._message(response, number, body), "content": content,
                "stop_reason": _stop_reason(response), "usage": _usage(response)}

    def _message(self, response: ModelResponse, number: int,
                 body: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"msg_{number}", "type": "message", "role": "assistant",
                "model": body.get("model") or self.model, "content": [],
                "stop_reason": None, "stop_sequence": None}

    def _stream(self, response: ModelResponse, number: int,
                body: dict[str, Any]) -> Iterator[bytes]:
        """Anthropic's streaming events: ``message_start`` (with the input usage and
        ``output_tokens: 1``, as the API sends it), a ``ping``, then each content block
        (``content_block_start``, its text or its tool input's JSON a few characters per
        ``content_block_delta``, ``content_block_stop``), ``message_delta`` with the stop
        reason and the cumulative output tokens, and ``message_stop``."""
        usage = {**_usage(response), "output_tokens": 1}
        yield sse({"type": "message_start",
                   "message": {**self._message(response, number, body), "usage": usage}},
                  "message_start")
        yield sse({"type": "ping"}, "ping")
        blocks: list[tuple[dict[str, Any], str, str]] = []
        if response.message.content:
            blocks.append(({"type": "text", "text": ""}, "text_delta",
                           response.message.content))
        for call in response.message.tool_calls:
            blocks.append(({"type": "tool_use", "id": call.id, "name": call.name,
                            "input": {}}, "input_json_delta", call.arguments))
        for index, (start, kind, text) in enumerate(blocks):
            yield sse({"type": "content_block_start", "index": index,
                       "content_block": start}, "content_block_start")
            field = "text" if kind == "text_delta" else "partial_json"
            for at in range(0, len(text), STREAM_PIECE):
                yield sse({"type": "content_block_delta", "index": index,
                           "delta": {"type": kind, field: text[at:at + STREAM_PIECE]}},
                          "content_block_delta")
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        yield sse({"type": "message_delta",
                   "delta": {"stop_reason": _stop_reason(response), "stop_sequence": None},
                   "usage": {"output_tokens": response.usage.output_tokens}},
                  "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")


def _stop_reason(response: ModelResponse) -> str:
    reason = response.finish_reason or "stop"
    return _STOP_REASONS.get(reason, reason)


def _usage(response: ModelResponse) -> dict[str, int]:
    """A response's usage the Anthropic way: cache reads and writes apart from input."""
    usage = response.usage
    return {"input_tokens": usage.input_tokens - usage.cached_input_tokens
            - usage.cache_write_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cached_input_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens}


__all__ = ["AnthropicTestServer"]
