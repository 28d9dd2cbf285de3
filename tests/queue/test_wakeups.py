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
