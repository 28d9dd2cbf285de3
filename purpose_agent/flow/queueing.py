"""Runs for workers: enqueue a run, and take up a claimed one under its lease.

``enqueue`` journals a run as ``start`` does (its first event, its data, its flow's
name and reference) but QUEUED and without a lease, together with its queue row, in one
commit; a worker (:mod:`purpose_agent.worker`) claims it and advances it with
:func:`take_up`. :func:`answer_for_workers` journals a person's answer to such a run and
hands it back to the workers.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from purpose_agent.errors import LeaseError, QueueUnsupported, RunNotFound, RunStateError
from purpose_agent.flow import operations
from purpose_agent.flow.engine import MIN_SNAPSHOT_BYTES, Runner
from purpose_agent.flow.observe import notify
from purpose_agent.flow.plan import MISSING, Plan
from purpose_agent.flow.signals import LeaseLost
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint import BaseCheckpointer, validate_run_id
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import Commit, Delta, Lease
from purpose_agent.runtime.owners import driver
from purpose_agent.runtime.queue import Claim, DuplicateEnqueue, make_entry, queue_store
from purpose_agent.runtime.redact import summarize
from purpose_agent.runtime.state import RunState, RunStatus

WORKER_INLINE_WAIT = 1.0  # seconds a worker waits out itself (a short retry backoff)


class Planned(Protocol):
    """What these functions take of a flow: its validated plan (a :class:`Flow` is one).
    Not the Flow class itself, so flow/ imports in one direction (graph → queueing)."""

    def _plan(self) -> Plan: ...


def enqueue(flow: Planned, cp: BaseCheckpointer, data: dict[str, Any] | None, *,
            run_id: str | None, queue: str, priority: int, delay: Any,
            dedup_key: str | None, parent: dict[str, Any] | None = None) -> str:
    """Journal a QUEUED run of ``flow`` on ``queue`` and return its id (see Flow.enqueue)."""
    if data is not None and not isinstance(data, dict):
        raise TypeError(f"a run's data is a dict, got {type(data).__name__}")
    plan = flow._plan()  # a flow that cannot run is refused here, not by a worker
    entry = make_entry(queue=queue, flow=plan.name, priority=priority, delay=delay,
                       dedup_key=dedup_key)
    queues = queue_store(cp)  # QueueUnsupported before anything is written
    run_id = validate_run_id(run_id or f"{plan.name}-{uuid.uuid4().hex[:12]}")
    text = jsonutil.dumps(data or {}, "$.data")
    data = jsonutil.loads(text)
    state = RunState(run_id=run_id, status=RunStatus.QUEUED, purpose=plan.purpose,
                     flow=plan.name, flow_ref=plan.ref, flow_file=plan.ref_file,
                     current_node=plan.entry, max_steps=plan.max_steps, data=data,
                     parent=parent)
    first = PAEvent(run_id, EventKind.RUN_STARTED, seq=1, payload={
        "flow": plan.name, "purpose": plan.purpose, "entry": plan.entry,
        "data": summarize(data, 500), "queue": entry.queue, "priority": entry.priority,
        "delay": entry.delay, "dedup_key": entry.dedup_key})
    snapshot = len(text) >= MIN_SNAPSHOT_BYTES
    ops = {} if snapshot else {key: ["set", value] for key, value in data.items()}
    try:
        cp.commit(run_id, Commit(events=[first], state=state, delta=Delta(ops),
                                 snapshot=snapshot, create=True, enqueue=entry))
    except DuplicateEnqueue as dup:
        return dup.run_id
    queues.notify()  # a hint, after the commit: never inside the transaction
    return run_id


def take_up(flow: Planned, cp: BaseCheckpointer, claim: Claim,
            runner_class: type[Runner] = Runner, **runner_options: Any) -> Runner:
    """A Runner for a run a worker claimed. The claim's transaction journaled the run's
    ``run.resumed`` under the lease it took and handed back the run's state and its next
    node's step records (see :class:`~purpose_agent.runtime.queue.Claim`), so nothing is
    read or written here: the Runner starts the run's next node at once."""
    if claim.state is None:
        raise RunStateError(f"the claim of run {claim.run_id!r} did not resume it (it was "
                            f"taken over {claim.takeovers} times, over the limit)")
    # Step records of the next node: the Runner reads them from the store only if the
    # claim found some (a run taken over mid-node), else it starts with none.
    runner = runner_class(flow._plan(), cp, claim.state, claim.lease,
                          reload_steps=bool(claim.steps), **runner_options)
    # A worker's slot is for work: it parks the run on its queue for any longer wait.
    runner.inline_wait = min(runner.inline_wait, WORKER_INLINE_WAIT)
    runner.cancel_requested = claim.cancel_requested
    if runner.observer is not None and claim.events:
        notify(runner.observer, runner.state, claim.events)
    return runner


def fail_run(flow: Planned, cp: BaseCheckpointer, lease: Lease, error: BaseException) -> RunState:
    """FAIL a claimed run under its lease, without running any of its nodes: journal
    ``run.error`` (``error`` as its message, at the node the run stands at) and give the
    lease back, in one commit fenced by the lease (LeaseError, writing nothing, when
    another worker took the run meanwhile). For a worker that must not advance a run,
    e.g. one taken over too often. Returns the state as committed (FAILED)."""
    state = cp.load_latest(lease.run_id)
    if state is None:
        raise RunNotFound(f"no run {lease.run_id!r} in {cp!r}")
    plan = flow._plan()
    runner = Runner(plan, cp, state, lease)
    try:
        runner.fail(state.current_node or plan.entry, 1, error)
    except LeaseLost as lost:  # the engine's signal to stop a node; here, the store's error
        if isinstance(lost.__cause__, LeaseError):
            raise lost.__cause__ from None
        raise
    return runner.state


def answer_for_workers(flow: Planned, cp: BaseCheckpointer, run_id: str, *,
                       answer: Any = MISSING, update: dict[str, Any] | None = None,
                       retry_in_doubt: bool = False) -> RunState:
    """Resume a run that came from a queue the way the workers will: journal the answer
    (or edit, or retry) exactly as ``flow.resume`` does, then give the lease back and put
    the run back on its queue, without running any of its nodes here. Returns the state
    as committed (RUNNING). Raises what ``flow.resume`` raises before writing anything."""
    if not requeue(cp, run_id):  # active first: still PAUSED / FAILED, so not claimable
        raise RunStateError(f"run {run_id!r} did not come from a queue; resume it in-process")
    with driver() as owner:
        runner = operations.resume(flow._plan(), cp, run_id, owner, answer=answer, update=update,
                                   retry_in_doubt=retry_in_doubt)
        runner.commit(state=False, release=True)  # from now on a worker may claim it
    queue_store(cp).notify()
    return runner.state


def came_from_queue(cp: BaseCheckpointer, run_id: str) -> bool:
    """True for a run enqueued for workers (``flow.enqueue``), False for one started
    in-process or a store without a queue."""
    try:
        queues = queue_store(cp)
    except QueueUnsupported:
        return False
    return run_id in queues.queue_rows([run_id])


def requeue(cp: BaseCheckpointer, run_id: str) -> bool:
    """Put a queued run back on its queue for the workers (after a person answered it);
    False if the run never came from a queue (it then runs in-process, as before)."""
    if not came_from_queue(cp, run_id):
        return False
    queues = queue_store(cp)
    queues.set_active(run_id, True)
    queues.notify()
    return True


__all__ = ["answer_for_workers", "came_from_queue", "enqueue", "fail_run", "requeue",
           "take_up"]
