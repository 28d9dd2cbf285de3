"""Real worker processes: one killed with SIGKILL loses its run to another within a lease
period; one sent SIGTERM finishes its node, hands the run back at once and exits 0."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from queue_flows import gated
from queue_helpers import effects, wait_for
from queue_processes import WorkerProcess

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.owners import parse_owner
from purpose_agent.runtime.queue import queue_store
from purpose_agent.runtime.state import RunStatus

LEASE = 1.5


@pytest.fixture
def spawn_worker(queue_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def spawn(*flows: str, **options: object) -> WorkerProcess:
        worker = WorkerProcess(queue_url, tmp_path / "effects.log", *flows,
                               log=tmp_path / f"worker-{len(started)}.log", **options)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()


def _owner_pid(cp: BaseCheckpointer, run_id: str) -> int | None:
    info = cp.run_info(run_id)  # type: ignore[attr-defined]
    return None if info is None or not info.owner else parse_owner(info.owner).pid


def _committed(cp: BaseCheckpointer, run_id: str, step: str) -> bool:
    return any(rec.name == step and rec.status == "done"
               for rec in cp.load_steps(run_id, 1))  # type: ignore[attr-defined]


def test_a_killed_workers_run_is_taken_over_within_a_lease_and_resumes_at_its_node(
        queue_cp: BaseCheckpointer, spawn_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    run_id = gated.enqueue({"gate": str(gate)}, checkpointer=queue_cp)
    first = spawn_worker("gated")
    wait_for(lambda: _committed(queue_cp, run_id, "entered"), timeout=30,
             what="the first worker to commit the node's first step")
    first.kill()  # inside the node, its first step committed
    killed = time.monotonic()
    gate.touch()
    second = spawn_worker("gated")
    wait_for(lambda: _owner_pid(queue_cp, run_id) == second.pid
             or queue_cp.run_info(run_id).status is RunStatus.COMPLETED,  # type: ignore[attr-defined]
             timeout=LEASE + 10, what="the second worker to take the run over")
    took = time.monotonic() - killed
    wait_for(lambda: queue_cp.run_info(run_id).status is RunStatus.COMPLETED,  # type: ignore[attr-defined]
             timeout=30, what="the run to complete")
    assert took < LEASE + 3.0, f"takeover took {took:.1f}s with a {LEASE}s lease"
    seen = effects(tmp_path / "effects.log")
    # The committed step replayed; the node that was cut off ran again; "after" once.
    assert seen == {f"{run_id} wait_at_gate entered": 1, f"{run_id} after_gate after": 1}
    row = queue_store(queue_cp).queue_rows([run_id])[run_id]
    assert (row.takeovers, row.claims, row.worker) == (1, 2, second.id)
    events = queue_cp.list_events(run_id)  # raises if a seq is missing
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    resumed = [e.payload["previous"] for e in events if e.kind == EventKind.RUN_RESUMED]
    assert resumed == ["queued", "running"]


def test_sigterm_finishes_the_node_hands_the_run_back_and_exits_0(
        queue_cp: BaseCheckpointer, spawn_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    run_id = gated.enqueue({"gate": str(gate)}, checkpointer=queue_cp)
    worker = spawn_worker("gated", lease=60.0)  # a takeover would take a minute
    wait_for(lambda: effects(tmp_path / "effects.log")[f"{run_id} wait_at_gate entered"],
             timeout=30, what="the worker to enter the node")
    worker.terminate()
    gate.touch()  # the node in flight finishes after SIGTERM
    out = worker.wait(timeout=30)
    assert worker.proc.returncode == 0, out
    assert "1 released" in out
    info = queue_cp.run_info(run_id)  # type: ignore[attr-defined]
    assert info.status is RunStatus.RUNNING and info.owner is None  # handed back at once
    assert info.current_node == "after_gate"  # the node in flight was committed
    assert not effects(tmp_path / "effects.log")[f"{run_id} after_gate after"]
    [me] = queue_store(queue_cp).list_workers()
    assert me.stopped_at is not None
    started = time.monotonic()
    spawn_worker("gated", lease=60.0)
    wait_for(lambda: queue_cp.run_info(run_id).status is RunStatus.COMPLETED,  # type: ignore[attr-defined]
             timeout=20, what="another worker to finish the run")
    assert time.monotonic() - started < 20  # far below the 60 s lease: no expiry needed
    row = queue_store(queue_cp).queue_rows([run_id])[run_id]
    assert (row.takeovers, row.claims) == (0, 2)
    assert effects(tmp_path / "effects.log") == {f"{run_id} wait_at_gate entered": 1,
                                                 f"{run_id} after_gate after": 1}


def test_sigterm_stops_an_idle_worker_at_once(spawn_worker) -> None:  # type: ignore[no-untyped-def]
    worker = spawn_worker("gated", poll=5.0)
    worker.terminate()
    out = worker.wait(timeout=15)
    assert worker.proc.returncode == 0 and "stopped: no runs" in out
