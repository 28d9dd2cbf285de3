"""A run the workers advance goes back to them when a person answers it in the inspector:
the answer is journaled by the page, and no node of the flow runs in the inspector."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ui_flows import approval
from ui_server import StartInspector

from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.queue import queue_store
from purpose_agent.runtime.state import RunStatus
from purpose_agent.worker import Worker


def _wait(condition, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        tick.wait(0.02)  # re-checks a condition: polling, not synchronisation by time


def test_approving_a_queued_run_hands_it_back_to_the_workers(
        start_inspector: StartInspector, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    cp = open_checkpointer(url)
    run_id = approval.enqueue({}, checkpointer=cp)
    worker = Worker(cp, flows=[approval], concurrency=1, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: cp.load_latest(run_id).status is RunStatus.PAUSED,  # type: ignore[union-attr]
              "the worker to pause the run for a person")
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
        ui = start_inspector(url, flows=(approval,))
        assert ui.post(f"/runs/{run_id}/approve", {"next": "/inbox"}).status_code == 303
        ui.finished(run_id)
        assert ui.actions.activity[run_id].outcome == "run is back on its queue for the workers"
        # Journaled and back on the queue, but not advanced here: no worker is running.
        state = cp.load_latest(run_id)
        assert state is not None and state.status is RunStatus.RUNNING
        assert state.current_node == "approve" and "outcome" not in state.data
        assert queue_store(cp).queue_rows([run_id])[run_id].active
        answered = cp.list_events(run_id, kinds=EventKind.HITL_RESPONSE)
        assert [e.payload.get("answer") for e in answered] == ["true"]  # as summarised
        # A worker then finishes it.
        worker = Worker(cp, flows=[approval], concurrency=1, poll_interval=0.05)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        _wait(lambda: cp.load_latest(run_id).status is RunStatus.COMPLETED,  # type: ignore[union-attr]
              "a worker to finish the approved run")
        final = cp.load_latest(run_id)
        assert final is not None and final.data["outcome"] == "sent"
    finally:
        worker.stop()
        thread.join(timeout=30)
        cp.close()
