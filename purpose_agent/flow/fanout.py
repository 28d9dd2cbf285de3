"""Fan-out inside a node: ``ctx.map(fn, items, max_concurrency=N)`` runs ``fn(item)`` as
one durable step per item, several at a time, results in input order.

Each item's step has its own place in the node execution, reserved in input order before
any of them starts, so the journal identifies every item the same way whatever order
they finish in: when the node re-executes (a crash, a retry, a resume), the items whose
result was committed replay it, and only the others run again.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from purpose_agent.flow.context import StepOptions


class FanOut:
    """:meth:`map` of :class:`~.context.NodeContext` (mixed into it)."""

    if TYPE_CHECKING:  # NodeContext's own
        def _next_index(self, name: str, kind: str) -> int: ...
        def _check_live(self) -> None: ...
        def call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], *, options: StepOptions,
                 index: int | None = None) -> Any: ...

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *,
            max_concurrency: int = 4, name: str | None = None) -> Any:
        """Run ``fn(item)`` for each item as a durable step of its own (named ``name``,
        default ``fn``'s name; a ``@step`` function keeps its options), at most
        ``max_concurrency`` at a time, and return the results in the order of ``items``.

        Each result is committed as soon as its call returns: a crash part way through
        re-runs only the items whose result was not committed. The first exception (in
        input order) is raised once every item started has finished. A sync ``fn`` runs
        in worker threads; an ``async`` one is awaited (``await ctx.map(...)``).
        """
        from purpose_agent.flow.context import _unwrap

        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) \
                or max_concurrency < 1:
            raise ValueError(f"ctx.map: max_concurrency must be a whole number >= 1, got "
                             f"{max_concurrency!r}")
        self._check_live()
        func, opts = _unwrap(fn)
        step_name = name or getattr(fn, "__qualname__", None) or "map"
        batch = list(items)
        places = [self._next_index(step_name, "step") for _ in batch]

        def one(i: int) -> Any:
            return self.call(step_name, func, (batch[i],), {}, options=opts, index=places[i])

        if inspect.iscoroutinefunction(func):
            return _gather(one, len(batch), max_concurrency)
        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(max_concurrency, len(batch)),
                                thread_name_prefix="purpose-agent-map") as pool:
            # Each call in a copy of this context: the running node and step are known
            # in the worker thread too.
            futures = [pool.submit(contextvars.copy_context().run, one, i)
                       for i in range(len(batch))]
            outcomes = [_outcome(f) for f in futures]
        return _results(outcomes)


async def _gather(one: Callable[[int], Any], count: int, limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def guarded(i: int) -> Any:
        async with gate:
            return await one(i)

    outcomes = await asyncio.gather(*(guarded(i) for i in range(count)),
                                    return_exceptions=True)
    return _results([(False, o) if isinstance(o, BaseException) else (True, o)
                     for o in outcomes])


def _outcome(future: Any) -> tuple[bool, Any]:
    try:
        return True, future.result()
    except BaseException as exc:  # re-raised by _results, a control signal first
        return False, exc


def _results(outcomes: list[tuple[bool, Any]]) -> list[Any]:
    failures = [value for ok, value in outcomes if not ok]
    # A pause, an in-doubt step or a lost lease (BaseException) wins over a plain error:
    # the engine must see it to pause or stop the run.
    for exc in failures:
        if not isinstance(exc, Exception):
            raise exc
    if failures:
        raise failures[0]
    return [value for _ok, value in outcomes]


__all__ = ["FanOut"]
