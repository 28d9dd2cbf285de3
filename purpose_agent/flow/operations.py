"""Run operations: start, resume, fork and cancel a run (a :class:`~.graph.Flow`'s
methods delegate here; the CLI calls fork and cancel directly).

``start`` journals a new run and its first event; ``resume`` takes a stopped run's lease,
answers what it waits for (an interrupt, an in-doubt step) and applies a person's edit,
in one commit, before the :class:`~.engine.Runner` they return drives it on. ``fork_run``
copies a run's state after one node execution into a new run; ``cancel_run`` ends a run
now, or asks the live driver that owns it to stop.
"""

from __future__ import annotations

import uuid
from typing import Any

from purpose_agent.errors import (
    FlowChangedError,
    RunBusyError,
    RunNotFound,
    RunStateError,
    StepInDoubt,
)
from purpose_agent.flow.engine import MIN_SNAPSHOT_BYTES, Runner
from purpose_agent.flow.observe import notify
from purpose_agent.flow.parking import wake_parent
from purpose_agent.flow.plan import MISSING, Plan
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint import BaseCheckpointer, validate_run_id
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import Commit, CommitResult, Delta, StepRecord, apply_ops
from purpose_agent.runtime.owners import driver
from purpose_agent.runtime.redact import summarize
from purpose_agent.runtime.state import RunState, RunStatus


def start(flow: Plan, data: dict[str, Any] | None, cp: BaseCheckpointer, run_id: str,
          session_id: str | None, owner: str, *,
          parent: dict[str, Any] | None = None) -> Runner:
    state, commit = _first_commit(flow, data, run_id, session_id, owner, parent)
    result = cp.commit(run_id, commit)
    return _started(flow, cp, state, commit, result)


async def astart(flow: Plan, data: dict[str, Any] | None, cp: BaseCheckpointer, run_id: str,
                 session_id: str | None, owner: str) -> Runner:
    """:func:`start` for ``arun``: the event loop is not held by the first commit."""
    state, commit = _first_commit(flow, data, run_id, session_id, owner)
    result = await cp.acommit(run_id, commit)
    return _started(flow, cp, state, commit, result)


def _started(flow: Plan, cp: BaseCheckpointer, state: RunState, commit: Commit,
             result: CommitResult) -> Runner:
    """The Runner of a run whose first commit landed (its observer told of it)."""
    assert result.lease is not None
    runner = Runner(flow, cp, state, result.lease, snapshot_bytes=result.snapshot_bytes,
                    reload_steps=False)
    if runner.observer is not None:
        notify(runner.observer, state, commit.events)
    return runner


def _first_commit(flow: Plan, data: dict[str, Any] | None, run_id: str,
                  session_id: str | None, owner: str,
                  parent: dict[str, Any] | None = None) -> tuple[RunState, Commit]:
    """A new run's state and the commit that creates it, lease included."""
    if data is not None and not isinstance(data, dict):
        raise TypeError(f"a run's data is a dict, got {type(data).__name__}")
    # A copy: the run's lists grow in place, and must not be the caller's own.
    text = jsonutil.dumps(data or {}, "$.data")
    data = jsonutil.loads(text)
    state = RunState(run_id=run_id, session_id=session_id, status=RunStatus.RUNNING,
                     purpose=flow.purpose, flow=flow.name, flow_ref=flow.ref,
                     flow_file=flow.ref_file, current_node=flow.entry, max_steps=flow.max_steps,
                     data=data, parent=parent)
    first = PAEvent(run_id, EventKind.RUN_STARTED, seq=1, payload={
        "flow": flow.name, "purpose": flow.purpose, "entry": flow.entry,
        "data": summarize(data, 500)})
    # Small initial data goes in the first delta; large data starts a snapshot at once
    # (else the first snapshot would repeat it). A snapshot costs the start commit a page
    # of the snapshots table, somewhere in its B-tree.
    snapshot = len(text) >= MIN_SNAPSHOT_BYTES
    ops = {} if snapshot else {key: ["set", value] for key, value in data.items()}
    return state, Commit(events=[first], state=state, delta=Delta(ops), snapshot=snapshot,
                         create=True, acquire=(owner, flow.lease_ttl))


def resume(flow: Plan, cp: BaseCheckpointer, run_id: str, owner: str, *, answer: Any,
           update: dict[str, Any] | None, retry_in_doubt: bool) -> Runner:
    info = cp.run_info(run_id)
    if info is None:
        raise RunNotFound(f"no run {run_id!r} in {cp!r}")
    _check_resumable(flow, run_id, info.status, info.flow)
    # As deep as the journal holds them (a delta's ops, a step record's result): refused
    # here, before the lease is taken, never by the commit.
    if update is not None:
        jsonutil.check(update, "$.update", depth=2)
    if answer is not MISSING:
        jsonutil.check(answer, "$.answer", depth=1)
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


def _check_resumable(flow: Plan, run_id: str, status: RunStatus, flow_name: str | None) -> None:
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
    if pending["kind"] in ("sleep", "message", "child"):  # parked: its node re-executes
        if answer is not MISSING:
            raise RunStateError(f"{where} waits for {_waited(pending)}, not for an answer; "
                                "resume it without one")
        return []
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
                           attempt=pending["attempt"], args_digest=pending.get("args_digest"))]
    if answer is MISSING:
        raise StepInDoubt(
            f"step {pending['name']!r} in {where} is in doubt: it started but its result "
            "was never journaled, so it may or may not have happened. Check, then resume "
            "with answer=<its result>, or with retry_in_doubt=True to run it again")
    return [StepRecord(**base, name=pending["name"], status="done", result=answer,
                       at_most_once=True, attempt=pending["attempt"],
                       args_digest=pending.get("args_digest"))]


def _waited(pending: dict[str, Any]) -> str:
    if pending["kind"] == "child":
        return f"its child run {pending.get('run_id')!r}"
    if pending["kind"] == "message":
        return f"a message on topic {pending.get('topic')!r}" + (
            "" if pending.get("deadline") is None else " (or its deadline)")
    return "a timer"


def load_state(cp: BaseCheckpointer, run_id: str) -> RunState:
    """The run's current state, as journaled; RunNotFound if the store has no such run."""
    state = cp.load_latest(run_id)
    if state is None:
        raise RunNotFound(f"no run {run_id!r} in {cp!r}")
    return state


def fork_run(cp: BaseCheckpointer, run_id: str, *, at_step: int,
             update: dict[str, Any] | None = None, new_run_id: str | None = None,
             flow: object = None) -> RunState:
    """Copy the state after node execution ``at_step`` of ``run_id`` into a new PENDING run.
    (``flow`` is accepted for callers of earlier releases and not used.)"""
    current = load_state(cp, run_id)
    source = cp.load_at(run_id, int(at_step))
    if source is None:
        raise RunStateError(f"run {run_id!r} has no node execution {at_step} to fork after; "
                            f"its executions are 0..{current.current_step} (0: its start)")
    if update is not None:
        jsonutil.check(update, "$.update")
        source.data.update(update)
    new_id = validate_run_id(new_run_id or f"{run_id[:100]}-fork{at_step}-{uuid.uuid4().hex[:6]}")
    source.run_id = new_id
    source.status = RunStatus.PENDING if source.current_node else RunStatus.COMPLETED
    source.pending = source.error = None
    source.parent = {"run_id": run_id, "step": int(at_step)}
    event = PAEvent(new_id, EventKind.RUN_FORKED, seq=1, node=source.current_node,
                    payload={"from_run": run_id, "at_execution": int(at_step),
                             "updated": sorted(update or {})})
    cp.commit(new_id, Commit(events=[event], state=source, snapshot=True, create=True))
    return source


def cancel_run(cp: BaseCheckpointer, run_id: str, *, lease_ttl: float = 60.0) -> RunState:
    """Cancel ``run_id``: at once if no live process owns it, else at its next node
    boundary; and the child runs it started (``ctx.run_child``) that have not ended."""
    state = _cancel_one(cp, run_id, lease_ttl)
    for info in cp.list_run_infos():
        parent = info.parent or {}
        if (parent.get("kind") == "child" and parent.get("run_id") == run_id
                and info.status not in (RunStatus.COMPLETED, RunStatus.CANCELLED)):
            cancel_run(cp, info.run_id, lease_ttl=lease_ttl)
    return state


def _cancel_one(cp: BaseCheckpointer, run_id: str, lease_ttl: float) -> RunState:
    state = load_state(cp, run_id)
    if state.status is RunStatus.CANCELLED:
        return state
    if state.status is RunStatus.COMPLETED:
        raise RunStateError(f"run {run_id!r} already completed; nothing to cancel")
    with driver() as owner:  # its own owner: a live driver in this process is busy too
        try:
            lease = cp.acquire_lease(run_id, owner, lease_ttl)
        except RunBusyError:
            cp.request_cancel(run_id)
            return state
        state = load_state(cp, run_id)
        state.status = RunStatus.CANCELLED
        state.pending = None
        event = PAEvent(run_id, EventKind.RUN_CANCELLED, seq=lease.next_seq,
                        node=state.current_node)
        cp.commit(run_id, Commit(events=[event], state=state, fence=lease.fence, release=True))
    wake_parent(cp, state)  # a cancelled child run: its parent (on a queue) goes on
    return state
