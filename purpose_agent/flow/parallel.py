"""Several durable steps of one node at once: :func:`call_steps` (threads) and
:func:`acall_steps` (tasks), results in the order the calls were given.

Each call is a step of its own, identified, as every step, by its place in the node
execution: places are taken in the given order *before* anything runs, so a re-executed
node finds each recorded result at the same place however the calls interleaved. Each
result is committed as soon as its call returns (by the driving thread or task, never
from a worker thread), so a crash between the calls loses only the ones still running:
a resumed node replays the committed ones and runs the others again (at-most-once ones
that had started pause the run *in doubt*, as :meth:`NodeContext.step` says). Each call
is a :class:`~.steps.StepSlot`: these functions only decide where and when it runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from purpose_agent.flow.steps import DurableSteps, StepOptions, StepSlot


@dataclass(frozen=True, slots=True)
class StepCall:
    """One call of :func:`call_steps`: ``fn(*args, **kwargs)`` as the step ``name``."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: StepOptions = field(default_factory=StepOptions)


def call_steps(ctx: DurableSteps, calls: Sequence[StepCall], *,
               max_concurrency: int) -> list[Any]:
    """Run ``calls`` as durable steps, at most ``max_concurrency`` at a time in threads;
    returns their results in the order of ``calls``.

    Every call that returns has its result committed, even when another one fails; then
    the first failure (in the order of ``calls``) is raised. Inside the calls ``@step``
    functions are plain calls: each call is the step. A control signal (pause, lost
    lease, a node's timeout) stops the waiting at once; calls still running are left to
    finish in their threads, and nothing of theirs is committed."""
    slots = _begin_all(ctx, calls)
    results = [slot.result for slot in slots]
    todo = [i for i, slot in enumerate(slots) if not slot.replayed]
    if not todo:
        return results
    workers = max(1, min(max_concurrency, len(todo)))
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="purpose-step")
    failures: dict[int, Exception] = {}
    try:
        # Each call in a copy of this context: the running node is known in its thread.
        futures = {pool.submit(contextvars.copy_context().run, slots[i].attempts,
                               calls[i].fn): i for i in todo}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            try:
                value = future.result()
            except Exception as exc:
                slots[i].fail(exc)
                failures[i] = exc
                continue
            results[i] = slots[i].finish(value)
    finally:
        # Never wait here for calls still running: after a signal they are abandoned.
        pool.shutdown(wait=False, cancel_futures=True)
    if failures:
        raise failures[min(failures)]
    return results


async def acall_steps(ctx: DurableSteps, calls: Sequence[StepCall], *,
                      max_concurrency: int) -> list[Any]:
    """:func:`call_steps` on the running event loop: async functions are awaited as
    tasks, sync ones run in threads (``asyncio.to_thread``), at most
    ``max_concurrency`` at a time. Cancelling the awaiting task cancels the calls."""
    slots = _begin_all(ctx, calls)
    results = [slot.result for slot in slots]
    todo = [i for i, slot in enumerate(slots) if not slot.replayed]
    if not todo:
        return results
    limit = asyncio.Semaphore(max(1, max_concurrency))
    failures: dict[int, Exception] = {}

    async def one(i: int) -> None:
        slot = slots[i]
        async with limit:
            try:
                value = await slot.aattempts(calls[i].fn)
            except Exception as exc:
                slot.fail(exc)
                failures[i] = exc
                return
        results[i] = slot.finish(value)

    # A control signal in one call (a lost lease) cancels the others; the engine finds
    # it inside the exception group.
    async with asyncio.TaskGroup() as group:
        for i in todo:
            group.create_task(one(i))
    if failures:
        raise failures[min(failures)]
    return results


def _begin_all(ctx: DurableSteps, calls: Sequence[StepCall]) -> list[StepSlot]:
    """Every call begun, its place taken in the order given, before any runs: a call
    found in doubt stops the node before any other runs. (An at-most-once call's start
    is journaled when it runs, so one still queued is never left in doubt.)"""
    return [ctx.begin_step(call.name, call.args, call.kwargs, options=call.options)
            for call in calls]


__all__ = ["StepCall", "acall_steps", "call_steps"]
