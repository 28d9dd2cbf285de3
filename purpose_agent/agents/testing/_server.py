"""The HTTP machinery every scripted provider server shares: the script, errors,
overlapping requests, held streams and the records of what clients sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from purpose_agent.agents.model import ModelResponse
from purpose_agent.agents.testing._script import response_for


class ScriptedServer:
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
        response = response_for(entry, number, self.model)
        if body.get("stream"):
            hold = entry.get("hold_after") if isinstance(entry, dict) else None
            return 200, {"Content-Type": "text/event-stream"}, self._held(
                self._stream(response, number, body), hold)
        return 200, {}, self._success(response, number, body)

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"{type(self).__name__}({where}, requests={self.request_count})"


STREAM_PIECE = 4  # characters per streamed chunk: a short answer is several chunks


def sse(data: Any, event: str | None = None) -> bytes:
    """One Server-Sent Event (``event:`` line first when it is named)."""
    named = f"event: {event}\n" if event else ""
    return f"{named}data: {json.dumps(data)}\n\n".encode()


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


__all__ = ["STREAM_PIECE", "ScriptedServer", "sse"]
