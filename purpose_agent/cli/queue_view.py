"""What ``purpose-agent runs`` says about queued runs: who advances one, or why it waits."""

from __future__ import annotations

from typing import Any

from purpose_agent.errors import QueueUnsupported
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.journal import RunInfo
from purpose_agent.runtime.queue import QueueRow, WorkerInfo, queue_store
from purpose_agent.runtime.state import RunStatus

from .render import stalled, wait_text

ALIVE = 20.0  # seconds without a heartbeat (four missed ones) before a worker counts as gone


def worker_state(info: WorkerInfo, now: float) -> str:
    """``running``, ``stopped`` or ``gone`` (no heartbeat for :data:`ALIVE` seconds)."""
    if info.stopped_at is not None:
        return "stopped"
    return "running" if now - info.heartbeat_at < ALIVE else "gone"


def why_waiting(row: QueueRow, workers: list[WorkerInfo], now: float,
                pending: dict[str, Any] | None = None) -> str:
    """Why a claimable-looking run is not being advanced yet."""
    waiting = wait_text(pending)
    if waiting is not None and row.available_at > now:
        return waiting  # parked by its own code: a timer or a message (flow/parking.py)
    if row.available_at > now:
        return f"delayed: due in {row.available_at - now:.0f}s"
    live = [w for w in workers if worker_state(w, now) == "running"]
    if not live:
        return "no worker is running"
    if not any(row.queue in w.queues and row.flow in w.flows for w in live):
        return f"no running worker serves flow {row.flow!r} on queue {row.queue!r}"
    return "waiting for a free worker"


def queue_details(cp: BaseCheckpointer, infos: list[RunInfo]) -> dict[str, dict[str, Any]]:
    """For each listed run that came from a queue: its queue, the worker that advances it
    (or last did), and for a run waiting for a worker, why (``waits``)."""
    try:
        queues = queue_store(cp)
    except QueueUnsupported:
        return {}
    rows = queues.queue_rows([info.run_id for info in infos])
    if not rows:
        return {}
    workers, now = queues.list_workers(), queues.now()
    out = {}
    for info in infos:
        row = rows.get(info.run_id)
        if row is None:
            continue
        waiting = info.status is RunStatus.QUEUED or (info.status is RunStatus.RUNNING
                                                      and stalled(info))
        out[info.run_id] = {
            "queue": row.queue, "priority": row.priority, "worker": row.worker,
            "takeovers": row.takeovers, "available_at": row.available_at,
            "waits": why_waiting(row, workers, now, info.pending) if waiting else None}
    return out


def describe(run_id: str, detail: dict[str, Any]) -> str:
    """One line under the runs table."""
    if detail["waits"] is not None:
        return f"{run_id} waits on queue {detail['queue']!r}: {detail['waits']}"
    return f"{run_id} on queue {detail['queue']!r}, worker {detail['worker'] or '-'}"
