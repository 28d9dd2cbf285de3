"""Pausing a run for a person, parking a run that waits (a timer, a retry's backoff, a
message), and waking it.

A parked run holds no process, no lease and no worker slot. Its state says what it waits
for (``pending``: ``{"kind": "sleep", "wake_at": …}`` or ``{"kind": "message", "topic":
…, "deadline": …}``); what ends the wait was journaled before it began (the wake-up
time, the deadline), so waking it twice, or late, changes nothing: the node re-executes,
replays its journaled steps and finds its wait over.

- A run that came from a queue goes back to it, QUEUED, claimable from its wake-up time
  (the queue's own ``available_at``; a message wait without a deadline: when a message
  comes). Its queue row is moved *before* the lease is given back, so no worker can claim
  it early in between.
- A run started in-process is PAUSED: ``flow.resume`` continues it (a resume before its
  time parks it again, or waits out the rest when that is short), and ``flow.send`` of
  the message it waits for resumes it in the sending process.
"""

from __future__ import annotations

from typing import Any, Protocol

from purpose_agent.errors import QueueUnsupported
from purpose_agent.flow.signals import InDoubt, Pause
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.queue import NEVER, QueueStore, queue_store
from purpose_agent.runtime.state import RunState, RunStatus

ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class Parker(Protocol):
    """What parking needs of the driver of a run (flow/engine.py's Runner)."""

    state: RunState
    cp: BaseCheckpointer

    def mark(self) -> tuple[int, int]: ...
    def event(self, kind: EventKind, node: str | None = None, /, **payload: Any) -> None: ...
    def settle(self, mark: tuple[int, int], node: str, **commit: Any) -> None: ...


def queue_of(cp: BaseCheckpointer, run_id: str) -> QueueStore | None:
    """The queue the run came from, or None (started in-process, or no queue store)."""
    try:
        queues = queue_store(cp)
    except QueueUnsupported:
        return None
    return queues if run_id in queues.queue_rows([run_id]) else None


def park(runner: Parker, pending: dict[str, Any], wake_at: float | None) -> None:
    """Commit the run as parked, waiting for ``pending``, and give its lease back."""
    state, mark = runner.state, runner.mark()
    run_id, node = state.run_id, pending["node"]
    queues = queue_of(runner.cp, run_id)
    if queues is not None:
        queues.set_available_at(run_id, NEVER if wake_at is None else wake_at)
    state.status = RunStatus.QUEUED if queues is not None else RunStatus.PAUSED
    state.pending = pending
    detail = {k: v for k, v in pending.items() if k not in ("kind", "node", "reason")}
    if "reason" in pending:  # why the node sleeps: a retry's backoff
        detail["cause"] = pending["reason"]
    runner.event(EventKind.RUN_PAUSED, node, reason=pending["kind"], **detail)
    runner.settle(mark, node, release=True)
    if queues is not None:
        if message_waiting(runner.cp, state) or child_ended(runner.cp, pending):
            # What it waits for came while it was parking: the other side saw it running.
            queues.set_available_at(run_id, queues.now())
        queues.notify()


def pause_for_person(runner: Parker, signal_: Pause | InDoubt) -> None:
    """Commit the run PAUSED for a person: an interrupt's question, or an in-doubt step."""
    state, rec, mark = runner.state, signal_.record, runner.mark()
    state.status = RunStatus.PAUSED
    if isinstance(signal_, Pause):
        state.pending = {"kind": "interrupt", "node": rec.node, "key": rec.key,
                         "index": rec.index, "step": rec.step, "payload": rec.result}
        runner.event(EventKind.HITL_REQUEST, rec.node, payload=rec.result)
        runner.event(EventKind.RUN_PAUSED, rec.node, reason="interrupt")
        runner.settle(mark, rec.node, steps=[rec], release=True)
    else:
        state.pending = {"kind": "in_doubt", "node": rec.node, "key": rec.key,
                         "index": rec.index, "step": rec.step, "name": rec.name,
                         "attempt": rec.attempt, "args_digest": rec.args_digest}
        runner.event(EventKind.RUN_PAUSED, rec.node, reason="in_doubt", step_name=rec.name)
        runner.settle(mark, rec.node, release=True)


def wake_parent(cp: BaseCheckpointer, state: RunState) -> None:
    """A child run ended: put its parent back on its queue if it waits for it there."""
    parent = state.parent or {}
    if parent.get("kind") != "child" or state.status not in ENDED:
        return
    queues = queue_of(cp, parent["run_id"])
    info = cp.run_info(parent["run_id"])
    if queues is None or info is None or info.status is not RunStatus.QUEUED:
        return
    pending = info.pending or {}
    if state.run_id in pending.get("run_ids", [pending.get("run_id")]) \
            and child_ended(cp, pending):
        queues.set_available_at(parent["run_id"], queues.now())
        queues.notify()


def child_ended(cp: BaseCheckpointer, pending: dict[str, Any]) -> bool:
    """True when ``pending`` is a wait for child runs that have all ended."""
    if pending.get("kind") != "child":
        return False
    infos = [cp.run_info(run_id) for run_id in pending.get("run_ids", [pending["run_id"]])]
    return all(info is None or info.status in ENDED for info in infos)


def message_waiting(cp: BaseCheckpointer, state: RunState) -> bool:
    """True when the run waits for a message of a topic that has one nobody received."""
    pending = state.pending or {}
    return pending.get("kind") == "message" and bool(
        cp.list_messages(state.run_id, topic=pending["topic"], undelivered=True))


def due(cp: BaseCheckpointer, state: RunState) -> bool:
    """True when a parked run's wait is over now: a message it waits for arrived, or
    its wake-up time or deadline passed (so resuming it goes on at once)."""
    pending = state.pending or {}
    kind = pending.get("kind")
    if state.status is not RunStatus.PAUSED or kind not in ("sleep", "message", "child"):
        return False
    if kind == "child":
        return child_ended(cp, pending)
    if message_waiting(cp, state):
        return True
    end = pending.get("wake_at") if kind == "sleep" else pending.get("deadline")
    return end is not None and cp.clock() >= end


__all__ = ["ENDED", "Parker", "child_ended", "due", "message_waiting", "park", "pause_for_person",
           "queue_of", "wake_parent"]
