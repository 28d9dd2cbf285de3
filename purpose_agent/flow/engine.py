"""The durable engine: advances one run, committing each node's completion atomically.

One core, two thin drivers. :class:`Runner` makes every decision and every store write;
``drive`` (sync) and ``adrive`` (async) only differ in how they call a node. A node's
completion — its update merged into the data, the node marked completed, the next node
chosen, its events — is one commit (DESIGN rule 1).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from purpose_agent.errors import (
    ControlSignal,
    FlowChangedError,
    LeaseError,
    MaxStepsExceeded,
    RunNotFound,
    RunStateError,
    StepInDoubt,
    StoreError,
)
from purpose_agent.flow.context import Abandoned, InDoubt, NodeContext, Pause, _current
from purpose_agent.flow.leases import Heartbeat
from purpose_agent.flow.reducers import to_ops
from purpose_agent.flow.timeouts import Alarm, node_timeout, with_timeout
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import Commit, Delta, Lease, StepRecord, apply_ops
from purpose_agent.runtime.redact import summarize
from purpose_agent.runtime.state import RunState, RunStatus

if TYPE_CHECKING:
    from purpose_agent.flow.graph import Flow, NodeSpec

END = "__end__"
MIN_SNAPSHOT_BYTES = 4096
# A snapshot is written once the deltas since the last one outweigh it SNAPSHOT_RATIO
# times. For a state that grows every node (a message list) the snapshots then add up to
# ~1.5x the final state instead of ~2x, and loading replays at most twice the state's
# size in deltas (W3 in bench/compare.py: 4.5 -> 3.3 KiB on disk per 1 KB node).
SNAPSHOT_RATIO = 2


class LeaseLost(ControlSignal):
    """Another owner took the run over; this process must stop advancing it."""


class Runner:
    """Advances one run whose lease this process holds."""

    def __init__(self, flow: Flow, cp: BaseCheckpointer, state: RunState, lease: Lease,
                 *, snapshot_bytes: int = 0, reload_steps: bool = True) -> None:
        self.flow, self.cp, self.state, self.lease = flow, cp, state, lease
        self.first_seq = lease.next_seq  # the seq of the first buffered event
        self.buffer: list[PAEvent] = []
        # Held while an event is buffered or a commit made: a node attempt abandoned by
        # its timeout (in a worker thread) is marked under it, and so can never buffer
        # or commit anything once its driver has moved on.
        self._lock = threading.Lock()
        self.writing = False  # a store write is under way: a timeout waits for its end
        self.alarm: Alarm | None = None  # the SIGALRM timeout of the attempt under way
        self.cancel_requested = False
        self.lease_lost = False
        self.lease_lost_reason: str | None = None
        # When the lease was last known good: monotonic time at which its last successful
        # renewal (or its acquisition) was *sent*, so the store's expiry is no earlier
        # than this plus the lease. Past half the lease a driver asks the store before
        # starting a step (the heartbeat renews every third of it, so normally never).
        self.renewed_at = time.monotonic()
        self.recheck_after = flow.lease_ttl / 2
        self.delta_bytes = 0
        self.snapshot_bytes = snapshot_bytes
        self.reload_steps = reload_steps  # steps may be journaled for the next node

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
            self._check_attempt()
            if self.lease_lost:
                raise LeaseLost(self.lease_lost_reason or self.state.run_id)
            if snapshot is None:
                snapshot = state and self.delta_bytes >= max(
                    SNAPSHOT_RATIO * self.snapshot_bytes, MIN_SNAPSHOT_BYTES)
            commit = Commit(events=self.buffer, state=self.state if state else None,
                            delta=delta, snapshot=snapshot, steps=steps or [],
                            fence=self.lease.fence, release=release)
            self.writing = True
            try:
                try:
                    result = self.cp.commit(self.state.run_id, commit)
                except LeaseError as exc:
                    raise LeaseLost(f"{exc}; the run is being advanced elsewhere now") from exc
                self.first_seq += len(commit.events)
                self.buffer = []
                self.cancel_requested = result.cancel_requested
                if result.snapshot_bytes:
                    self.snapshot_bytes, self.delta_bytes = result.snapshot_bytes, 0
                else:
                    self.delta_bytes += result.delta_bytes
            finally:
                self.writing = False
            if self.alarm is not None:
                self.alarm.deliver()

    def check_lease(self) -> None:
        """Before a node or a step starts: stop (LeaseLost) if the lease is lost, or may be.

        A driver frozen past its lease (SIGSTOP, a long GC, a VM pause) may have been
        taken over meanwhile; its commits would be refused, but a step's side effect
        would run first. So once the last renewal is older than half the lease, the
        lease is renewed here, before anything else happens (one store round trip, only
        then: the heartbeat keeps it fresh otherwise).
        """
        if self.lease_lost:
            raise LeaseLost(self.lease_lost_reason or self.state.run_id)
        if time.monotonic() - self.renewed_at > self.recheck_after:
            self._revalidate()

    def _revalidate(self) -> None:
        sent = time.monotonic()
        self.writing = True  # a timeout waits for the store's answer
        try:
            lease = self.cp.renew_lease(self.lease, self.flow.lease_ttl)
        except LeaseError:
            self.lose_lease(f"run {self.state.run_id!r} was taken over by another driver "
                            "while this one was stalled past its lease; it stopped before "
                            "starting anything more")
            raise LeaseLost(self.lease_lost_reason) from None
        finally:
            self.writing = False
        self.renewed(lease, sent)
        if self.alarm is not None:
            self.alarm.deliver()

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
        ctx = _current.get()
        if ctx is not None and ctx._abandoned and ctx._runner is self:
            raise Abandoned(ctx.node)

    def abandon(self, ctx: NodeContext) -> None:
        """Give up ``ctx``'s attempt: returns once it writes nothing more (a commit of it
        under way has ended)."""
        with self._lock:
            ctx._abandoned = True

    def commit_steps(self, steps: list[StepRecord]) -> None:
        self.commit(state=False, steps=steps)

    # ── the node loop's decisions ────────────────────────────────────────────────
    def next_node(self) -> NodeSpec | None:
        """The node to execute next, or None when the run stopped (and was committed)."""
        state = self.state
        if self.cancel_requested:
            self.finish_cancelled()
            return None
        if state.current_node is None:
            if state.status is not RunStatus.COMPLETED:
                self.finish_completed()
            return None
        limit = state.max_steps or self.flow.max_steps
        if state.current_step >= limit:
            exc = MaxStepsExceeded(
                f"run {state.run_id!r} executed {state.current_step} nodes, its max_steps "
                f"is {limit}; raise Flow(max_steps=...) if the loop is meant to be longer"
            )
            self.fail(state.current_node, 1, exc)
            return None
        return self.flow.spec(state.current_node)

    def begin(self, spec: NodeSpec, attempt: int) -> NodeContext:
        self.check_lease()
        exec_step = self.state.current_step + 1
        records = self.cp.load_steps(self.state.run_id, exec_step) if self.reload_steps else []
        self.reload_steps = False
        self.state.mark_node_started(spec.name)
        self.event(EventKind.AGENT_STARTED, spec.name, attempt=attempt, step=exec_step)
        return NodeContext(self, spec.name, attempt, exec_step, records)

    def complete(self, spec: NodeSpec, ctx: NodeContext, update: Any) -> None:
        """Commit the node's completion: update, completed node, next node, events."""
        state = self.state
        if update is None:
            update = {}
        if not isinstance(update, dict):
            raise TypeError(f"node {spec.name!r} returned a {type(update).__name__}; a node "
                            "returns a dict of updates to the run data, or None")
        jsonutil.check(update, f"$.update[{spec.name}]")
        ops = to_ops(update, state.data, self.flow.reducers)
        if self.flow.has_callable_reducers:  # their results were not checked above
            jsonutil.check(ops, f"$.update[{spec.name}]")
        apply_ops(state.data, ops)
        try:
            nxt = self.flow.next_after(spec.name, state.data)
        except Exception:
            self.reload_data()  # the ops were applied in memory only; undo them
            raise
        state.current_step += 1
        node_state = state.mark_node_completed(spec.name)
        state.current_node = None if nxt == END else nxt
        self.event(EventKind.AGENT_FINISHED, spec.name, step=state.current_step,
                   updated=sorted(update), next=nxt, replayed_steps=ctx.replayed)
        done = nxt == END
        if done:
            state.status = RunStatus.COMPLETED
            self.event(EventKind.RUN_FINISHED, None, steps=state.current_step)
        self.commit(delta=Delta(ops, spec.name, node_state.to_dict()), release=done)

    def reload_data(self) -> None:
        stored = self.cp.load_latest(self.state.run_id)
        if stored is not None:
            self.state.data = stored.data

    def attempt_failed(self, spec: NodeSpec, attempt: int, exc: BaseException) -> float | None:
        """Journal a failed attempt. Returns the backoff before a retry, or None if the
        run is now FAILED."""
        self.reload_steps = True
        if attempt <= spec.retries:
            self.event(EventKind.AGENT_ERROR, spec.name, attempt=attempt,
                       error=type(exc).__name__, message=summarize(str(exc), 1000),
                       retry_in=spec.backoff * 2 ** (attempt - 1))
            self.commit(state=False)
            return spec.backoff * 2 ** (attempt - 1)
        self.fail(spec.name, attempt, exc)
        return None

    def fail(self, node: str, attempt: int, exc: BaseException) -> None:
        state = self.state
        error = {"type": type(exc).__name__, "message": summarize(str(exc), 2000),
                 "node": node, "attempt": attempt}
        state.status, state.error = RunStatus.FAILED, error
        state.mark_node_failed(node, error["message"])
        self.event(EventKind.RUN_ERROR, node, **error)
        self.commit(release=True)

    def pause(self, signal_: Pause | InDoubt) -> None:
        state, rec = self.state, signal_.record
        state.status = RunStatus.PAUSED
        if isinstance(signal_, Pause):
            state.pending = {"kind": "interrupt", "node": rec.node, "key": rec.key,
                             "index": rec.index, "step": rec.step, "payload": rec.result}
            self.event(EventKind.HITL_REQUEST, rec.node, payload=rec.result)
            self.event(EventKind.RUN_PAUSED, rec.node, reason="interrupt")
            self.commit(steps=[rec], release=True)
        else:
            state.pending = {"kind": "in_doubt", "node": rec.node, "key": rec.key,
                             "index": rec.index, "step": rec.step, "name": rec.name,
                             "attempt": rec.attempt}
            self.event(EventKind.RUN_PAUSED, rec.node, reason="in_doubt", step_name=rec.name)
            self.commit(release=True)

    def finish_completed(self) -> None:
        self.state.status = RunStatus.COMPLETED
        self.event(EventKind.RUN_FINISHED, None, steps=self.state.current_step)
        self.commit(release=True)

    def finish_cancelled(self) -> None:
        self.state.status = RunStatus.CANCELLED
        self.event(EventKind.RUN_CANCELLED, self.state.current_node)
        self.commit(release=True)

    # ── drivers ──────────────────────────────────────────────────────────────────
    def drive(self) -> RunState:
        """Advance the run until it completes, pauses, fails or is cancelled."""
        with self._heartbeat_running():
            while (spec := self.next_node()) is not None:
                attempt = 1
                while True:
                    ctx = self.begin(spec, attempt)
                    try:
                        update = self._call_sync(spec, ctx)
                        self.complete(spec, ctx, update)
                        break
                    except (Pause, InDoubt) as sig:
                        self.pause(sig)
                        return self.state
                    except (LeaseLost, StoreError):
                        raise
                    except Exception as exc:
                        delay = self.attempt_failed(spec, attempt, exc)
                        if delay is None:
                            return self.state
                        time.sleep(delay)
                        attempt += 1
        return self.state

    async def adrive(self) -> RunState:
        """The async driver: the same decisions, nodes awaited."""
        with self._heartbeat_running():
            while (spec := self.next_node()) is not None:
                attempt = 1
                while True:
                    ctx = self.begin(spec, attempt)
                    try:
                        update = await self._call_async(spec, ctx)
                        self.complete(spec, ctx, update)
                        break
                    except (Pause, InDoubt) as sig:
                        self.pause(sig)
                        return self.state
                    except (LeaseLost, StoreError):
                        raise
                    except Exception as exc:
                        delay = self.attempt_failed(spec, attempt, exc)
                        if delay is None:
                            return self.state
                        await asyncio.sleep(delay)
                        attempt += 1
        return self.state

    def _call_sync(self, spec: NodeSpec, ctx: NodeContext) -> Any:
        if spec.is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self._call_async(spec, ctx))
            raise RuntimeError(f"node {spec.name!r} is async and an event loop is running; "
                               "use `await flow.arun(...)` / `await flow.aresume(...)`")
        return with_timeout(spec.fn, ctx, spec.timeout)

    async def _call_async(self, spec: NodeSpec, ctx: NodeContext) -> Any:
        token = _current.set(ctx)
        try:
            if spec.is_async:
                coro = spec.fn(ctx)
                if spec.timeout is None:
                    return await coro
                try:
                    return await asyncio.wait_for(coro, spec.timeout)
                except TimeoutError:
                    raise node_timeout(spec.name, spec.timeout) from None
            return with_timeout(spec.fn, ctx, spec.timeout)
        finally:
            _current.reset(token)

    def _heartbeat_running(self) -> Heartbeat:
        return Heartbeat(self, self.flow.lease_ttl)


# ── starting, resuming, forking, cancelling ─────────────────────────────────────────
MISSING: Any = object()


def start(flow: Flow, data: dict[str, Any] | None, cp: BaseCheckpointer, run_id: str,
          session_id: str | None, owner: str) -> Runner:
    if data is not None and not isinstance(data, dict):
        raise TypeError(f"a run's data is a dict, got {type(data).__name__}")
    # A copy: the run's lists grow in place, and must not be the caller's own.
    text = jsonutil.dumps(data or {}, "$.data")
    data = jsonutil.loads(text)
    state = RunState(run_id=run_id, session_id=session_id, status=RunStatus.RUNNING,
                     purpose=flow.purpose, flow=flow.name, flow_ref=flow.ref,
                     current_node=flow.entry_node, max_steps=flow.max_steps, data=data)
    first = PAEvent(run_id, EventKind.RUN_STARTED, seq=1, payload={
        "flow": flow.name, "purpose": flow.purpose, "entry": flow.entry_node,
        "data": summarize(data, 500)})
    # Small initial data goes in the first delta; large data starts a snapshot at once
    # (else the first snapshot would repeat it). A snapshot costs the start commit a page
    # of the snapshots table, somewhere in its B-tree.
    snapshot = len(text) >= MIN_SNAPSHOT_BYTES
    ops = {} if snapshot else {key: ["set", value] for key, value in data.items()}
    result = cp.commit(run_id, Commit(events=[first], state=state, delta=Delta(ops),
                                      snapshot=snapshot, create=True,
                                      acquire=(owner, flow.lease_ttl)))
    assert result.lease is not None
    return Runner(flow, cp, state, result.lease, snapshot_bytes=result.snapshot_bytes,
                  reload_steps=False)


def resume(flow: Flow, cp: BaseCheckpointer, run_id: str, owner: str, *, answer: Any,
           update: dict[str, Any] | None, retry_in_doubt: bool) -> Runner:
    info = cp.run_info(run_id)
    if info is None:
        raise RunNotFound(f"no run {run_id!r} in {cp!r}")
    _check_resumable(flow, run_id, info.status, info.flow)
    if update is not None:
        jsonutil.check(update, "$.update")
    if answer is not MISSING:
        jsonutil.check(answer, "$.answer")
    lease = cp.acquire_lease(run_id, owner, flow.lease_ttl)
    try:
        state = cp.load_latest(run_id)
        assert state is not None
        _check_resumable(flow, run_id, state.status, state.flow)
        runner = Runner(flow, cp, state, lease)
        steps = _answer_pending(state, answer, retry_in_doubt)
        update = jsonutil.loads(jsonutil.dumps(update or {}, "$.update"))  # a copy, as above
        ops = {key: ["set", value] for key, value in update.items()}
        apply_ops(state.data, ops)
        if state.status is RunStatus.FAILED and state.current_node:
            state.node_states.pop(state.current_node, None)
        previous = state.status
        state.status, state.pending, state.error = RunStatus.RUNNING, None, None
        runner.event(EventKind.RUN_RESUMED, state.current_node, previous=str(previous),
                     updated=sorted(update or {}))
        if steps and steps[0].kind == "interrupt":
            runner.event(EventKind.HITL_RESPONSE, steps[0].node, answer=summarize(answer, 500))
        runner.commit(delta=Delta(ops), steps=steps)
        return runner
    except BaseException:
        # Refused before anything was journaled: hand the lease back at once.
        cp.commit(run_id, Commit(fence=lease.fence, release=True))
        raise


def _check_resumable(flow: Flow, run_id: str, status: RunStatus, flow_name: str | None) -> None:
    if status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
        raise RunStateError(f"run {run_id!r} is {status}; nothing to resume (fork it to "
                            "run part of it again)")
    if flow_name is not None and flow_name != flow.name:
        raise FlowChangedError(f"run {run_id!r} was started by flow {flow_name!r}, not "
                               f"{flow.name!r}; resume it with that flow")


def _answer_pending(state: RunState, answer: Any, retry_in_doubt: bool) -> list[StepRecord]:
    pending = state.pending
    if pending is None:
        if answer is not MISSING:
            raise RunStateError(f"run {state.run_id!r} is {state.status} and waits for no "
                                "answer; resume it without one")
        return []
    where = f"node {pending['node']!r} of run {state.run_id!r}"
    base = {"key": pending["key"], "step": pending["step"], "node": pending["node"],
            "index": pending["index"]}
    if pending["kind"] == "interrupt":
        if answer is MISSING:
            raise RunStateError(f"{where} waits for an answer to {summarize(pending['payload'])}; "
                                "resume with answer=...")
        return [StepRecord(**base, name="interrupt", kind="interrupt", status="done",
                           result=answer)]
    if retry_in_doubt:
        return [StepRecord(**base, name=pending["name"], status="retry", at_most_once=True,
                           attempt=pending["attempt"])]
    if answer is MISSING:
        raise StepInDoubt(
            f"step {pending['name']!r} in {where} is in doubt: it started but its result "
            "was never journaled, so it may or may not have happened. Check, then resume "
            "with answer=<its result>, or with retry_in_doubt=True to run it again")
    return [StepRecord(**base, name=pending["name"], status="done", result=answer,
                       at_most_once=True, attempt=pending["attempt"])]


def is_async_callable(fn: Callable[..., Any]) -> bool:
    call = vars(type(fn)).get("__call__")
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


__all__ = ["END", "Abandoned", "LeaseLost", "Runner"]
