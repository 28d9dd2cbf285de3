"""Worker in this process: claims what it serves, advances it with the engine, lets go."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_flows import STEPS, approval, gated
from queue_flows import effects as effects_flow
from queue_helpers import effects, wait_for

from purpose_agent.errors import QueueUnsupported
from purpose_agent.flow.queueing import answer_for_workers
from purpose_agent.runtime.checkpoint import BaseCheckpointer, InMemoryCheckpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.owners import driver
from purpose_agent.runtime.queue import queue_store
from purpose_agent.runtime.state import RunStatus
from purpose_agent.worker import Worker


@pytest.fixture
def effects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects.log"
    monkeypatch.setenv("QUEUE_EFFECTS", str(path))
    return path


class Running:
    """A Worker running in a thread of this process; stopped (and joined) at the end."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the worker did not stop"


@pytest.fixture
def start_worker(queue_cp: BaseCheckpointer) -> Iterator[object]:
    started: list[Running] = []

    def start(**options: object) -> Running:
        options.setdefault("poll_interval", 0.05)
        running = Running(Worker(queue_cp, **options))  # type: ignore[arg-type]
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def _status(cp: BaseCheckpointer, run_id: str) -> RunStatus | None:
    info = cp.run_info(run_id)  # type: ignore[attr-defined]
    return None if info is None else info.status


def test_a_worker_runs_every_queued_run_once(queue_cp: BaseCheckpointer, start_worker,  # type: ignore[no-untyped-def]
                                             effects_file: Path) -> None:
    run_ids = [effects_flow.enqueue({"n": n}, checkpointer=queue_cp) for n in range(6)]
    running = start_worker(flows=[effects_flow], concurrency=3)
    wait_for(lambda: all(_status(queue_cp, r) is RunStatus.COMPLETED for r in run_ids),
             timeout=60, what="every run to complete")
    counts = effects(effects_file)
    assert counts == {f"{r} {node} {node}-{part}": 1 for r in run_ids for node in STEPS
                      for part in "ab"}
    kinds = [e.kind for e in queue_cp.list_events(run_ids[0])]
    assert kinds[:2] == [EventKind.RUN_STARTED, EventKind.RUN_RESUMED]
    assert kinds[-1] == EventKind.RUN_FINISHED
    # Finished runs leave the queue's index (just after their completion commit).
    rows = wait_for(lambda: (rows := queue_store(queue_cp).queue_rows()) and not any(
        rows[r].active for r in run_ids) and rows, timeout=10, what="inactive queue rows")
    assert all(rows[r].worker == running.worker.id for r in run_ids)
    [me] = queue_store(queue_cp).list_workers()
    assert me.id == running.worker.id and me.stopped_at is None and me.concurrency == 3
    running.stop()
    [me] = queue_store(queue_cp).list_workers()
    assert me.stopped_at is not None and me.in_flight == 0


def test_a_worker_runs_only_the_flows_and_queues_it_serves(  # type: ignore[no-untyped-def]
        queue_cp: BaseCheckpointer, start_worker, effects_file: Path, tmp_path: Path) -> None:
    other_flow = gated.enqueue({"gate": str(tmp_path / "gate")}, checkpointer=queue_cp)
    other_queue = effects_flow.enqueue({}, checkpointer=queue_cp, queue="elsewhere")
    mine = effects_flow.enqueue({}, checkpointer=queue_cp)
    start_worker(flows=[effects_flow])
    wait_for(lambda: _status(queue_cp, mine) is RunStatus.COMPLETED, timeout=30,
             what="the worker's run")
    assert _status(queue_cp, other_flow) is RunStatus.QUEUED
    assert _status(queue_cp, other_queue) is RunStatus.QUEUED
    assert not any(line.startswith((other_flow, other_queue)) for line in effects(effects_file))


def test_a_run_waiting_for_a_person_holds_no_slot_and_approval_requeues_it(  # type: ignore[no-untyped-def]
        queue_cp: BaseCheckpointer, start_worker, effects_file: Path) -> None:
    asking = approval.enqueue({}, checkpointer=queue_cp, priority=1)
    after = effects_flow.enqueue({}, checkpointer=queue_cp)
    start_worker(flows=[approval, effects_flow], concurrency=1)
    wait_for(lambda: _status(queue_cp, after) is RunStatus.COMPLETED, timeout=30,
             what="the run behind the paused one")  # one slot: the pause freed it
    assert _status(queue_cp, asking) is RunStatus.PAUSED
    assert not queue_store(queue_cp).queue_rows([asking])[asking].active
    # A person answers from anywhere: the answer is journaled, the run goes back to
    # its queue, and a worker (not this process) finishes it.
    answer_for_workers(approval, queue_cp, asking, answer="yes")
    wait_for(lambda: _status(queue_cp, asking) is RunStatus.COMPLETED, timeout=30,
             what="the answered run to complete on the worker")
    state = queue_cp.load_latest(asking)
    assert state is not None and state.data["answer"] == "yes"
    assert effects(effects_file)[f"{asking} act act"] == 1


def test_a_run_taken_over_too_often_fails_with_a_clear_error(  # type: ignore[no-untyped-def]
        queue_cp: BaseCheckpointer, start_worker) -> None:
    run_id = effects_flow.enqueue({}, checkpointer=queue_cp)
    queues = queue_store(queue_cp)
    for _ in range(6):  # six workers that claimed it and died (their leases expired)
        with driver() as owner:
            assert queues.claim(owner=owner, worker="dead", queues=("default",),
                                flows=("effects",), ttl=0.0) is not None
    start_worker(flows=[effects_flow])
    wait_for(lambda: _status(queue_cp, run_id) is RunStatus.FAILED, timeout=30,
             what="the run to fail")
    state = queue_cp.load_latest(run_id)
    assert state is not None and state.error is not None
    assert "taken over 6 times" in state.error["message"]
    assert "limit is 5" in state.error["message"]
    assert [e.kind for e in queue_cp.list_events(run_id)][-1] == EventKind.RUN_ERROR
    # resume puts it back on its queue, its count reset: the worker finishes it.
    answer_for_workers(effects_flow, queue_cp, run_id)
    wait_for(lambda: _status(queue_cp, run_id) is RunStatus.COMPLETED, timeout=30,
             what="the resumed run to complete on the worker")
    assert queues.queue_rows([run_id])[run_id].takeovers == 0


def test_a_worker_needs_a_store_with_a_queue() -> None:
    with pytest.raises(QueueUnsupported, match="SQLite"):
        Worker(InMemoryCheckpointer(), flows=[effects_flow])
