"""Durable waits a node makes: timers (``ctx.sleep``), messages from outside
(``ctx.wait_for``), and the key a step hands to an external API (``ctx.idempotency_key``).

A wait's end is journaled before the wait begins: a timer's wake-up time, a message
wait's deadline (on the store's clock). A short wait is waited out in the process that
runs the node; a longer one *parks* the run (:class:`~.signals.Park`): the run holds no
process and no worker slot until whatever ends the wait (its time, a message, a person
calling ``resume``) puts it back to work, and the node then re-executes with its
completed steps replayed, reaching the same wait, which now returns at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from purpose_agent.errors import FlowDefinitionError, WaitTimeout
from purpose_agent.flow.signals import Park
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.checkpoint._messages import check_topic
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.journal import StepRecord
from purpose_agent.runtime.redact import summarize
from purpose_agent.runtime.state import RunState

if TYPE_CHECKING:
    from purpose_agent.flow.signals import InDoubt, Pause

# The durable step running in this thread or task, as (its context, its key, its name).
current_step: ContextVar[tuple[object, str, str] | None] = ContextVar("purpose_agent_step",
                                                                      default=None)
POLL = 0.2  # seconds between looks at the mailbox while a short wait_for is waited out


async def _ready(value: Any = None) -> Any:
    return value


async def _raise(exc: BaseException) -> Any:
    raise exc


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or value < 0 or math.isinf(value):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class Driver(Protocol):
    """What a node's waits need of the engine driving it (flow/engine.py's Runner)."""

    state: RunState
    cp: BaseCheckpointer
    inline_wait: float  # waits up to this long happen in-process; longer ones park the run

    def clock(self) -> float: ...
    def event(self, kind: EventKind, node: str | None = None, /, **payload: Any) -> None: ...
    def commit_steps(self, steps: list[StepRecord]) -> None: ...


class ContextParts:
    """What the mixins of :class:`~.context.NodeContext` use of it (its own fields)."""

    if TYPE_CHECKING:  # NodeContext's own
        _runner: Driver
        node: str
        run_id: str
        replayed: int
        _execution: int
        _by_index: dict[int, StepRecord]
        _is_async: bool

        def _check_live(self) -> None: ...
        def _next_index(self, name: str, kind: str) -> int: ...
        def _raising(self, signal: Pause | InDoubt | Park) -> Pause | InDoubt | Park: ...


class DurableWaits(ContextParts):
    """The waits of :class:`~.context.NodeContext` (mixed into it)."""

    def sleep(self, seconds: float) -> Any:
        """Sleep durably for ``seconds``: the wake-up time (the store's clock + seconds)
        is journaled first, so a run that crashes or parks meanwhile wakes at that time,
        not later by the downtime, and a re-executed node does not sleep again once it
        has passed. A sleep up to the flow's ``inline_wait`` is waited out here; a longer
        one parks the run (see the module docstring). In an ``async`` node, await it."""
        seconds = _seconds(seconds, "ctx.sleep's duration")
        return self._timer(lambda now: now + seconds)

    def sleep_until(self, when: datetime) -> Any:
        """:meth:`sleep` until ``when`` (a timezone-aware datetime)."""
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise ValueError(f"ctx.sleep_until takes a timezone-aware datetime (e.g. "
                             f"datetime.now(timezone.utc) + timedelta(hours=1)), got {when!r}")
        stamp = when.timestamp()
        return self._timer(lambda now: stamp)

    def _timer(self, wake: Any) -> Any:
        self._check_live()
        index = self._next_index("sleep", "sleep")
        rec = self._by_index.get(index)
        if rec is None:
            wake_at = float(wake(self._runner.clock()))
            rec = StepRecord(key=f"{self._execution}/{self.node}/sleep/#{index}",
                             step=self._execution, node=self.node, index=index, name="sleep",
                             kind="sleep", status="done", result={"wake_at": wake_at})
            self._runner.event(EventKind.TIMER_SET, self.node, wake_at=wake_at)
            self._runner.commit_steps([rec])
            self._by_index[index] = rec
        wake_at = float(rec.result["wake_at"])
        left = self._left(wake_at, {"kind": "sleep", "wake_at": wake_at})
        if self._is_async:
            return asyncio.sleep(left) if left else _ready()
        if left:
            time.sleep(left)
        return None

    def _left(self, wake_at: float, pending: dict[str, Any]) -> float:
        """Seconds still to wait for ``wake_at`` here (0: it has passed); raises Park
        when that is longer than this driver waits in-process."""
        left = wake_at - self._runner.clock()
        if left <= 0:
            return 0.0
        if left <= self._runner.inline_wait:
            return left
        raise self._raising(Park({**pending, "node": self.node}, wake_at))

    # ── messages ─────────────────────────────────────────────────────────────────
    def wait_for(self, topic: str, timeout: float | None = None) -> Any:
        """Wait for a message on ``topic`` sent to this run (``flow.send`` or
        ``purpose-agent send``, from any process) and return its payload.

        Messages sent before the wait are kept, in order: each ``wait_for`` of a topic
        takes the oldest one nobody has received, and each message is delivered to
        exactly one ``wait_for`` (a re-executed node gets the same message again, from
        the journal). With ``timeout`` (seconds), the deadline is journaled when the wait
        starts; reaching it raises :class:`~purpose_agent.errors.WaitTimeout` (also
        journaled: a re-executed node times out again, at once). Without a message the
        run parks until one arrives (a deadline within the flow's ``inline_wait`` is
        waited out here, looking for the message). In an ``async`` node, await it.
        """
        self._check_live()
        check_topic(topic)
        if timeout is not None:
            timeout = _seconds(timeout, "wait_for's timeout")
        index = self._next_index(topic, "wait")
        rec = self._by_index.get(index)
        if rec is None:
            now = self._runner.clock()
            rec = StepRecord(key=f"{self._execution}/{self.node}/wait/#{index}",
                             step=self._execution, node=self.node, index=index, name=topic,
                             kind="wait", status="waiting",
                             result={"deadline": None if timeout is None else now + timeout})
        if self._is_async:
            return self._await_message(rec)
        while True:
            outcome = self._look(rec)
            if not isinstance(outcome, float):
                return _outcome(outcome)
            time.sleep(outcome)

    async def _await_message(self, rec: StepRecord) -> Any:
        while True:
            outcome = self._look(rec)
            if not isinstance(outcome, float):
                return _outcome(outcome)
            await asyncio.sleep(outcome)

    def _look(self, rec: StepRecord) -> dict[str, Any] | float:
        """One look for the message: the journaled outcome (a payload or a timeout), or
        seconds to wait before the next look; raises Park to wait without a process."""
        self._check_live()
        if rec.status == "done":
            self.replayed += 1
            return dict(rec.result)
        msg = self._runner.cp.receive_message(self.run_id, rec.name, rec.key)
        deadline = rec.result["deadline"]
        if msg is not None:
            rec.status, rec.result = "done", {"message": msg.seq, "payload": msg.payload}
            self._runner.event(EventKind.MESSAGE_RECEIVED, self.node, topic=rec.name,
                               message=msg.seq, payload=summarize(msg.payload))
        elif deadline is not None and self._runner.clock() >= deadline:
            rec.status, rec.result = "done", {"timeout": True, "deadline": deadline}
            self._runner.event(EventKind.MESSAGE_TIMEOUT, self.node, topic=rec.name,
                               deadline=deadline)
        if rec.status == "done" or rec.index not in self._by_index:
            # Journal the deadline (or the outcome) before waiting on it.
            self._runner.commit_steps([rec])
            self._by_index[rec.index] = rec
        if rec.status == "done":
            return dict(rec.result)
        pending = {"kind": "message", "topic": rec.name, "deadline": deadline}
        if deadline is None:
            raise self._raising(Park({**pending, "node": self.node}, None))
        return min(POLL, self._left(deadline, pending)) or POLL

    # ── idempotency ──────────────────────────────────────────────────────────────
    def idempotency_key(self) -> str:
        """A key for the durable step running now, the same every time that step runs
        again (a retry, a re-execution after a crash): ``<run id>:<step key>``. Hand it to
        an external API that accepts one (Stripe's ``Idempotency-Key``, …) so a step run
        twice takes effect once. Only inside a step (``ctx.step`` or ``@step``)."""
        found = current_step.get()
        if found is None or found[0] is not self:
            raise FlowDefinitionError(
                "ctx.idempotency_key() is for a durable step's function: call it inside a "
                "function run by ctx.step(...) or decorated with @step")
        return f"{self.run_id}:{found[1]}"


def _outcome(result: dict[str, Any]) -> Any:
    if result.get("timeout"):
        raise WaitTimeout(f"no message arrived before the wait's deadline "
                          f"({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(result['deadline']))} "
                          "UTC)")
    return result["payload"]


__all__ = ["Driver", "DurableWaits", "current_step"]
