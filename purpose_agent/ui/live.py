"""Live fragments as server-sent events: ``GET <fragment URL>&stream=1``.

The server re-renders the fragment from the store every :data:`INTERVAL` seconds and
sends it (an ``event: fragment``) only when it changed; the browser swaps it in
(``static/app.js``, an ``EventSource``). One connection per live element, no polling
from the page. A stream ends after :data:`LIFETIME` seconds and the browser reconnects
(``retry``), so a server shutting down never waits on a page left open for long.
A fragment that can no longer be rendered (the run was deleted) ends the stream with
an ``event: gone``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from purpose_agent.errors import PurposeAgentError

INTERVAL = 0.5
LIFETIME = 20.0
RETRY_MS = 500


def sse(event: str, text: str) -> str:
    """One server-sent event: every line of ``text`` is a ``data:`` line (the browser
    joins them with newlines), so no line of it can end the event or start another."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def stream(request: Request, render: Callable[[], Response]) -> StreamingResponse:
    """The fragment ``render`` returns, as a stream of server-sent events."""

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + LIFETIME
        last: bytes | None = None
        yield f"retry: {RETRY_MS}\n\n"
        while loop.time() < ends and not await request.is_disconnected():
            try:
                response = await run_in_threadpool(render)
            except PurposeAgentError as exc:
                yield sse("gone", f"{type(exc).__name__}: {exc}")
                return
            body = bytes(response.body)
            if response.status_code != 200:
                yield sse("gone", body.decode("utf-8", "replace"))
                return
            if body != last:
                last = body
                yield sse("fragment", body.decode("utf-8"))
            # Pacing the watch of the store: it has no change feed to wait on.
            await asyncio.sleep(INTERVAL)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


__all__ = ["INTERVAL", "LIFETIME", "sse", "stream"]
