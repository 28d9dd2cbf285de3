"""Test doubles for agents: a scripted model, and a real local OpenAI-compatible server.

Both take the same script format, one entry per model call::

    "Hello"                                          # an answer
    {"content": "...", "usage": {"input_tokens": 12, "output_tokens": 3}}
    {"tool_calls": [tool_call("lookup", order_id="A1")]}
    {"status": 429}                                  # server only: an HTTP error
    {"status": 500, "error": "overloaded", "headers": {"retry-after-ms": "5"}}
    {"delay": 2.0, "content": "late"}               # server only: answer after 2 s

``OpenAICompatibleTestServer`` answers ``POST /v1/chat/completions`` on 127.0.0.1 from
a thread, so the whole client stack (the ``openai`` SDK, its retries, HTTP) is real.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from purpose_agent.agents._errors import ModelError
from purpose_agent.agents.model import Message, ModelResponse, ToolCall, Usage


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *,
              id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """A scripted tool call: ``tool_call("lookup", order_id="A1")``. ``arguments`` may be
    raw text, to script a model that sends broken JSON."""
    entry: dict[str, Any] = {"name": name,
                             "arguments": arguments if arguments is not None else kwargs}
    if id is not None:
        entry["id"] = id
    return entry


def _response(entry: Any, number: int, model: str) -> ModelResponse:
    """The ModelResponse a script entry describes (``number`` makes call ids unique)."""
    if isinstance(entry, ModelResponse):
        return entry
    if isinstance(entry, Message):
        return ModelResponse(entry, model=model)
    if isinstance(entry, str):
        entry = {"content": entry}
    if not isinstance(entry, dict):
        raise TypeError(f"script entry #{number} is a {type(entry).__name__}; use a str, a "
                        "dict, a Message or a ModelResponse")
    calls = []
    for i, call in enumerate(entry.get("tool_calls") or ()):
        args = call.get("arguments", {})
        calls.append(ToolCall(id=call.get("id") or f"call_{number}_{i}", name=call["name"],
                              arguments=args if isinstance(args, str) else json.dumps(args)))
    usage = entry.get("usage") or {}
    return ModelResponse(
        Message("assistant", content=entry.get("content"), tool_calls=calls),
        usage=Usage(int(usage.get("input_tokens", 10)), int(usage.get("output_tokens", 5))),
        model=model, finish_reason="tool_calls" if calls else "stop")


class ScriptedModel:
    """A :class:`~purpose_agent.agents.model.Model` that returns scripted responses in
    order. ``calls`` counts the calls; ``requests`` keeps each call's messages (as dicts)
    and ``tools`` each call's tool names. An entry that is an exception is raised.
    Running out of script raises :class:`ModelError`."""

    def __init__(self, responses: Iterable[Any], *, name: str = "scripted") -> None:
        self.name = name
        self.script = list(responses)
        self.calls = 0
        self.requests: list[list[dict[str, Any]]] = []
        self.tools: list[list[str]] = []

    def complete(self, messages: list[Message], tools: list[dict[str, Any]]) -> ModelResponse:
        self.calls += 1
        self.requests.append([m.to_dict() for m in messages])
        self.tools.append([t["name"] for t in tools])
        if self.calls > len(self.script):
            raise ModelError(f"ScriptedModel {self.name!r} was called {self.calls} times but "
                             f"has {len(self.script)} scripted responses")
        entry = self.script[self.calls - 1]
        if isinstance(entry, BaseException):
            raise entry
        return _response(entry, self.calls, self.name)

    def __repr__(self) -> str:
        return f"ScriptedModel({self.name!r}, calls={self.calls}/{len(self.script)})"


class OpenAICompatibleTestServer:
    """A real HTTP server on 127.0.0.1 (ephemeral port) speaking the chat completions API.

    Each ``POST /v1/chat/completions`` gets the next script entry; when the script is
    used up it gets ``then`` (e.g. ``{"status": 500}`` for "500 forever"), or by default
    a 500 marked not retryable that says the script ran out. Error answers carry
    ``retry-after-ms`` (``retry_after_ms``, default 1) so SDK retries are fast.
    ``api_key``, when set, is required as ``Authorization: Bearer <key>`` (else 401).
    ``request_count``, ``requests`` (JSON bodies) and ``authorizations`` (the header of
    each request, None when absent) record what clients sent. Use as a context manager,
    or call :meth:`start` / :meth:`stop`; ``url`` is the ``base_url`` for clients.
    """

    def __init__(self, responses: Iterable[Any] = (), *, then: Any = None,
                 api_key: str | None = None, model: str = "test-model",
                 retry_after_ms: int = 1) -> None:
        self.script = list(responses)
        self.then = then
        self.api_key = api_key
        self.model = model
        self.retry_after_ms = retry_after_ms
        self.requests: list[Any] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def add(self, *responses: Any) -> None:
        """Append entries to the script."""
        with self._lock:
            self.script.extend(responses)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the test server is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAICompatibleTestServer:
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            name="openai-test-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> OpenAICompatibleTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, body: Any, authorization: str | None) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(body)
            self.authorizations.append(authorization)
            number = len(self.requests)
            if number <= len(self.script):
                return number, self.script[number - 1]
        if self.then is not None:
            return number, self.then
        return number, {"status": 500, "headers": {"x-should-retry": "false"},
                        "error": f"test server script exhausted: request #{number}, "
                                 f"{len(self.script)} scripted"}

    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], Any]:
        if handler.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            return 404, {}, _error_body(f"no route {handler.path}", "not_found")
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"null")
        except ValueError:
            body = None
        authorization = handler.headers.get("Authorization")
        number, entry = self._next(body, authorization)
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return 401, {}, _error_body("invalid API key", "invalid_api_key")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return 400, {}, _error_body("the body must be a JSON object with messages", "bad")
        if isinstance(entry, dict) and entry.get("delay"):
            time.sleep(float(entry["delay"]))
        status = int(entry.get("status", 200)) if isinstance(entry, dict) else 200
        if status != 200:
            headers = {"retry-after-ms": str(self.retry_after_ms),
                       **(entry.get("headers") or {})}
            message = entry.get("error") or f"scripted HTTP {status}"
            return status, headers, _error_body(message, "scripted_error")
        response = _response(entry, number, self.model)
        message = response.message.to_dict()
        if response.message.content is None and not response.message.tool_calls:
            message["content"] = ""
        usage = response.usage
        return 200, {}, {
            "id": f"chatcmpl-{number}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": response.finish_reason}],
            "usage": {"prompt_tokens": usage.input_tokens,
                      "completion_tokens": usage.output_tokens,
                      "total_tokens": usage.total_tokens},
        }

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"OpenAICompatibleTestServer({where}, requests={self.request_count})"


def _error_body(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code, "param": None}}


def _handler(server: OpenAICompatibleTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                status, headers, payload = server._answer(self)
            except Exception as exc:  # a bad script entry: say so instead of hanging up
                status, headers = 500, {"x-should-retry": "false"}
                payload = _error_body(f"test server: {type(exc).__name__}: {exc}", "script")
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read the recorded requests instead

    return Handler


__all__ = ["OpenAICompatibleTestServer", "ScriptedModel", "tool_call"]
