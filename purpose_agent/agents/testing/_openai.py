"""``OpenAICompatibleTestServer``: the scripted server on the chat completions wire."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from purpose_agent.agents.model import ModelResponse
from purpose_agent.agents.testing._server import STREAM_PIECE, ScriptedServer, sse


class OpenAICompatibleTestServer(ScriptedServer):
    """A scripted server speaking the chat completions API
    (``POST /v1/chat/completions``); the key goes in ``Authorization: Bearer <key>``.
    See :class:`ScriptedServer` for the script, ``then``, ``api_key`` and the records."""

    routes = ("/v1/chat/completions", "/chat/completions")
    url_path = "/v1"

    def _credential(self, handler: BaseHTTPRequestHandler) -> tuple[str | None, bool]:
        value = handler.headers.get("Authorization")
        return value, value == f"Bearer {self.api_key}"

    def _bad_request(self, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return "the body must be a JSON object with messages"
        return None

    def _error_body(self, status: int, message: str) -> Any:
        code = {401: "invalid_api_key", 404: "not_found", 400: "bad"}.get(status,
                                                                          "scripted_error")
        return {"error": {"message": message, "type": code, "code": code, "param": None}}

    def _success(self, response: ModelResponse, number: int, body: dict[str, Any]) -> Any:
        message = response.message.to_dict()
        if response.message.content is None and not response.message.tool_calls:
            message["content"] = ""
        usage = response.usage
        return {
            "id": f"chatcmpl-{number}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": response.finish_reason}],
            "usage": {"prompt_tokens": usage.input_tokens,
                      "completion_tokens": usage.output_tokens,
                      "total_tokens": usage.total_tokens,
                      "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens}},
        }


    def _stream(self, response: ModelResponse, number: int,
                body: dict[str, Any]) -> Iterator[bytes]:
        """Chat completion chunks: the role, the content a few characters at a time, each
        tool call's name then its arguments in pieces, the finish reason, then (asked
        with ``stream_options.include_usage``) the usage, and ``[DONE]``."""
        head = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model") or self.model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**head, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        text = response.message.content or ""
        for start in range(0, len(text), STREAM_PIECE):
            yield chunk({"content": text[start:start + STREAM_PIECE]})
        for i, call in enumerate(response.message.tool_calls):
            yield chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                         "function": {"name": call.name, "arguments": ""}}]})
            for start in range(0, len(call.arguments), STREAM_PIECE):
                piece = call.arguments[start:start + STREAM_PIECE]
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield chunk({}, response.finish_reason)
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = response.usage
            yield sse({**head, "choices": [], "usage": {
                "prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
                "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens}}})
        yield b"data: [DONE]\n\n"



__all__ = ["OpenAICompatibleTestServer"]
