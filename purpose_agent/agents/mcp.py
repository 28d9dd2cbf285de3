"""``mcp_tools``: the tools of an MCP server as durable tools of an
:class:`~purpose_agent.agents.Agent`, through the official ``mcp`` package
(``pip install 'purpose-agent[mcp]'``).

A server is a command line (started as a subprocess, spoken to over stdio) or an
``http(s)://`` URL (streamable HTTP). Each call of one of its tools is a durable step,
like any tool's: its result is committed before the model reads it and replayed, not
re-sent, when the node re-executes; ``at_most_once`` tools are never called twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shlex
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any

from purpose_agent.agents._errors import AgentError, ToolDefinitionError
from purpose_agent.agents.tools import Tool
from purpose_agent.flow.context import StepOptions
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.redact import summarize


class _Connection:
    """One session with an MCP server, kept open on an event loop of its own (a daemon
    thread), so the sync driver's tool threads and any number of event loops share it."""

    def __init__(self, target: Any, where: str, timeout: float) -> None:
        self.target, self.where, self.timeout = target, where, timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._thread is not None and self._thread.is_alive():
                return self._loop
            ready: concurrent.futures.Future[asyncio.AbstractEventLoop] = \
                concurrent.futures.Future()
            self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True,
                                            name="purpose-agent-mcp")
            self._thread.start()
            try:
                self._loop = ready.result(self.timeout)
            except Exception as exc:
                raise AgentError(f"could not connect to the MCP server {self.where}: "
                                 f"{type(exc).__name__}: {summarize(str(exc), 300)}") from None
            return self._loop

    def _main(self, ready: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        from mcp import Client

        self._stop = asyncio.Event()
        try:
            async with Client(self.target) as client:
                self._client = client
                ready.set_result(asyncio.get_running_loop())
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise

    def run(self, call: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        """``call(client)`` on the session's loop, from any thread without a loop."""
        loop = self._started()
        return asyncio.run_coroutine_threadsafe(call(self._client), loop).result(self.timeout)

    async def arun(self, call: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        """``call(client)`` awaited from another event loop."""
        loop = await asyncio.to_thread(self._started)
        future = asyncio.run_coroutine_threadsafe(call(self._client), loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)

    def close(self) -> None:
        """End the session (a stdio server's process exits with it)."""
        with self._lock:
            loop, stop, thread = self._loop, self._stop, self._thread
            self._loop = self._thread = None
        if loop is not None and stop is not None and thread is not None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(self.timeout)


class MCPTool(Tool):
    """One tool of an MCP server (see :func:`mcp_tools`): its name, description and
    JSON schema are the server's; a call goes to the server as ``tools/call``."""

    def __init__(self, connection: _Connection, spec: Any, *, name: str,
                 requires_approval: bool, at_most_once: bool) -> None:
        # Not Tool.__init__: the schema comes from the server, not from a signature.
        self.fn = self._call_sync
        self.is_async = False
        self.remote_name = str(spec.name)
        self.name = name
        self.description = str(getattr(spec, "description", None) or name)
        self.requires_approval = requires_approval
        self.at_most_once = at_most_once
        schema = dict(getattr(spec, "input_schema", None) or {})
        schema.pop("title", None)
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        self.parameters = schema
        self.step_options = StepOptions(at_most_once=at_most_once)
        self._connection = connection

    def validate(self, args: Any) -> str | None:
        """The checks a schema makes plainly (an object, required and known keys); the
        server validates the rest, and its refusal goes back to the model."""
        if not isinstance(args, dict):
            return (f"arguments for tool {self.name!r} must be a JSON object, got "
                    f"{type(args).__name__}")
        missing = [k for k in self.parameters.get("required", ()) if k not in args]
        known = self.parameters.get("properties") or {}
        unknown = ([k for k in args if k not in known]
                   if self.parameters.get("additionalProperties") is not True else [])
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unknown {', '.join(unknown)}"] if unknown else [])
            return f"invalid arguments for tool {self.name!r}: {'; '.join(parts)}"
        return None

    def step_fn(self, args: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        return self._outcome(self._connection.run(self._request(args)), started)

    async def astep_fn(self, args: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        return self._outcome(await self._connection.arun(self._request(args)), started)

    def _call_sync(self, **kwargs: Any) -> Any:
        return self.step_fn(kwargs)

    def _request(self, args: dict[str, Any]) -> Callable[[Any], Coroutine[Any, Any, Any]]:
        async def call(client: Any) -> Any:
            return await client.call_tool(self.remote_name, args)

        return call

    def _outcome(self, result: Any, started: float) -> dict[str, Any]:
        """The journaled outcome: ``{"ok", "result" | "error", "latency_ms"}``."""
        latency = round((time.monotonic() - started) * 1000)
        texts = [str(getattr(block, "text", "")) for block in result.content or ()
                 if getattr(block, "type", None) == "text"]
        text = "\n".join(texts)
        if result.is_error:
            return {"ok": False, "error": summarize(text or "the tool failed", 2000),
                    "latency_ms": latency}
        value = result.structured_content if result.structured_content is not None else text
        jsonutil.check(value, f"$.tool[{self.name}].result")
        return {"ok": True, "result": value, "latency_ms": latency}

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r} at {self._connection.where})"


class MCPTools:
    """The tools of one MCP server, for ``Agent(tools=[...])``. See :func:`mcp_tools`."""

    def __init__(self, connection: _Connection, tools: list[MCPTool]) -> None:
        self.connection = connection
        self.tools = tools

    def __iter__(self) -> Iterator[MCPTool]:
        return iter(self.tools)

    def close(self) -> None:
        """End the session with the server (a stdio server's process exits)."""
        self.connection.close()

    def __repr__(self) -> str:
        return f"MCPTools({self.connection.where}, tools={[t.name for t in self.tools]})"


def mcp_tools(server: str, *, env: Mapping[str, str] | None = None, cwd: str | None = None,
              at_most_once: bool | Iterable[str] = (),
              requires_approval: bool | Iterable[str] = (),
              include: Iterable[str] | None = None, prefix: str = "",
              timeout: float = 60.0) -> MCPTools:
    """The tools of the MCP server ``server``, as durable tools for an Agent.

    ``server`` is a command line (``"python -m some_server"``: started as a subprocess,
    spoken to over stdio, with ``env`` added to a minimal environment and ``cwd``) or a
    streamable HTTP URL (``"http://127.0.0.1:8000/mcp"``). The server is asked for its
    tools here, once; the session stays open for the tools' calls.

    ``at_most_once`` and ``requires_approval`` are tool names (or True for all): each
    call of such a tool is never run twice (the run pauses *in doubt* after a crash
    mid-call) or waits for a person's approval, exactly as ``@tool(...)``'s flags.
    ``include`` keeps only the tools named; ``prefix`` is put before each tool's name
    as the model sees it (two servers with a tool of the same name). A tool the server
    reports as failed (``isError``) goes back to the model as a tool error; a call that
    cannot reach the server fails the node (its retries apply).
    """
    try:
        import mcp
    except ImportError as exc:
        raise ImportError("mcp_tools needs the mcp package: pip install "
                          "'purpose-agent[mcp]'") from exc
    if not isinstance(server, str) or not server.strip():
        raise ToolDefinitionError("mcp_tools needs a command line or an http(s):// URL")
    if server.startswith(("http://", "https://")):
        target: Any = server
    else:
        command, *args = shlex.split(server)
        target = mcp.StdioServerParameters(command=command, args=args, env=dict(env or {}),
                                           cwd=cwd)
    flags = {"at_most_once": _names(at_most_once), "requires_approval":
             _names(requires_approval)}
    wanted = None if include is None else frozenset(include)
    connection = _Connection(target, repr(server), float(timeout))

    async def listing(client: Any) -> list[Any]:
        return list((await client.list_tools()).tools)

    specs = connection.run(listing)
    found = {str(spec.name) for spec in specs}
    for flag, names in [*flags.items(), ("include", wanted)]:
        unknown = sorted(names - found) if isinstance(names, frozenset) else []
        if unknown:
            connection.close()
            raise ToolDefinitionError(
                f"mcp_tools({server!r}): {flag} names {unknown}, which the server does not "
                f"have; its tools are {sorted(found)}")
    tools = [MCPTool(connection, spec, name=f"{prefix}{spec.name}",
                     requires_approval=_named(flags["requires_approval"], spec.name),
                     at_most_once=_named(flags["at_most_once"], spec.name))
             for spec in specs if wanted is None or spec.name in wanted]
    return MCPTools(connection, tools)


def _names(flag: bool | Iterable[str]) -> bool | frozenset[str]:
    if isinstance(flag, bool):
        return flag
    if isinstance(flag, str):
        raise ToolDefinitionError(f"give tool names as a list, e.g. [{flag!r}], not a string")
    return frozenset(flag)


def _named(flag: bool | frozenset[str], name: str) -> bool:
    return flag if isinstance(flag, bool) else name in flag


__all__ = ["MCPTool", "MCPTools", "mcp_tools"]
