"""Calling a node (:func:`call_node`, :func:`acall_node`) and its timeout, which never lands
inside the engine's own store writes.

On the main thread a timeout is a SIGALRM whose handler raises in the node's code; it is
deferred while the engine writes to the store (``Runner.writing``) and raised right
after, so a commit is never cut half-way (a batch re-sent after it landed, a write
transaction left open). Elsewhere the node runs in a worker thread; when time runs out
its attempt is abandoned under the runner's lock, after which it can never buffer an
event or commit again, however long it runs on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

from purpose_agent.errors import ControlSignal, NodeTimeout
from purpose_agent.flow.context import NodeContext
from purpose_agent.flow.current import running
from purpose_agent.flow.plan import NodeSpec, async_variant


class Runner(Protocol):
    """What a timeout needs of the driver running the node (engine.Runner)."""

    writing: bool  # a store write is under way: the timeout waits for its end
    alarm: Alarm | None

    def abandon(self, ctx: NodeContext) -> None: ...


class _TimeUp(ControlSignal):
    """The SIGALRM of a node's timeout, on its way out of the node's code."""


class Alarm:
    """A node attempt's SIGALRM timeout. It raises in the node's code, except while the
    engine writes to the store (``runner.writing``): then it is deferred, and raised by
    :meth:`deliver` once the write has returned. So a timeout never interrupts a commit
    half-way (a batch re-sent after it landed, a transaction left open)."""

    __slots__ = ("armed", "deferred", "node", "runner")

    def __init__(self, runner: Runner, node: str) -> None:
        self.runner, self.node = runner, node
        self.armed, self.deferred = True, False

    def on_signal(self, _signum: int, _frame: Any) -> None:
        if not self.armed:
            return
        if self.runner.writing:
            self.deferred = True
            return
        self.armed = False
        raise _TimeUp(self.node)  # a BaseException: the node's own handlers miss it

    def deliver(self) -> None:
        if self.deferred and self.armed:
            self.armed = self.deferred = False
            raise _TimeUp(self.node)


def node_timeout(node: str, seconds: float) -> NodeTimeout:
    return NodeTimeout(f"node {node!r} ran longer than its timeout of {seconds:g}s")


def with_timeout(fn: Callable[[NodeContext], Any], ctx: NodeContext,
                 timeout: float | None, runner: Runner) -> Any:
    """Call a sync node, enforcing ``timeout``: SIGALRM on the main thread (deferred while
    the engine writes to the store), else a worker thread whose attempt is abandoned when
    time runs out: it may run on, but it can never buffer an event or commit again."""
    token = running.set(ctx)
    try:
        if timeout is None:
            return fn(ctx)
        if threading.current_thread() is threading.main_thread():
            alarm = Alarm(runner, ctx.node)
            previous = signal.signal(signal.SIGALRM, alarm.on_signal)
            runner.alarm = alarm
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    return fn(ctx)
                finally:
                    # First: from here on the alarm raises nothing (it raised at most once).
                    alarm.armed = False
            except _TimeUp:
                raise node_timeout(ctx.node, timeout) from None
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                runner.alarm = None
                signal.signal(signal.SIGALRM, previous)
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="purpose-node")
        future = pool.submit(contextvars.copy_context().run, fn, ctx)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            runner.abandon(ctx)  # the attempt keeps running, but can write nothing more
            raise node_timeout(ctx.node, timeout) from None
        finally:
            pool.shutdown(wait=False)
    finally:
        running.reset(token)


def call_node(spec: NodeSpec, ctx: NodeContext, runner: Runner) -> Any:
    """Call a node from the sync driver (an async node on an event loop of its own)."""
    if spec.is_async:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(acall_node(spec, ctx, runner))
        raise RuntimeError(f"node {spec.name!r} is async and an event loop is running; "
                           "use `await flow.arun(...)` / `await flow.aresume(...)`")
    return with_timeout(spec.fn, ctx, spec.timeout, runner)


async def acall_node(spec: NodeSpec, ctx: NodeContext, runner: Runner) -> Any:
    """Call a node from the async driver: an async node (or a node object's ``acall``) is
    awaited, a sync node called as :func:`call_node` would."""
    token = running.set(ctx)
    try:
        afn = spec.fn if spec.is_async else async_variant(spec.fn)
        if afn is not None:
            coro = afn(ctx)
            if spec.timeout is None:
                return await coro
            try:
                return await asyncio.wait_for(coro, spec.timeout)
            except TimeoutError:
                raise node_timeout(spec.name, spec.timeout) from None
        return with_timeout(spec.fn, ctx, spec.timeout, runner)
    finally:
        running.reset(token)


__all__ = ["Alarm", "acall_node", "call_node", "node_timeout", "with_timeout"]
