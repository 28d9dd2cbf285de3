"""Sending a message to a run (``flow.send``, ``purpose-agent send``) and waking the run
that waits for it.

The message is stored first (durable, in order, a duplicate ``dedup_key`` dropped);
then, if the run is parked waiting for that topic, it is woken the way a person's answer
wakes a paused run today: a run that came from a queue is made claimable now (a worker
takes it); a run started in-process is resumed by the sender (the caller does that, with
its flow). A run that is running meanwhile takes the message on its own: ``wait_for``
looks in the mailbox before it parks, and looks again right after parking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from purpose_agent.errors import RunNotFound, RunStateError
from purpose_agent.flow.parking import queue_of
from purpose_agent.runtime.checkpoint import BaseCheckpointer, validate_run_id
from purpose_agent.runtime.journal import Message
from purpose_agent.runtime.state import RunStatus


@dataclass(frozen=True, slots=True)
class Sent:
    """What ``send`` did: the message stored (None: a duplicate ``dedup_key``, dropped),
    and whether the caller should resume the run in-process now."""

    message: Message | None
    resume_here: bool


def send(cp: BaseCheckpointer, run_id: str, topic: str, payload: Any, *,
         dedup_key: str | None = None) -> Sent:
    """Store a message for ``run_id`` and wake the run if it waits for it (see module).
    RunNotFound for no such run, RunStateError for a run that has ended (nothing stored)."""
    info = cp.run_info(validate_run_id(run_id))
    if info is None:
        raise RunNotFound(f"no run {run_id!r} in {cp!r}")
    if info.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
        raise RunStateError(f"run {run_id!r} is {info.status}: it will never receive a "
                            "message; send it to a run that is still going")
    message = cp.send_message(run_id, topic, payload, dedup_key=dedup_key)
    if message is None:
        return Sent(None, False)
    info = cp.run_info(run_id)  # as it is now that the message is stored
    pending = (info.pending if info is not None else None) or {}
    if pending.get("kind") != "message" or pending.get("topic") != topic:
        return Sent(message, False)
    queues = queue_of(cp, run_id)
    if queues is not None:
        if info is not None and info.status is RunStatus.QUEUED:
            queues.set_available_at(run_id, queues.now())
            queues.notify()
        return Sent(message, False)
    return Sent(message, info is not None and info.status is RunStatus.PAUSED)


__all__ = ["Sent", "send"]
