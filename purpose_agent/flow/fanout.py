"""Fan-out inside a node: ``ctx.map(fn, items, max_concurrency=N)`` runs ``fn(item)`` as
one durable step per item, several at a time, results in input order; and
``ctx.run_child(flow, data)`` runs a child run (see flow/children.py).

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

from purpose_agent.flow.signals import Park
from purpose_agent.runtime.checkpoint import validate_run_id
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.journal import StepRecord

if TYPE_CHECKING:
    from purpose_agent.flow.children import ChildFlow
    from purpose_agent.flow.context import StepOptions, _Driver
    from purpose_agent.flow.signals import InDoubt, Pause


class FanOut:
    """:meth:`map` and :meth:`run_child` of :class:`~.context.NodeContext` (mixed in)."""

    if TYPE_CHECKING:  # NodeContext's own
        _runner: _Driver
        node: str
        run_id: str
        replayed: int
        _execution: int
        _by_index: dict[int, StepRecord]
        _is_async: bool

        def _raising(self, signal: Pause | InDoubt | Park) -> Pause | InDoubt | Park: ...
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


    def run_child(self, flow: ChildFlow, data: dict[str, Any] | None = None, *,
                  run_id: str | None = None) -> Any:
        """Run ``flow`` as a child run with ``data`` and return its final data.

        The child's id (``run_id``, default ``<this run>.c<execution>-<index>``) is
        journaled before the child starts, so a crash never starts a second one: the
        re-executed node finds the child where it is. Run in-process, the child runs
        here; if it pauses, this run parks until it has finished and this run is
        resumed. From a queue, the child is enqueued on this run's queue and this run
        waits on its queue until the child ends. A failed child raises ``RunFailed``
        here (this node fails, or retries); a cancelled one ``RunStateError``. In an
        ``async`` node, await it.
        """
        from purpose_agent.flow import children

        self._check_live()
        index = self._next_index(flow.name, "child")
        rec = self._by_index.get(index)
        if rec is not None and rec.status == "done":
            self.replayed += 1
            return rec.result["data"] if not self._is_async else _ready(rec.result["data"])
        if rec is None:
            child_id = validate_run_id(run_id or children.child_run_id(
                self.run_id, self._execution, index))
            rec = StepRecord(key=f"{self._execution}/{self.node}/child/#{index}",
                             step=self._execution, node=self.node, index=index,
                             name=flow.name, kind="child", status="waiting",
                             result={"run_id": child_id})
            self._runner.event(EventKind.CHILD_STARTED, self.node, child=child_id,
                               flow=flow.name)
            self._runner.commit_steps([rec])
            self._by_index[index] = rec
        parent = {"run_id": self.run_id, "step": self._execution, "key": rec.key,
                  "kind": "child"}
        child_id = rec.result["run_id"]

        def finish(state: Any) -> Any:
            data = children.outcome(state)
            if data is None:
                raise self._raising(Park({"kind": "child", "run_id": child_id,
                                          "node": self.node}, None))
            rec.status, rec.result = "done", {"run_id": child_id, "data": data}
            self._runner.event(EventKind.CHILD_FINISHED, self.node, child=child_id)
            self._runner.commit_steps([rec])
            return data

        if self._is_async:
            return _achild(finish, children.advance, flow, self._runner.cp, child_id, data,
                           parent)
        return finish(children.advance(flow, self._runner.cp, child_id, data, parent))


async def _ready(value: Any) -> Any:
    return value


async def _achild(finish: Callable[[Any], Any], advance: Callable[..., Any],
                  *args: Any) -> Any:
    # The child's own driver runs in a thread: it may run async nodes on a loop of its own.
    state = await asyncio.to_thread(contextvars.copy_context().run, advance, *args)
    return finish(state)


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
