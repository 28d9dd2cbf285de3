"""The durable engine: advances one run, committing each node's completion atomically.

One core, two thin drivers. :class:`Runner` makes every decision and every store write;
``drive`` (sync) and ``adrive`` (async) only differ in how they call a node. A node's
completion — its update merged into the data, the node marked completed, the next node
chosen, its events — is one commit (DESIGN rule 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from enum import Enum
from typing import Any

from purpose_agent.errors import (
    LeaseError,
    MaxStepsExceeded,
)
from purpose_agent.flow import node_retry
from purpose_agent.flow.completion import completion, encode_update
from purpose_agent.flow.context import NodeContext, current_context
from purpose_agent.flow.leases import Heartbeat, check_lease
from purpose_agent.flow.observe import Observer, notify
from purpose_agent.flow.outcomes import STOP, Outcomes, _Outcome
from purpose_agent.flow.parking import ENDED, park, pause_for_person, wake_parent
from purpose_agent.flow.plan import NodeSpec, Plan
from purpose_agent.flow.signals import Abandoned, InDoubt, LeaseLost, Park, Pause, find_signal
from purpose_agent.flow.timeouts import Alarm, acall_node, call_node
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import (
    Commit,
    CommitResult,
    Delta,
    Lease,
    StepRecord,
)
from purpose_agent.runtime.redact import summarize, traceback_text
from purpose_agent.runtime.state import RunState, RunStatus

# Failures are logged here; like any library, nothing is printed unless the application
# configures logging (the logging HOWTO's advice: a NullHandler on the top logger).
logger = logging.getLogger("purpose_agent")
logger.addHandler(logging.NullHandler())
_FLOW_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # the engine's own frames
MIN_SNAPSHOT_BYTES = 4096
# A snapshot is written once the deltas since the last one outweigh it SNAPSHOT_RATIO
# times. For a state that grows every node (a message list) the snapshots then add up to
# ~1.5x the final state instead of ~2x, and loading replays at most twice the state's
# size in deltas (W3 in bench/compare.py: 4.5 -> 3.3 KiB on disk per 1 KB node).
SNAPSHOT_RATIO = 2


class Ending(Enum):
    """How a run ends when it has no node to execute (see :meth:`Runner.next_node`)."""

    COMPLETED = "completed"  # past its last node: commit the completion
    CANCELLED = "cancelled"  # someone asked it to stop
    MAX_STEPS = "max_steps"  # it executed as many nodes as it may: it fails
    ENDED = "ended"  # its end is committed already: nothing to do


class Runner(Outcomes):
    """Advances one run whose lease this process holds."""

    def __init__(self, flow: Plan, cp: BaseCheckpointer, state: RunState, lease: Lease,
                 *, snapshot_bytes: int = 0, reload_steps: bool = True) -> None:
        self.flow, self.cp, self.state, self.lease = flow, cp, state, lease
        self.first_seq = lease.next_seq  # the seq of the first buffered event
        self.buffer: list[PAEvent] = []
        # Held while an event is buffered or a commit made: a node attempt abandoned by
        # its timeout (in a worker thread) is marked under it, and so can never buffer
        # or commit anything once its driver has moved on.
        self._lock = threading.Lock()
        self.writing = False  # a store write is under way: a timeout waits for its end
        self.in_flight = False  # an async commit is being written: nothing else may commit
        self.alarm: Alarm | None = None  # the SIGALRM timeout of the attempt under way
        self.cancel_requested = False
        self.lease_lost = False
        self.released = False  # the lease was given back by a commit of this driver
        self.attempt = 0  # of the node being executed
        self.lease_lost_reason: str | None = None
        # When the lease was last known good: monotonic time at which its last successful
        # renewal (or its acquisition) was *sent*, so the store's expiry is no earlier
        # than this plus the lease. Past half the lease a driver asks the store before
        # starting a step (the heartbeat renews every third of it, so normally never).
        self.renewed_at = time.monotonic()
        self.recheck_after = flow.lease_ttl / 2
        self.delta_bytes = 0
        self.inline_wait = flow.inline_wait  # longer waits park the run (flow/parking.py)
        self.snapshot_bytes = snapshot_bytes
        self.reload_steps = reload_steps  # steps may be journaled for the next node
        # Node attempts given up by their timeout (still running in a worker thread):
        # anything they try to journal from then on is refused.
        self._abandoned: weakref.WeakSet[NodeContext] = weakref.WeakSet()
        self.observer: Observer | None = (flow.observer(cp, lease.owner) if flow.observer
                                          else None)

    # ── events and commits ───────────────────────────────────────────────────────
    def event(self, kind: EventKind, node: str | None = None, /, **payload: Any) -> None:
        """Buffer an event; it is committed, in seq order, with the next commit."""
        with self._lock:
            self._check_attempt()
            # One mutation (the append): a timeout raised anywhere here leaves the buffer
            # and the seqs it implies consistent.
            buffer = self.buffer
            buffer.append(PAEvent(self.state.run_id, kind, seq=self.first_seq + len(buffer),
                                  node=node, payload=payload))

    def commit(self, *, state: bool = True, delta: Delta | None = None,
               steps: list[StepRecord] | None = None, release: bool = False,
               snapshot: bool | None = None) -> None:
        """One atomic store write of the buffered events and what is given. A node's
        timeout never lands inside it: one due meanwhile is raised once it has returned."""
        with self._lock:
            commit = self._commit_of(state, delta, steps, release, snapshot)
            self.writing = True
            try:
                try:
                    result = self.cp.commit(self.state.run_id, commit)
                except LeaseError as exc:
                    raise LeaseLost(f"{exc}; the run is being advanced elsewhere now") from exc
                self._committed(commit, result)
            finally:
                self.writing = False
            if release and self.state.parent and self.state.status in ENDED:
                wake_parent(self.cp, self.state)  # a child run ended: its parent goes on
            if self.alarm is not None:
                self.alarm.deliver()

    async def acommit(self, *, state: bool = True, delta: Delta | None = None,
                      release: bool = False) -> None:
        """:meth:`commit` from the async driver, between nodes: the event loop runs other
        tasks while the commit is made durable (see BaseCheckpointer.acommit)."""
        with self._lock:
            commit = self._commit_of(state, delta, None, release, None)
            self.in_flight = True
        try:
            try:
                result = await self.cp.acommit(self.state.run_id, commit)
            except LeaseError as exc:
                raise LeaseLost(f"{exc}; the run is being advanced elsewhere now") from exc
            with self._lock:
                self._committed(commit, result)
        finally:
            self.in_flight = False
        if release and self.state.parent and self.state.status in ENDED:
            wake_parent(self.cp, self.state)  # a child run ended: its parent goes on

    def _commit_of(self, state: bool, delta: Delta | None, steps: list[StepRecord] | None,
                   release: bool, snapshot: bool | None) -> Commit:
        """The commit of the buffered events and what is given (the caller holds _lock)."""
        self._check_attempt()
        if self.lease_lost:
            raise LeaseLost(self.lease_lost_reason or self.state.run_id)
        if self.in_flight:
            # Only a task a node started and left running can get here: what it would
            # commit cannot be ordered after the commit under way.
            raise RuntimeError(f"run {self.state.run_id!r}: a step or event was committed "
                               "while the run's node commit was being written; a task "
                               "started by a node must end before the node returns")
        if snapshot is None:
            snapshot = state and self.delta_bytes >= max(
                SNAPSHOT_RATIO * self.snapshot_bytes, MIN_SNAPSHOT_BYTES)
        return Commit(events=list(self.buffer), state=self.state if state else None,
                      delta=delta, snapshot=snapshot, steps=steps or [],
                      fence=self.lease.fence, release=release)

    def _committed(self, commit: Commit, result: CommitResult) -> None:
        """``commit`` landed (the caller holds _lock)."""
        self.first_seq += len(commit.events)
        self.buffer = self.buffer[len(commit.events):]  # events buffered meanwhile stay
        if self.observer is not None and commit.events:
            notify(self.observer, self.state, commit.events)
        self.released = commit.release
        self.cancel_requested = result.cancel_requested
        if result.snapshot_bytes:
            self.snapshot_bytes, self.delta_bytes = result.snapshot_bytes, 0
        else:
            self.delta_bytes += result.delta_bytes

    def check_lease(self) -> None:
        """Before a node or a step starts: stop (LeaseLost) if the lease is lost, or may
        be (see :func:`~.leases.check_lease`)."""
        check_lease(self)

    def renewed(self, lease: Lease, sent: float) -> None:
        """Record a successful renewal of the lease, sent at monotonic time ``sent``."""
        self.lease = lease
        self.renewed_at = max(self.renewed_at, sent)

    def lose_lease(self, reason: str) -> None:
        """From now on this driver commits nothing and starts nothing."""
        self.lease_lost_reason = self.lease_lost_reason or reason
        self.lease_lost = True

    def _check_attempt(self) -> None:
        """Refuse the writes of a node attempt its driver has abandoned (timed out)."""
        ctx = current_context()
        if ctx is not None and ctx in self._abandoned:
            raise Abandoned(ctx.node)

    def abandon(self, ctx: NodeContext) -> None:
        """Give up ``ctx``'s attempt: returns once it writes nothing more (a commit of it
        under way has ended)."""
        with self._lock:
            self._abandoned.add(ctx)

    def is_abandoned(self, ctx: NodeContext) -> bool:
        """Whether ``ctx``'s attempt was given up (it may start nothing more)."""
        return ctx in self._abandoned

    def commit_steps(self, steps: list[StepRecord]) -> None:
        self.commit(state=False, steps=steps)

    def clock(self) -> float:
        """The store's clock: wake-up times and deadlines are judged on it."""
        return self.cp.clock()

    # ── the node loop's decisions ────────────────────────────────────────────────
    def next_node(self) -> NodeSpec | Ending:
        """The node to execute next, or how the run ends now (committed by :meth:`end`).
        A query: it writes nothing."""
        state = self.state
        if self.cancel_requested:
            return Ending.CANCELLED
        if state.current_node is None:
            return Ending.ENDED if state.status is RunStatus.COMPLETED else Ending.COMPLETED
        if state.current_step >= (state.max_steps or self.flow.max_steps):
            return Ending.MAX_STEPS
        return self.flow.node(state.current_node)

    def end(self, how: Ending) -> None:
        """Commit the run's end that :meth:`next_node` found."""
        state = self.state
        if how is Ending.CANCELLED:
            state.status = RunStatus.CANCELLED
            self.event(EventKind.RUN_CANCELLED, state.current_node)
            self.commit(release=True)
        elif how is Ending.COMPLETED:
            state.status = RunStatus.COMPLETED
            self.event(EventKind.RUN_FINISHED, None, executions=state.current_step)
            self.commit(release=True)
        elif how is Ending.MAX_STEPS:
            assert state.current_node is not None
            limit = state.max_steps or self.flow.max_steps
            self.fail(state.current_node, 1, MaxStepsExceeded(
                f"run {state.run_id!r} executed {state.current_step} nodes, its max_steps "
                f"is {limit}; raise Flow(max_steps=...) if the loop is meant to be longer"))

    def begin(self, spec: NodeSpec, attempt: int | None) -> NodeContext:
        """Start an attempt of the node (None: the one its journal says comes next)."""
        self.check_lease()
        execution = self.state.current_step + 1  # this node execution's number
        records = self.cp.load_steps(self.state.run_id, execution) if self.reload_steps else []
        self.reload_steps = False
        retry = node_retry.next_attempt(records)
        if attempt is None:
            attempt = retry.attempt if retry is not None else 1
        self.attempt = attempt
        self.state.mark_node_started(spec.name)
        self.event(EventKind.NODE_STARTED, spec.name, attempt=attempt, execution=execution)
        ctx = NodeContext(self, spec.name, attempt, execution, records, is_async=spec.is_async)
        if retry is not None and retry.attempt == attempt:
            ctx._backoff_until[retry.key] = float(retry.result["wake_at"])
        return ctx

    def hold(self, ctx: NodeContext) -> float | None:
        """Before a node attempt: seconds left of its journaled backoff (see
        flow/node_retry.py), or None when the run was parked until its end."""
        return node_retry.hold(self, ctx)

    def complete(self, spec: NodeSpec, ctx: NodeContext, update: Any) -> None:
        """Commit the node's completion: update, completed node, next node, events.

        The update is checked and encoded before anything changes, as the commit writes
        it; if the commit fails all the same, the run is what its last durable commit
        says (reloaded from the store), still at this node (DESIGN rule 1)."""
        ops, ops_json = encode_update(self.flow, self.state, spec, update)
        mark = self.mark()
        try:
            self.commit(**completion(self.flow, self.state, spec, ctx, ops, ops_json,
                                     self.event))
        except BaseException:
            self.rewind(mark, spec.name)
            raise

    async def acomplete(self, spec: NodeSpec, ctx: NodeContext, update: Any) -> None:
        """:meth:`complete` from the async driver (the loop is not held by the commit)."""
        ops, ops_json = encode_update(self.flow, self.state, spec, update)
        mark = self.mark()
        try:
            await self.acommit(**completion(self.flow, self.state, spec, ctx, ops, ops_json,
                                            self.event))
        except BaseException:
            self.rewind(mark, spec.name)
            raise

    def mark(self) -> tuple[int, int]:
        """Where the buffer stands before an operation that may fail (see rewind)."""
        return len(self.buffer), self.first_seq

    def rewind(self, mark: tuple[int, int] | None = None, node: str | None = None) -> None:
        """After a failed operation: take the run's state from its last durable commit,
        not from memory, and drop the events buffered since ``mark`` (they describe what
        did not happen). If the failed commit landed after all, nothing is dropped: the
        store says what happened."""
        if self.lease_lost:
            return  # another owner's run now; it is not ours to read back
        run_id = self.state.run_id
        durable_next = self.cp.next_seq(run_id)
        stored = self.cp.load_latest(run_id)
        if stored is None:
            return
        with self._lock:
            landed = durable_next > self.first_seq  # the buffered events are journaled
            if landed:
                self.buffer, self.first_seq = [], durable_next
            elif mark is not None and mark[1] == self.first_seq:
                del self.buffer[mark[0]:]
        before = self.state.node_states.get(node) if node is not None else None
        self.state = stored
        if not landed and node is not None and before is not None:
            # The attempt happened, and is journaled with the run's next commit.
            again = stored.mark_node_started(node)
            again.attempts, again.started_at = before.attempts, before.started_at

    def attempt_failed(self, ctx: NodeContext, spec: NodeSpec, attempt: int,
                       exc: BaseException) -> float | _Outcome:
        """Journal a failed attempt: seconds to wait before the retry, or STOP (the run
        failed, or was parked until the retry's time). See flow/node_retry.py."""
        left = node_retry.after_failure(self, ctx, spec, attempt, exc)
        return STOP if left is None else left

    def fail(self, node: str, attempt: int, exc: BaseException) -> None:
        state, mark = self.state, self.mark()
        error: dict[str, Any] = {"type": type(exc).__name__, "message": summarize(str(exc), 2000),
                 "node": node, "attempt": attempt,
                 "traceback": traceback_text(exc, skip_leading=_FLOW_DIR)}
        state.status, state.error = RunStatus.FAILED, error
        state.mark_node_failed(node, error["message"])
        self.event(EventKind.RUN_ERROR, node, **error)
        cleared = node_retry.retry_record(state.current_step + 1, node, 1, "cleared", None)
        self.settle(mark, node, steps=[cleared], release=True)
        # Once per failed run, after the failure is journaled; exc_info hands the
        # exception itself to the application's handlers.
        logger.error("run %s failed in node %s (attempt %d): %s: %s", state.run_id, node,
                     attempt, error["type"], error["message"], exc_info=exc)

    def pause(self, signal_: Pause | InDoubt | Park) -> None:
        """Commit the run as waiting for what ``signal_`` asks (flow/parking.py)."""
        if isinstance(signal_, Park):
            park(self, signal_.pending, signal_.wake_at)
        else:
            pause_for_person(self, signal_)

    def settle(self, mark: tuple[int, int], node: str, **commit: Any) -> None:
        """Commit; if the commit fails, the run is what the store says (see rewind)."""
        try:
            self.commit(**commit)
        except BaseException:
            self.rewind(mark, node)
            raise

    # ── drivers ──────────────────────────────────────────────────────────────────
    def drive(self) -> RunState:
        """Advance the run until it completes, pauses, fails or is cancelled."""
        with self._heartbeat_running():
            try:
                while isinstance(spec := self.next_node(), NodeSpec):
                    attempt: int | None = None
                    while True:
                        ctx = self.begin(spec, attempt)
                        attempt = ctx.attempt
                        wait = self.hold(ctx)
                        if wait is None:
                            return self.state
                        time.sleep(wait)
                        try:
                            update = call_node(spec, ctx, self)
                        except BaseException as exc:
                            outcome = self.node_raised(spec, ctx, attempt, exc)
                        else:
                            outcome = self.node_returned(spec, ctx, attempt, update)
                        if outcome is _Outcome.NEXT:
                            break
                        if outcome is _Outcome.STOP:
                            return self.state
                        time.sleep(outcome)
                        attempt += 1
                self.end(spec)
            except BaseException as exc:
                self.let_go(exc)
                raise
        return self.state

    async def adrive(self) -> RunState:
        """The async driver: the same decisions, nodes awaited."""
        with self._heartbeat_running():
            try:
                while isinstance(spec := self.next_node(), NodeSpec):
                    attempt: int | None = None
                    while True:
                        ctx = self.begin(spec, attempt)
                        attempt = ctx.attempt
                        wait = self.hold(ctx)
                        if wait is None:
                            return self.state
                        if wait:  # no needless turn of the loop per node (CPU per node)
                            await asyncio.sleep(wait)
                        try:
                            update = await acall_node(spec, ctx, self)
                        except BaseException as exc:
                            outcome = self.node_raised(spec, ctx, attempt, exc)
                        else:
                            outcome = await self.anode_returned(spec, ctx, attempt, update)
                        if outcome is _Outcome.NEXT:
                            break
                        if outcome is _Outcome.STOP:
                            return self.state
                        await asyncio.sleep(outcome)
                        attempt += 1
                self.end(spec)
            except BaseException as exc:
                self.let_go(exc)
                raise
        return self.state

    def let_go(self, exc: BaseException) -> None:
        """The driver stops on an exception that is no decision of the run's (a store
        that refuses writes, KeyboardInterrupt, a cancelled task): leave the run as a
        crash would, at its last durable commit, RUNNING, but with its lease given back
        so that it can be resumed at once, and a ``node.failed`` event saying why."""
        if self.released or self.lease_lost or find_signal(exc, LeaseLost) is not None:
            return
        try:
            self.rewind()
            self.event(EventKind.NODE_FAILED, self.state.current_node, attempt=self.attempt,
                       error=type(exc).__name__, message=summarize(str(exc), 1000),
                       stopped=True)
            self.commit(state=False, release=True)
        except BaseException as second:  # the first exception goes on
            exc.add_note(f"purpose-agent: run {self.state.run_id!r} keeps its lease until "
                         f"it expires; giving it back failed too: {type(second).__name__}: "
                         f"{second}")

    def _heartbeat_running(self) -> Heartbeat:
        return Heartbeat(self, self.flow.lease_ttl)



# Starting, resuming, forking and cancelling a run: flow/operations.py.
__all__: list[str] = []  # the engine is private: Flow's methods and flow/operations use it
