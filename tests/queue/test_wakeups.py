"""Wake-ups: on PostgreSQL an idle worker starts an enqueued run at once (NOTIFY), far
sooner than its poll interval; without NOTIFY (SQLite, or listen=False) it polls."""

from __future__ import annotations

import threading
import time

from queue_flows import effects
from queue_helpers import wait_for

from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.worker import Worker

POLL = 5.0


def _claim_latency(url: str, *, listen: bool) -> float:
    """Seconds from enqueue to the run's ``run.resumed`` (a worker took it up), for an
    idle worker that polls every POLL seconds."""
    cp = open_checkpointer(url)
    worker = Worker(cp, flows=[effects], poll_interval=POLL, listen=listen)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        # Idle: it has polled once already and sleeps for ~POLL (±50% jitter) now.
        wait_for(lambda: worker._queue.list_workers(), timeout=10, what="the worker row")
        threading.Event().wait(0.3)  # let it finish its first (empty) claim and go idle
        enqueued = time.monotonic()
        run_id = effects.enqueue({}, checkpointer=cp)
        wait_for(lambda: any(e.kind == EventKind.RUN_RESUMED for e in cp.list_events(run_id)),
                 timeout=3 * POLL, what="a worker to take the run up", every=0.005)
        return time.monotonic() - enqueued
    finally:
        worker.stop()
        thread.join(timeout=30)
        cp.close()


def test_notify_wakes_an_idle_worker_well_before_its_poll_interval(pg_new_url: str) -> None:
    latency = _claim_latency(pg_new_url, listen=True)
    assert latency < 1.0, f"{latency:.3f}s from enqueue to start with NOTIFY"


def test_without_notify_an_idle_worker_finds_the_run_by_polling(tmp_path) -> None:  # type: ignore[no-untyped-def]
    latency = _claim_latency(f"sqlite:///{tmp_path / 'runs.db'}", listen=True)
    assert latency <= 1.5 * POLL + 1.0  # the poll interval with its jitter, plus the run


def _serving(worker: Worker) -> threading.Thread:
    """``worker`` running in a thread, once its slots are idle: one polling (on the
    LISTEN socket), the others waiting for a hint."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_for(lambda: worker._polling and worker._sleepers == worker.concurrency - 1,
             timeout=10, what="the worker's slots to go idle")
    return thread


def test_stop_wakes_the_slot_waiting_on_the_listen_socket(pg_new_url: str) -> None:
    cp = open_checkpointer(pg_new_url)
    worker = Worker(cp, flows=[effects], poll_interval=60.0, concurrency=2)
    thread = _serving(worker)
    # The NOTIFY reaches the slot that claims: no thread stands between them.
    assert worker._listener is not None
    assert not [t for t in threading.enumerate() if "listen" in t.name]
    worker.stop()
    thread.join(timeout=10)  # not the 30-90 s its poll would take
    assert not thread.is_alive()
    cp.close()


def test_a_claim_wakes_the_next_slot_even_when_it_waits_on_the_socket(
        pg_new_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from queue_flows import gated

    from purpose_agent.runtime.queue import queue_store

    cp = open_checkpointer(pg_new_url)
    gate = tmp_path / "gate"
    worker = Worker(cp, flows=[gated], poll_interval=60.0, concurrency=2)
    thread = _serving(worker)
    try:
        # Two runs due in a moment: their NOTIFYs come before they are claimable, so
        # nothing but a hint can wake a slot for them once they are.
        first = gated.enqueue({"gate": str(gate)}, checkpointer=cp, delay="1s")
        second = gated.enqueue({"gate": str(gate)}, checkpointer=cp, delay="1s")
        queues = queue_store(cp)
        due = max(row.available_at for row in queues.queue_rows([first, second]).values())
        wait_for(lambda: queues.now() >= due and worker._polling
                 and worker._sleepers == 1, timeout=10, what="the runs to be due")
        third = gated.enqueue({"gate": str(gate)}, checkpointer=cp)  # one NOTIFY
        # One slot claims the oldest, its hint wakes the other — which is the one now
        # waiting on the LISTEN socket — and it claims the second.
        wait_for(lambda: all((info := cp.run_info(r)) is not None and info.owner
                             for r in (first, second)),
                 timeout=10, what="both slots to take a run")
        assert cp.run_info(third).owner is None  # type: ignore[union-attr]
    finally:
        gate.touch()
        worker.stop()
        thread.join(timeout=30)
        cp.close()
