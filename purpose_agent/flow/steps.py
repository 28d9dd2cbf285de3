"""Durable steps of a node: how one is begun, run, finished or failed.

The package's step API (for :meth:`NodeContext.call`, flow/parallel.py, ``ctx.map`` and
the Agent) is :meth:`DurableSteps.begin_step` and the :class:`StepSlot` it returns:

    slot = ctx.begin_step(name, args, kwargs, options=opts)
    if slot.replayed:
        return slot.result              # recorded by an earlier attempt: nothing runs
    try:
        value = slot.attempts(fn)       # or await slot.aattempts(fn); any thread or task
    except Exception as exc:
        slot.fail(exc)                  # the step.failed event
        raise
    return slot.finish(value)           # committed before this returns

``begin_step`` takes the step's place in the node execution and checks it against the
journal (a replay, a retry, or an at-most-once call in doubt, raised here); it runs
nothing and commits nothing, so a caller may begin several steps, in order, before any of
them runs. ``attempts`` journals an at-most-once call's start before each attempt, runs
the attempts with their durable waits between them, and leaves the outcome to
``finish`` / ``fail``, which the caller makes from the thread that drives the node.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from purpose_agent.flow.plan import RetryPolicy
from purpose_agent.flow.signals import InDoubt
from purpose_agent.flow.waiting import ContextParts, current_step
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.journal import StepRecord
from purpose_agent.runtime.redact import redact, summarize


@dataclass(frozen=True, slots=True)
class StepOptions:
    """How a durable step runs (see :func:`~.context.step`); given to
    :meth:`DurableSteps.call`."""

    retries: int = 0
    at_most_once: bool = False
    backoff: float = 0.1
    events: bool = True  # False: the step records its own events (an Agent's model call)
    # Extra fields of its step.started event (an Agent's tool call id, for telemetry).
    labels: tuple[tuple[str, str], ...] = ()

    retry: RetryPolicy | None = None  # when given, instead of retries / backoff

    def policy(self) -> RetryPolicy:
        return self.retry or RetryPolicy.of(self.retries, self.backoff)


def call_text(args: tuple[Any, ...], kwargs: dict[str, Any], limit: int = 200) -> str:
    """How a step call is shown in events: ``1, "x", key=[2]`` (redacted, shortened)."""
    def short(value: Any) -> str:
        text = jsonutil.canonical(value)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    masked = redact({"args": list(args), "kwargs": kwargs})
    parts = [short(a) for a in masked["args"]]
    parts += [f"{k}={short(v)}" for k, v in masked["kwargs"].items()]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def args_digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A digest of a step call's arguments (the previous release keyed steps by it)."""
    return hashlib.sha256(jsonutil.canonical([args, kwargs]).encode()).hexdigest()[:16]


def recorded_digest(rec: StepRecord) -> str | None:
    """The arguments' digest of a journaled step: recorded with it, or part of the key
    the previous release gave it (``{exec}/{node}/{name}/{digest}/{occurrence}``)."""
    if rec.args_digest is not None:
        return rec.args_digest
    parts = rec.key.rsplit("/", 2)
    if (len(parts) == 3 and parts[2].isdigit() and len(parts[1]) == 16
            and all(c in "0123456789abcdef" for c in parts[1])):
        return parts[1]
    return None


class StepSlot:
    """A durable step begun by :meth:`DurableSteps.begin_step`.

    ``replayed``: its result was recorded (``result``); nothing is to run. Otherwise run
    it with :meth:`attempts` (or :meth:`aattempts`), then :meth:`finish` with the value,
    or :meth:`fail` with the exception, exactly once.
    """

    __slots__ = ("_ctx", "_start_pending", "args", "kwargs", "options", "record", "result")

    def __init__(self, ctx: DurableSteps, record: StepRecord | None, result: Any,
                 args: tuple[Any, ...], kwargs: dict[str, Any], options: StepOptions) -> None:
        self._ctx, self.record, self.result = ctx, record, result
        self.args, self.kwargs, self.options = args, kwargs, options
        # An at-most-once call's start is journaled just before it runs (after the
        # journaled wait of a retry, if one is due first): never for a call still queued
        # behind others, which a crash must not leave in doubt.
        self._start_pending = (record is not None and options.at_most_once
                               and record.key not in ctx._backoff_until)

    @property
    def replayed(self) -> bool:
        return self.record is None

    def attempts(self, fn: Callable[..., Any]) -> Any:
        """Call ``fn(*args, **kwargs)`` (sync) with the step's retries, in this thread;
        returns its value or raises its last exception (not yet reported: :meth:`fail`).
        Inside ``fn``, ``ctx.idempotency_key()`` is this step's and ``@step`` functions
        are plain calls."""
        rec, ctx, opts = self._running()
        policy = opts.policy()
        while True:
            left = self._before_attempt()
            if left:
                time.sleep(left)
            ctx._check_live()
            token = current_step.set((ctx, rec.key, rec.name))
            try:
                return fn(*self.args, **self.kwargs)
            except Exception as exc:
                if not ctx._retrying(rec, exc, opts, policy):
                    raise
            finally:
                current_step.reset(token)

    async def aattempts(self, fn: Callable[..., Any]) -> Any:
        """:meth:`attempts` on the running event loop: an async ``fn`` is awaited, a sync
        one runs in a thread; the waits between attempts are awaited."""
        rec, ctx, opts = self._running()
        policy = opts.policy()
        while True:
            left = self._before_attempt()
            if left:
                await asyncio.sleep(left)
            ctx._check_live()
            token = current_step.set((ctx, rec.key, rec.name))
            try:
                if inspect.iscoroutinefunction(fn):
                    return await fn(*self.args, **self.kwargs)
                return await asyncio.to_thread(fn, *self.args, **self.kwargs)
            except Exception as exc:
                if not ctx._retrying(rec, exc, opts, policy):
                    raise
            finally:
                current_step.reset(token)

    def finish(self, value: Any) -> Any:
        """Commit ``value`` (strict JSON) as the step's result and return it as recorded
        (through JSON). The commit has landed when this returns."""
        rec, ctx, opts = self._running()
        text = jsonutil.dumps(value, f"$.steps.{rec.name}")
        rec.status, rec.result, rec.ts = "done", jsonutil.loads(text), time.time()
        rec.result_json = text
        if opts.events:
            ctx._runner.event(EventKind.STEP_COMPLETED, ctx.node, step=rec.name,
                              result=summarize(rec.result))
        ctx._runner.commit_steps([rec])
        self.result = rec.result
        return rec.result

    def fail(self, exc: Exception) -> None:
        """Report the step's failure (a ``step.failed`` event, committed with the node's
        next commit). The journal keeps the step unfinished: a re-executed node runs it
        again (an at-most-once one, started, is in doubt)."""
        rec, ctx, opts = self._running()
        if opts.events:
            ctx._runner.event(EventKind.STEP_FAILED, ctx.node, step=rec.name,
                              error=type(exc).__name__, message=summarize(str(exc), 500))

    def _running(self) -> tuple[StepRecord, DurableSteps, StepOptions]:
        if self.record is None:
            raise RuntimeError(f"step {self.result!r} was replayed: there is nothing to run")
        return self.record, self._ctx, self.options

    def _before_attempt(self) -> float:
        """Journal what must be before the next attempt; the seconds to wait first."""
        rec, ctx, opts = self._running()
        if self._start_pending:
            self._start_pending = False
            # Durably before the side effect: if we die inside the call, resume knows it
            # may have happened and asks a person.
            ctx._runner.commit_steps([rec])
        return ctx._backoff_left(rec, opts)

    def __repr__(self) -> str:
        name = self.record.name if self.record is not None else "replayed"
        return f"StepSlot({name!r}, replayed={self.replayed})"


class DurableSteps(ContextParts):
    """The durable steps of :class:`~.context.NodeContext` (mixed into it)."""

    if TYPE_CHECKING:  # NodeContext's own, and its waits'
        _backoff_until: dict[str, float]

        def _left(self, wake_at: float, pending: dict[str, Any]) -> float: ...

    def call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any], *, options: StepOptions) -> Any:
        """:meth:`~.context.NodeContext.step` with its options given explicitly (for
        library code such as an Agent's model and tool calls); ``fn`` is called as it is,
        never unwrapped. If ``fn`` is async, this returns an awaitable.

        Called inside the function of a step of this node (a ``@step`` helper, a
        ``ctx.step`` in a step), it is a plain call of ``fn``: the outer call is the step.
        A step of its own there would take a place on the first run and none when the
        outer step replays, shifting every place after it."""
        inside = current_step.get()
        if inside is not None and inside[0] is self:
            return fn(*args, **kwargs)
        slot = self.begin_step(name, args, kwargs, options=options)
        if inspect.iscoroutinefunction(fn):
            return _arun(slot, fn)
        if slot.replayed:
            return slot.result
        try:
            value = slot.attempts(fn)
        except Exception as exc:
            slot.fail(exc)
            raise
        return slot.finish(value)

    def begin_step(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                   options: StepOptions) -> StepSlot:
        """Take the next place of this node execution for the step ``name`` called with
        ``args`` / ``kwargs``, and check it against the journal: a recorded result is
        replayed (``slot.replayed``); an at-most-once call started and not finished
        raises :class:`~.signals.InDoubt` (the run pauses); another name at a recorded
        place raises :class:`~purpose_agent.errors.FlowChangedError`. Emits the
        ``step.started`` event of a step to run; commits nothing and runs nothing."""
        self._check_live()
        index = self._next_index(name, "step")  # the name at this place was checked
        digest = args_digest(args, kwargs)
        recorded = self._by_index.get(index)
        key = f"{self._execution}/{self.node}/{name}/#{index}"
        attempt = 1
        if recorded is not None:
            key = recorded.key  # records of the previous release have keys of their own
            if recorded.status == "done":
                self._report_args(recorded, digest, "replayed", args, kwargs)
                self.replayed += 1
                return StepSlot(self, None, recorded.result, args, kwargs, options)
            if recorded.status == "started" and recorded.at_most_once:
                self._report_args(recorded, digest, "in_doubt", args, kwargs)
                raise self._raising(InDoubt(recorded))
            self._report_args(recorded, digest, "retried", args, kwargs)
            attempt = recorded.attempt + 1
            if recorded.status == "backoff":  # a crash or a park came during the wait
                self._backoff_until[key] = float(recorded.result["wake_at"])
        rec = StepRecord(key=key, step=self._execution, node=self.node, index=index,
                         name=name, status="started", at_most_once=options.at_most_once,
                         attempt=attempt, args_digest=digest)
        if options.events:
            self._runner.event(EventKind.STEP_STARTED, self.node, **dict(options.labels),
                               step=name, attempt=attempt, args=call_text(args, kwargs))
        return StepSlot(self, rec, None, args, kwargs, options)

    def _backoff_left(self, rec: StepRecord, opts: StepOptions) -> float:
        """Before an attempt: the seconds left of the journaled wait before it (raising
        Park when the run should wait without a process); an at-most-once step's retry
        is journaled as started first."""
        wake_at = self._backoff_until.pop(rec.key, None)
        if wake_at is None:
            return 0.0
        left = self._left(wake_at, {"kind": "sleep", "wake_at": wake_at, "reason": "retry",
                                    "step": rec.name})
        if opts.at_most_once:
            self._runner.commit_steps([rec])
        return left

    def _retrying(self, rec: StepRecord, exc: Exception, opts: StepOptions,
                  policy: RetryPolicy) -> bool:
        """After a failed attempt: journal the wait before the next one (True), or
        nothing (False: the exception goes on, to :meth:`StepSlot.fail`)."""
        delay = policy.delay(rec.attempt, exc)
        if delay is None:
            return False
        wake_at = self._runner.clock() + delay
        if opts.events:
            self._runner.event(EventKind.STEP_FAILED, self.node, step=rec.name,
                               attempt=rec.attempt, error=type(exc).__name__,
                               message=summarize(str(exc), 500), retry_in=delay)
        waiting = StepRecord(key=rec.key, step=rec.step, node=rec.node, index=rec.index,
                             name=rec.name, status="backoff", at_most_once=rec.at_most_once,
                             attempt=rec.attempt, args_digest=rec.args_digest,
                             result={"wake_at": wake_at, "error": type(exc).__name__})
        self._runner.commit_steps([waiting])
        rec.attempt += 1
        self._backoff_until[rec.key] = wake_at
        return True

    def _report_args(self, recorded: StepRecord, digest: str, status: str,
                     args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Report a recorded step now called with other arguments. It is still the same
        step (its place decides): whether the change matters is for a person to judge."""
        before = recorded_digest(recorded)
        if before is None or before == digest:
            return
        self._runner.event(EventKind.STEP_ARGS_CHANGED, self.node, step=recorded.name,
                           index=recorded.index, status=status, recorded=before, now=digest,
                           args=call_text(args, kwargs))


async def _arun(slot: StepSlot, fn: Callable[..., Any]) -> Any:
    if slot.replayed:
        return slot.result
    try:
        value = await slot.aattempts(fn)
    except Exception as exc:
        slot.fail(exc)
        raise
    return slot.finish(value)


__all__ = ["DurableSteps", "StepOptions", "StepSlot", "args_digest", "call_text",
           "recorded_digest"]
