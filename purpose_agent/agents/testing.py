"""Test doubles for agents: a scripted model, and a real local OpenAI-compatible server.

Both take the same script format, one entry per model call::

    "Hello"                                          # an answer
    {"content": "...", "usage": {"input_tokens": 12, "output_tokens": 3,
                                 "cached_input_tokens": 8}}
    {"content": "...", "finish_reason": "length"}   # why it stopped (OpenAI's words)
    {"tool_calls": [tool_call("lookup", order_id="A1")]}
    {"status": 429}                                  # server only: an HTTP error
    {"status": 500, "error": "overloaded", "headers": {"retry-after-ms": "5"}}
    {"delay": 2.0, "content": "late"}               # server only: answer after 2 s
    {"content": "...", "hold_after": 2}             # server only: a stream held after
                                                    # 2 chunks until release_stream()

``OpenAICompatibleTestServer`` answers ``POST /v1/chat/completions`` and
``AnthropicTestServer`` answers ``POST /v1/messages`` (Anthropic's Messages API) on
127.0.0.1 from a thread, so the whole client stack (the provider's SDK, its retries,
HTTP) is real. A request with ``"stream": true`` gets the answer as Server-Sent Events
in the provider's chunk format, sent chunk by chunk.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from purpose_agent.agents._errors import ModelError
from purpose_agent.agents.model import Message, ModelResponse, Price, ToolCall, Usage


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
        usage=Usage(int(usage.get("input_tokens", 10)), int(usage.get("output_tokens", 5)),
                    int(usage.get("cached_input_tokens", 0)),
                    int(usage.get("cache_write_tokens", 0))),
        model=model,
        finish_reason=entry.get("finish_reason") or ("tool_calls" if calls else "stop"))


class ScriptedModel:
    """A :class:`~purpose_agent.agents.model.Model` that returns scripted responses in
    order. ``calls`` counts the calls; ``requests`` keeps each call's messages (as dicts),
    ``tools`` each call's tool names and ``outputs`` each call's requested output schema
    (None for none). An entry that is an exception is raised. Running out of script
    raises :class:`ModelError`. ``prices`` prices its calls like a real model's."""

    provider = "purpose_agent.scripted"  # gen_ai.provider.name in telemetry

    def __init__(self, responses: Iterable[Any], *, name: str = "scripted",
                 prices: Price | None = None) -> None:
        self.name = name
        self.script = list(responses)
        self.prices = prices
        self.calls = 0
        self.requests: list[list[dict[str, Any]]] = []
        self.tools: list[list[str]] = []
        self.outputs: list[dict[str, Any] | None] = []

    def complete(self, messages: list[Message], tools: list[dict[str, Any]], *,
                 output: dict[str, Any] | None = None) -> ModelResponse:
        self.calls += 1
        self.requests.append([m.to_dict() for m in messages])
        self.tools.append([t["name"] for t in tools])
        self.outputs.append(output)
        if self.calls > len(self.script):
            raise ModelError(f"ScriptedModel {self.name!r} was called {self.calls} times but "
                             f"has {len(self.script)} scripted responses")
        entry = self.script[self.calls - 1]
        if isinstance(entry, BaseException):
            raise entry
        return _response(entry, self.calls, self.name)

    def __repr__(self) -> str:
        return f"ScriptedModel({self.name!r}, calls={self.calls}/{len(self.script)})"


class _ScriptedServer:
    """A real HTTP server on 127.0.0.1 (ephemeral port) answering a provider's API from
    a script; subclasses speak the provider's wire format.

    Each request to the API gets the next script entry; when the script is used up it
    gets ``then`` (e.g. ``{"status": 500}`` for "500 forever"), or by default a 500
    marked not retryable that says the script ran out. Error answers carry
    ``retry-after-ms`` (``retry_after_ms``, default 1) so SDK retries are fast.
    ``together=N`` answers no request before N are in flight at once (proof that a
    client overlaps its calls: requests sent one at a time fail with a 500 after
    ``together_timeout`` seconds); ``max_in_flight`` is the most that ever were.
    ``api_key``, when set, is required in the provider's credential header (else 401).
    ``request_count``, ``requests`` (JSON bodies) and ``authorizations`` (that header of
    each request, None when absent) record what clients sent. Use as a context manager,
    or call :meth:`start` / :meth:`stop`; ``url`` is the ``base_url`` for clients.
    """

    routes: tuple[str, ...] = ()
    url_path = ""

    def __init__(self, responses: Iterable[Any] = (), *, then: Any = None,
                 api_key: str | None = None, model: str = "test-model",
                 retry_after_ms: int = 1, together: int | None = None,
                 together_timeout: float = 30.0) -> None:
        self.script = list(responses)
        # ``together``: no request is answered before that many are in flight at once;
        # a client that sends them one at a time gets a 500 after ``together_timeout``.
        self._together = threading.Barrier(together) if together else None
        self.together_timeout = together_timeout
        self.in_flight = self.max_in_flight = 0
        # A streamed answer scripted with ``hold_after: n`` stops after n chunks: then
        # ``holding`` is set and the rest waits for release_stream().
        self.holding = threading.Event()
        self._release = threading.Event()
        self.then = then
        self.api_key = api_key
        self.model = model
        self.retry_after_ms = retry_after_ms
        self.requests: list[Any] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ── what a provider's subclass says ──────────────────────────────────────────
    def _credential(self, handler: BaseHTTPRequestHandler) -> tuple[str | None, bool]:
        """(the credential header as sent, whether it carries ``api_key``)."""
        raise NotImplementedError

    def _bad_request(self, body: Any) -> str | None:
        """What is wrong with a request body, or None."""
        raise NotImplementedError

    def _error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def _success(self, response: ModelResponse, number: int, body: dict[str, Any]) -> Any:
        raise NotImplementedError

    # ── the shared machinery ─────────────────────────────────────────────────────
    def release_stream(self) -> None:
        """Let a held stream (``hold_after``) send the rest of its chunks."""
        self._release.set()

    def _stream(self, response: ModelResponse, number: int,
                body: dict[str, Any]) -> Iterator[bytes]:
        """A streamed answer as Server-Sent Events (subclasses say which)."""
        raise NotImplementedError

    def _held(self, chunks: Iterable[bytes], hold_after: int | None) -> Iterator[bytes]:
        for sent, chunk in enumerate(chunks):
            if sent == hold_after:
                self.holding.set()
                if not self._release.wait(self.together_timeout):
                    # Nobody read the first chunks in time: hang up mid-stream.
                    raise ConnectionAbortedError("held stream never released")
            yield chunk

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
        port = self._server.server_address[1]  # the host is the 127.0.0.1 it was bound to
        return f"http://127.0.0.1:{port}{self.url_path}"

    def start(self) -> Any:
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _handler(self._answer))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            name=f"{type(self).__name__}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> Any:
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
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._together is not None:
                try:
                    self._together.wait(self.together_timeout)
                except threading.BrokenBarrierError:
                    return 500, {"x-should-retry": "false"}, self._error_body(
                        500, f"requests did not overlap: {self._together.parties} were "
                             f"expected in flight together within {self.together_timeout:g}s")
            return self._answer_one(handler)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer_one(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], Any]:
        if handler.path.split("?")[0].rstrip("/") not in self.routes:
            return 404, {}, self._error_body(404, f"no route {handler.path}")
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"null")
        except ValueError:
            body = None
        authorization, authorized = self._credential(handler)
        number, entry = self._next(body, authorization)
        if self.api_key is not None and not authorized:
            return 401, {}, self._error_body(401, "invalid API key")
        problem = self._bad_request(body)
        if problem is not None:
            return 400, {}, self._error_body(400, problem)
        if isinstance(entry, dict) and entry.get("delay"):
            time.sleep(float(entry["delay"]))
        status = int(entry.get("status", 200)) if isinstance(entry, dict) else 200
        if status != 200:
            headers = {"retry-after-ms": str(self.retry_after_ms),
                       **(entry.get("headers") or {})}
            return status, headers, self._error_body(
                status, entry.get("error") or f"scripted HTTP {status}")
        assert isinstance(body, dict)
        response = _response(entry, number, self.model)
        if body.get("stream"):
            hold = entry.get("hold_after") if isinstance(entry, dict) else None
            return 200, {"Content-Type": "text/event-stream"}, self._held(
                self._stream(response, number, body), hold)
        return 200, {}, self._success(response, number, body)

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"{type(self).__name__}({where}, requests={self.request_count})"


class OpenAICompatibleTestServer(_ScriptedServer):
    """A scripted server speaking the chat completions API
    (``POST /v1/chat/completions``); the key goes in ``Authorization: Bearer <key>``.
    See :class:`_ScriptedServer` for the script, ``then``, ``api_key`` and the records."""

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
            return _sse({**head, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        text = response.message.content or ""
        for start in range(0, len(text), _STREAM_PIECE):
            yield chunk({"content": text[start:start + _STREAM_PIECE]})
        for i, call in enumerate(response.message.tool_calls):
            yield chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                         "function": {"name": call.name, "arguments": ""}}]})
            for start in range(0, len(call.arguments), _STREAM_PIECE):
                piece = call.arguments[start:start + _STREAM_PIECE]
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield chunk({}, response.finish_reason)
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = response.usage
            yield _sse({**head, "choices": [], "usage": {
                "prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
                "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens}}})
        yield b"data: [DONE]\n\n"


_STREAM_PIECE = 4  # characters per streamed chunk: a short answer is several chunks


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


# OpenAI's finish reasons (what scripts and ModelResponse speak) in Anthropic's words.
_STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens",
                 "content_filter": "refusal"}
_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error",
                     404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


class AnthropicTestServer(_ScriptedServer):
    """A scripted server speaking Anthropic's Messages API (``POST /v1/messages``); the
    key goes in the ``x-api-key`` header or as ``Authorization: Bearer <key>`` (what the
    anthropic SDK 2.x sends). Usage is reported the Anthropic way: a
    script's ``input_tokens`` minus its cached and cache-written tokens as
    ``input_tokens``, those as ``cache_read_input_tokens`` /
    ``cache_creation_input_tokens``. See :class:`_ScriptedServer` for the rest."""

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


class _Server(ThreadingHTTPServer):
    # Many clients connect at once (one event loop's hundred agents): a listen backlog
    # of 5, the default, would make the rest wait for SYN retries.
    request_queue_size = 256


Answer = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], Any]]


def _handler(answer: Answer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                status, headers, payload = answer(self)
            except Exception as exc:  # a bad script entry: say so instead of hanging up
                status, headers = 500, {"x-should-retry": "false"}
                payload = {"error": {"type": "script",
                                     "message": f"test server: {type(exc).__name__}: {exc}"}}
            if isinstance(payload, Iterator):  # a stream: sent as it comes, then closed
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    for piece in payload:
                        self.wfile.write(piece)
                        self.wfile.flush()
                except (ConnectionError, OSError):
                    self.close_connection = True
                return
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


__all__ = ["AnthropicTestServer", "OpenAICompatibleTestServer", "ScriptedModel", "tool_call"]
