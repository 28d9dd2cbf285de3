"""What a node sees while it runs: :class:`NodeContext`, durable steps, interrupts.

Control-flow signals raised here derive from ``BaseException`` (via
:class:`~purpose_agent.errors.ControlSignal`), so a user's ``except Exception:`` around
a tool call cannot swallow a pause, an in-doubt step or a cancellation.
"""

from __future__ import annotations

import functools
import inspect
import types
import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeVar, cast, overload

from purpose_agent.errors import FlowChangedError, FlowDefinitionError
from purpose_agent.flow.current import running
from purpose_agent.flow.fanout import FanOut
from purpose_agent.flow.plan import Plan, RetryPolicy
from purpose_agent.flow.signals import Abandoned, InDoubt, Park, Pause
from purpose_agent.flow.steps import DurableSteps, StepOptions
from purpose_agent.flow.waiting import Driver, DurableWaits, current_step
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import StepRecord
from purpose_agent.runtime.live import publish_live

F = TypeVar("F", bound=Callable[..., Any])


class _Driver(Driver, Protocol):
    """What a context needs of the engine driving its node (flow/engine.py's Runner)."""

    flow: Plan

    def check_lease(self) -> None: ...
    def is_abandoned(self, ctx: NodeContext) -> bool: ...


# A decorated step's original function and options, for ``ctx.step`` to unwrap it (one
# step, not a step inside a step). Kept beside the wrapper, written only by ``@step``:
# options otherwise travel explicitly, as arguments of ``NodeContext.call``.
_decorated: weakref.WeakKeyDictionary[Callable[..., Any], tuple[Callable[..., Any], StepOptions]]
_decorated = weakref.WeakKeyDictionary()


def _unwrap(fn: Callable[..., Any]) -> tuple[Callable[..., Any], StepOptions]:
    """``fn`` as ``ctx.step`` calls it: a ``@step`` function's original (bound again if
    ``fn`` is a bound method) with its options, else ``fn`` with the default options."""
    func = getattr(fn, "__func__", fn)
    try:
        found = _decorated.get(func)
    except TypeError:  # not weakly referenceable: no decorated function
        found = None
    if found is None:
        return fn, StepOptions()
    original, opts = found
    if func is not fn:
        original = types.MethodType(original, fn.__self__)  # type: ignore[attr-defined]
    return original, opts


@overload
def step(fn: F) -> F: ...
@overload
def step(*, name: str | None = None, retries: int = 0, at_most_once: bool = False,
         backoff: float = 0.1, retry: RetryPolicy | None = None) -> Callable[[F], F]: ...
def step(fn: Any = None, *, name: str | None = None, retries: int = 0,
         at_most_once: bool = False, backoff: float = 0.1,
         retry: RetryPolicy | None = None) -> Any:
    """Make a function a durable step wherever it is called inside a running node.

    Inside a run, each call is journaled: its JSON result is committed before the call
    returns, and when the node re-executes (resume after a crash, an interrupt or a
    retry) the recorded result is returned without calling the function again. A call
    is identified by its place in the node execution (name and call index), not by its
    arguments (see :meth:`NodeContext.step`). Outside a run it is a plain call.
    ``retries`` re-calls it on an exception (with exponential ``backoff`` seconds);
    ``retry=RetryPolicy(...)`` says more (attempts, wait bounds, non-retryable errors,
    ``retry_after``). The waits between attempts are durable: a crash during one
    resumes it at its journaled end, with the attempt count it had.

    Guarantee: a plain step is *at least once*: a crash after the function's effect and
    before its result is committed calls it again on resume; with an idempotent effect
    (an idempotency key, for APIs that take one) that makes it exactly once.
    ``at_most_once=True`` never calls it twice: a call whose start was journaled but
    whose result was not pauses the run *in doubt* and a person decides (resume with
    ``answer=<its result>``, or ``retry_in_doubt=True``). Use it for money and messages
    sent through APIs without idempotency keys.
    """
    def wrap(func: F) -> F:
        step_name = name or func.__qualname__
        opts = StepOptions(retries, at_most_once, backoff, retry=retry)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def astep_call(*args: Any, **kwargs: Any) -> Any:
                ctx = current_context()
                if ctx is None:
                    return await func(*args, **kwargs)
                return await ctx.call(step_name, func, args, kwargs, options=opts)

            _decorated[astep_call] = (func, opts)
            return astep_call  # type: ignore[return-value]

        @functools.wraps(func)
        def step_call(*args: Any, **kwargs: Any) -> Any:
            ctx = current_context()
            if ctx is None:
                return func(*args, **kwargs)
            return ctx.call(step_name, func, args, kwargs, options=opts)

        _decorated[step_call] = (func, opts)
        return step_call  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap


def current_context() -> NodeContext | None:
    """The context of the node running in this thread or task, if any."""
    return cast("NodeContext | None", running.get())


# What a call that takes a place in the node execution is, by the kind of its place.
_PLACE_TAKERS = {"interrupt": "ctx.interrupt", "sleep": "ctx.sleep / ctx.sleep_until",
                 "wait": "ctx.wait_for", "child": "ctx.run_child / ctx.child",
                 "step": "ctx.map (durable steps at once)"}


class NodeContext(FanOut, DurableSteps, DurableWaits):
    """The handle a node gets: run data, durable steps, interrupts, progress events.

    Attributes (read them, do not assign them):

    ``data``
        The run data as this node execution sees it, a read-only mapping. A node changes
        the data only by returning a dict (merged by the flow's reducers).
    ``run_id``
        The id of the run this node executes in.
    ``node``
        The name of this node.
    ``attempt``
        1 for the first attempt of this node execution, 2, 3 … for its retries
        (``@flow.node(retries=...)``); a resume after a failure starts again at 1.
    ``execution``
        The number of this node execution in the run (1 for the run's first).
    ``replayed``
        How many durable steps of this attempt so far were answered from the journal
        (recorded by an earlier attempt, a crashed process or before a pause) instead of
        running.

    Methods: :meth:`step` (a durable step), :meth:`interrupt` (ask a person, pausing the
    run), :meth:`emit` (a progress event), :meth:`sleep` / :meth:`sleep_until` (durable
    timers), :meth:`wait_for` (a message from outside), :meth:`idempotency_key` (inside
    a step), :meth:`map` (durable steps in parallel). For library code (an Agent):
    :meth:`call` (a step with explicit options) and :meth:`begin_step` (a step's parts,
    see :mod:`purpose_agent.flow.steps`).
    """

    _runner: _Driver

    def __init__(self, runner: _Driver, node: str, attempt: int, execution: int,
                 records: list[StepRecord], *, is_async: bool = False) -> None:
        self._runner = runner
        self.node = node
        self.attempt = attempt
        self.run_id = runner.state.run_id
        self.data: Mapping[str, Any] = MappingProxyType(runner.state.data)
        self._execution = execution
        # A step is its place in the node execution, never its arguments (DESIGN 1b).
        self._by_index = {rec.index: rec for rec in records}
        self._index = 0
        # The pause or in-doubt signal raised in this execution, if any: once raised, the
        # run pauses whatever the node's code does next (DESIGN 1c).
        self._pause: Pause | InDoubt | Park | None = None
        self._pause_swallowed = False  # the node went on after the signal was raised
        self.replayed = 0  # steps answered from the journal in this attempt
        self._is_async = is_async  # waits return awaitables
        # Step key -> the journaled end of the wait before its next attempt.
        self._backoff_until: dict[str, float] = {}

    # ── durable steps ────────────────────────────────────────────────────────────
    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as a durable step named ``name``.

        The result (strict JSON) is committed before this returns; when the node
        re-executes, the recorded result is returned and ``fn`` is not called. If ``fn``
        is async, this returns an awaitable.

        A step is identified by its place in the node execution (its name and call
        index), never by its arguments: a re-executed node gets the recorded result even
        if it now passes other arguments (a timestamp, a fresh uuid); the change is
        reported as a ``step.args_changed`` event. Two calls with the same name and
        arguments in one node are two steps. Another step name at a recorded place
        raises :class:`~purpose_agent.errors.FlowChangedError`.

        Guarantee: a plain step is *at least once*: a crash after ``fn``'s effect and
        before its result is committed runs it again on resume. Make its effect
        idempotent (an idempotency key, for APIs that take one) and it is exactly once.
        A function marked ``@step(at_most_once=True)`` never runs twice: if the crash
        came mid-call, the run pauses *in doubt* and a person decides. A ``@step``
        function given here is this one step (named ``name``, with its decorator's
        options), not a step inside a step.
        """
        func, opts = _unwrap(fn)
        return self.call(name, func, args, kwargs, options=opts)

    def _next_index(self, name: str, kind: str) -> int:
        inside = current_step.get()
        if inside is not None and inside[0] is self:
            # A step's function runs on the first run and not when the step replays: a
            # place taken in it would shift every place after it on the replay.
            raise FlowDefinitionError(
                f"{_PLACE_TAKERS[kind]} was called inside the function of step "
                f"{inside[2]!r} (node {self.node!r}): it takes a place in the node's "
                "journal, which the step, replayed from the journal, would not take again. "
                "Call it in the node itself, before or after the step")
        index = self._index
        self._index += 1
        recorded = self._by_index.get(index)
        if recorded is not None and (recorded.name != name or recorded.kind != kind):
            raise FlowChangedError(
                f"node {self.node!r} changed since run {self.run_id!r} was journaled: call "
                f"#{index + 1} was {recorded.kind} {recorded.name!r}, the code now makes "
                f"{kind} {name!r}; no recorded result was replayed. Finish or fork the run "
                "with the code it started with, or start a new run"
            )
        return index

    # ── human in the loop ────────────────────────────────────────────────────────
    def interrupt(self, payload: Any = None) -> Any:
        """Ask a person. The first time, the run pauses (PAUSED, ``payload`` visible in
        the state and a ``hitl.request`` event) and control returns to the caller; when
        it is resumed with ``answer=...``, the node re-executes with its completed steps
        replayed from the journal, and this returns the answer. Several interrupts in a
        node are matched by order.
        """
        self._check_live()
        # As deep as the journal holds it (in the pending request of the run's header,
        # spliced into a commit's delta), so the pause's commit cannot refuse it later.
        jsonutil.check(payload, "$.interrupt", depth=3)
        index = self._next_index("interrupt", "interrupt")
        recorded = self._by_index.get(index)
        if recorded is not None and recorded.status == "done":
            return recorded.result
        key = f"{self._execution}/{self.node}/interrupt/{index}"
        raise self._raising(Pause(StepRecord(
            key=key, step=self._execution, node=self.node, index=index, name="interrupt",
            kind="interrupt", status="waiting", result=payload)))

    def emit(self, message: str, **payload: Any) -> None:
        """Record a progress event (committed with the node's next commit)."""
        jsonutil.check(payload, "$.emit", depth=1)  # as deep as the event holds it
        self._runner.event(EventKind.NODE_PROGRESS, self.node, message=message, **payload)

    def record_event(self, kind: EventKind | str, **payload: Any) -> None:
        """Record an event of any kind for this node, e.g. ``model.request``.

        The event is buffered and committed, in seq order, with the node's next commit
        (a step result, a pause, the node's completion or its failure), never on its own:
        an event recorded inside a step whose result was never committed is lost with it,
        and recorded again when the step re-runs. ``payload`` must be strict JSON and is
        stored as given: redact secrets before calling.
        """
        self._check_live()
        jsonutil.check(payload, f"$.event[{kind}]", depth=1)
        self._runner.event(EventKind(kind), self.node, **payload)

    @property
    def execution(self) -> int:
        return self._execution

    @property
    def flow_budget(self) -> Any:
        """The flow's ``budget`` (``Flow(budget=...)``), None without one."""
        return self._runner.flow.budget

    def earlier_events(self, kinds: list[str]) -> list[PAEvent]:
        """The run's events of ``kinds`` from node executions before this one (all
        committed: the same list whenever this execution re-executes), for decisions
        over the whole run such as a flow's budget. An event that does not say its
        execution (``payload["execution"]``) counts as earlier."""
        return [e for e in self._runner.cp.list_events(self.run_id, kinds=kinds)
                if not isinstance(x := e.payload.get("execution"), int)
                or x < self._execution]

    def live(self, **item: Any) -> None:
        """Show ``item`` to the run's live readers (``flow.stream``, ``purpose-agent events
        --follow``) now: e.g. a piece of a model's streamed answer. Never journaled, never
        replayed (see :mod:`purpose_agent.runtime.live`)."""
        publish_live(self._runner.cp, self.run_id, {"node": self.node, **item})

    def _unwrapped(self, fn: Callable[..., Any]) -> tuple[Callable[..., Any], StepOptions]:
        return _unwrap(fn)

    def _raising(self, signal: Pause | InDoubt | Park) -> Pause | InDoubt | Park:
        if self._pause is None:
            self._pause = signal
        return signal

    def _check_live(self) -> None:
        if self._runner.is_abandoned(self):
            raise Abandoned(self.node)
        if self._pause is not None:
            # The node went on after its pause: no step, interrupt or event of it may
            # happen while the run waits (a swallowed approval gate must not send).
            self._pause_swallowed = True
            raise self._pause
        self._runner.check_lease()  # a driver stalled past its lease re-checks it first

    def __repr__(self) -> str:
        return (f"NodeContext(run_id={self.run_id!r}, node={self.node!r}, "
                f"attempt={self.attempt})")


__all__ = ["NodeContext", "StepOptions", "current_context", "step"]
