"""``AnthropicTestServer``: the scripted server on Anthropic's Messages wire."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from purpose_agent.agents.model import ModelResponse
from purpose_agent.agents.testing._server import ScriptedServer

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
        usage = response.usage
        reason = response.finish_reason or "stop"
        return {
            "id": f"msg_{number}", "type": "message", "role": "assistant",
            "model": body.get("model") or self.model, "content": content,
            "stop_reason": _STOP_REASONS.get(reason, reason), "stop_sequence": None,
            "usage": {"input_tokens": usage.input_tokens - usage.cached_input_tokens
                      - usage.cache_write_tokens,
                      "output_tokens": usage.output_tokens,
                      "cache_read_input_tokens": usage.cached_input_tokens,
                      "cache_creation_input_tokens": usage.cache_write_tokens},
        }


__all__ = ["AnthropicTestServer"]
