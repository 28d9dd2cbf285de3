"""Several durable steps of one node at once: :func:`call_steps` (threads) and
:func:`acall_steps` (tasks), results in the order the calls were given.

Each call is a step of its own, identified, as every step, by its place in the node
execution: places are taken in the given order *before* anything runs, so a re-executed
node finds each recorded result at the same place however the calls interleaved. Each
result is committed as soon as its call returns (by the driving thread or task, never
from a worker thread), so a crash between the calls loses only the ones still running:
a resumed node replays the committed ones and runs the others again (at-most-once ones
pause the run *in doubt*, as :meth:`NodeContext.step` says).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from purpose_agent.flow.context import NodeContext, StepOptions
from purpose_agent.flow.current import running
from purpose_agent.runtime.journal import StepRecord


@dataclass(frozen=True, slots=True)
class StepCall:
    """One call of :func:`call_steps`: ``fn(*args, **kwargs)`` as the step ``name``."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: StepOptions = field(default_factory=StepOptions)


def call_steps(ctx: NodeContext, calls: Sequence[StepCall], *,
               max_concurrency: int) -> list[Any]:
    """Run ``calls`` as durable steps, at most ``max_concurrency`` at a time in threads;
    returns their results in the order of ``calls``.

    Every call that returns has its result committed, even when another one fails; then
    the first failure (in the order of ``calls``) is raised. Inside the calls ``@step``
    functions are plain calls: each call is the step. A control signal (pause, lost
    lease, a node's timeout) stops the waiting at once; calls still running are left to
    finish in their threads, and nothing of theirs is committed."""
    results, todo = _begin_all(ctx, calls)
    if not todo:
        return results
    workers = max(1, min(max_concurrency, len(todo)))
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="purpose-step")
    failures: dict[int, Exception] = {}
    try:
        futures = {pool.submit(contextvars.copy_context().run, _attempts, ctx, calls[i]): i
                   for i, _rec in todo}
        records = dict(todo)
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            try:
                value = future.result()
            except Exception as exc:
                ctx._failed(records[i], exc, calls[i].options)
                failures[i] = exc
                continue
            results[i] = ctx._finish(records[i], value, calls[i].options)
    finally:
        # Never wait here for calls still running: after a signal they are abandoned.
        pool.shutdown(wait=False, cancel_futures=True)
    if failures:
        raise failures[min(failures)]
    return results


async def acall_steps(ctx: NodeContext, calls: Sequence[StepCall], *,
                      max_concurrency: int) -> list[Any]:
    """:func:`call_steps` on the running event loop: async functions are awaited as
    tasks, sync ones run in threads (``asyncio.to_thread``), at most
    ``max_concurrency`` at a time. Cancelling the awaiting task cancels the calls."""
    results, todo = _begin_all(ctx, calls)
    if not todo:
        return results
    limit = asyncio.Semaphore(max(1, max_concurrency))
    failures: dict[int, Exception] = {}

    async def one(i: int, rec: StepRecord) -> None:
        call = calls[i]
        async with limit:
            try:
                value = await _aattempts(ctx, call)
            except Exception as exc:
                ctx._failed(rec, exc, call.options)
                failures[i] = exc
                return
        results[i] = ctx._finish(rec, value, call.options)

    # A control signal in one call (a lost lease) cancels the others; the engine finds
    # it inside the exception group.
    async with asyncio.TaskGroup() as group:
        for i, rec in todo:
            group.create_task(one(i, rec))
    if failures:
        raise failures[min(failures)]
    return results


def _begin_all(ctx: NodeContext, calls: Sequence[StepCall]
               ) -> tuple[list[Any], list[tuple[int, StepRecord]]]:
    """(results so far, [(position, record) of the calls to run]): places are taken in
    order, recorded results replayed. The starts of at-most-once calls are committed
    together, only once every place was checked: a call found in doubt stops the node
    before any other at-most-once call is marked started (it would be in doubt too)."""
    results: list[Any] = [None] * len(calls)
    todo: list[tuple[int, StepRecord]] = []
    for i, call in enumerate(calls):
        rec, cached = ctx._begin(call.name, call.args, call.kwargs,
                                 replace(call.options, at_most_once=False))
        if rec is None:
            results[i] = cached
        else:
            rec.at_most_once = call.options.at_most_once
            todo.append((i, rec))
    starts = [rec for _i, rec in todo if rec.at_most_once]
    if starts:
        ctx._runner.commit_steps(starts)
    return results, todo


def _attempts(ctx: NodeContext, call: StepCall) -> Any:
    """A call with its retries, in a worker thread, outside the node's step numbering."""
    running.set(None)  # this thread's own copy of the context: a @step inside is plain
    opts = call.options
    for attempt in range(opts.retries + 1):
        ctx._check_live()
        try:
            return call.fn(*call.args, **call.kwargs)
        except Exception:
            if attempt >= opts.retries:
                raise
            time.sleep(opts.backoff * 2**attempt)
    raise AssertionError("unreachable")


async def _aattempts(ctx: NodeContext, call: StepCall) -> Any:
    token = running.set(None)  # the task's own context: a @step inside is plain
    try:
        opts = call.options
        for attempt in range(opts.retries + 1):
            ctx._check_live()
            try:
                if inspect.iscoroutinefunction(call.fn):
                    return await call.fn(*call.args, **call.kwargs)
                return await asyncio.to_thread(call.fn, *call.args, **call.kwargs)
            except Exception:
                if attempt >= opts.retries:
                    raise
                await asyncio.sleep(opts.backoff * 2**attempt)
        raise AssertionError("unreachable")
    finally:
        running.reset(token)


__all__ = ["StepCall", "acall_steps", "call_steps"]
