"""Fan-out inside a node: ``ctx.map(fn, items, max_concurrency=N)`` runs ``fn(item)`` as
one durable step per item, several at a time, results in input order (the steps run by
flow/parallel.py, as an Agent's parallel tool calls are); and ``ctx.run_child(flow,
data)`` runs a child run (see flow/children.py).

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

from purpose_agent.flow.parallel import StepCall, acall_steps, call_steps
from purpose_agent.flow.signals import Park
from purpose_agent.flow.steps import DurableSteps
from purpose_agent.runtime.checkpoint import validate_run_id
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.journal import StepRecord

if TYPE_CHECKING:
    from purpose_agent.flow.children import ChildFlow


class FanOut(DurableSteps):
    """:meth:`map` and :meth:`run_child` of :class:`~.context.NodeContext` (mixed in)."""

    if TYPE_CHECKING:  # NodeContext's own method
        def _unwrapped(self, fn: Callable[..., Any]) -> tuple[Callable[..., Any], Any]: ...

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *,
            max_concurrency: int = 4, name: str | None = None) -> Any:
        """Run ``fn(item)`` for each item as a durable step of its own (named ``name``,
        default ``fn``'s name; a ``@step`` function keeps its options), at most
        ``max_concurrency`` at a time, and return the results in the order of ``items``.

        Each result is committed as soon as its call returns: a crash part way through
        re-runs only the items whose result was not committed. The first exception (in
        input order) is raised once every item started has finished; a control signal
        (a pause, a lost lease, the node's timeout) at once. A sync ``fn`` runs in worker
        threads; an ``async`` one is awaited (``await ctx.map(...)``). The steps run as
        :func:`~.parallel.call_steps` runs them.
        """
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) \
                or max_concurrency < 1:
            raise ValueError(f"ctx.map: max_concurrency must be a whole number >= 1, got "
                             f"{max_concurrency!r}")
        self._check_live()
        func, opts = self._unwrapped(fn)
        step_name = name or getattr(fn, "__qualname__", None) or "map"
        calls = [StepCall(step_name, func, (item,), {}, opts) for item in items]
        if inspect.iscoroutinefunction(func):
            return acall_steps(self, calls, max_concurrency=max_concurrency)
        return call_steps(self, calls, max_concurrency=max_concurrency)

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
        ``async`` node, await it. Several children at once: :meth:`child` and
        :meth:`gather`.
        """
        handle = self.child(flow, data, run_id=run_id)
        if self._is_async:
            return _first(self.gather(handle))
        return self.gather(handle)[0]

    def child(self, flow: ChildFlow, data: dict[str, Any] | None = None, *,
              run_id: str | None = None) -> ChildHandle:
        """Journal a child run of ``flow`` (its id, as :meth:`run_child` does) without
        starting it yet: hand the handles to :meth:`gather`, which runs them together."""
        from purpose_agent.flow import children

        self._check_live()
        index = self._next_index(flow.name, "child")
        rec = self._by_index.get(index)
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
        return ChildHandle(flow, rec, data)

    def gather(self, *handles: ChildHandle, max_concurrency: int | None = None) -> Any:
        """Run the children of ``handles`` (from :meth:`child`) together and return their
        final data, in the order given. In-process they run in threads, at most
        ``max_concurrency`` at a time (default: all); from a queue they are all enqueued
        (workers run them in parallel). While any has not finished, this run parks until
        all have ended. In an ``async`` node, await it."""
        from purpose_agent.flow import children

        self._check_live()
        cp = self._runner.cp
        todo = [h for h in handles if h.record.status != "done"]
        self.replayed += len(handles) - len(todo)

        def advance(h: ChildHandle) -> Any:
            parent = {"run_id": self.run_id, "step": self._execution, "key": h.record.key,
                      "kind": "child"}
            return children.advance(h.flow, cp, h.run_id, h.data, parent)

        def finish(states: list[Any]) -> list[Any]:
            waiting = []
            for h, state in zip(todo, states, strict=True):
                data = children.outcome(state)
                if data is None:
                    waiting.append(h.run_id)
                    continue
                h.record.status = "done"
                h.record.result = {"run_id": h.run_id, "data": data}
                self._runner.event(EventKind.CHILD_FINISHED, self.node, child=h.run_id)
                self._runner.commit_steps([h.record])
            if waiting:
                raise self._raising(Park({"kind": "child", "run_id": waiting[0],
                                          "run_ids": waiting, "node": self.node}, None))
            return [h.record.result["data"] for h in handles]

        limit = max_concurrency or max(1, len(todo))
        if self._is_async:
            return _achildren(finish, advance, todo, limit)
        return finish(_in_threads(advance, todo, limit))


class ChildHandle:
    """A child run journaled by :meth:`FanOut.child`, for :meth:`FanOut.gather`."""

    def __init__(self, flow: ChildFlow, record: StepRecord, data: dict[str, Any] | None) -> None:
        self.flow, self.record, self.data = flow, record, data
        self.run_id: str = record.result["run_id"]

    def __repr__(self) -> str:
        return f"ChildHandle({self.run_id!r}, flow={self.flow.name!r})"


def _in_threads(fn: Callable[[Any], Any], items: list[Any], limit: int) -> list[Any]:
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(limit, len(items)),
                            thread_name_prefix="purpose-agent-child") as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        return _results([_outcome(f) for f in futures])


async def _achildren(finish: Callable[[list[Any]], list[Any]], advance: Callable[[Any], Any],
                     todo: list[Any], limit: int) -> list[Any]:
    # The children's own drivers run in threads: they may run async nodes on loops of
    # their own.
    states = await asyncio.to_thread(_in_threads, advance, todo, limit)
    return finish(states)


async def _first(results: Any) -> Any:
    return (await results)[0]


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


__all__ = ["ChildHandle", "FanOut"]
