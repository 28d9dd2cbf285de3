"""Durable waits on a queue: a worker parks a run that sleeps or waits for a message on
its queue (QUEUED, claimable at its wake-up time through the queue's own available-at),
so the run holds no worker slot; it wakes at its journaled time, once, also after the
worker that parked it was SIGKILLed; a message sent from another process wakes it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from queue_flows import effects as effects_flow
from queue_flows import listener, sleepy
from queue_helpers import effects, wait_for
from queue_processes import SCRIPT, WorkerProcess

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.queue import queue_store
from purpose_agent.runtime.state import RunStatus


def parked(cp: BaseCheckpointer, run_id: str) -> bool:
    state = cp.load_latest(run_id)
    return (state is not None and state.status is RunStatus.QUEUED
            and state.pending is not None)


def done(cp: BaseCheckpointer, run_id: str) -> bool:
    state = cp.load_latest(run_id)
    return state is not None and state.status is RunStatus.COMPLETED


def test_a_sleeping_run_holds_no_worker_slot_and_wakes_once(queue_url: str,
                                                           queue_cp: BaseCheckpointer,
                                                           tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    worker = WorkerProcess(queue_url, log, "sleepy", "effects", concurrency=1)
    try:
        sleeper = sleepy.enqueue({"seconds": 4.0}, checkpointer=queue_cp)
        wait_for(lambda: parked(queue_cp, sleeper), timeout=30, what="the sleeper to park")
        wake_at = queue_cp.load_latest(sleeper).pending["wake_at"]
        row = queue_store(queue_cp).queue_rows([sleeper])[sleeper]
        assert row.available_at == wake_at  # the queue's own delay mechanism
        # The only slot is free: another run goes through while the sleeper sleeps.
        other = effects_flow.enqueue({}, checkpointer=queue_cp)
        wait_for(lambda: done(queue_cp, other), timeout=30, what="the other run")
        assert queue_cp.load_latest(other).updated_at < wake_at
        wait_for(lambda: done(queue_cp, sleeper), timeout=30, what="the sleeper to wake")
    finally:
        worker.terminate()
        worker.wait()
    counts = effects(log)
    assert counts[f"{sleeper} nap before"] == 1 and counts[f"{sleeper} nap after"] == 1
    resumed = queue_cp.list_events(sleeper, kinds=EventKind.RUN_RESUMED)
    assert len(resumed) == 2  # claimed to start, claimed once more at its wake-up time
    assert resumed[1].ts >= wake_at
    assert len(queue_cp.list_events(sleeper, kinds=EventKind.TIMER_SET)) == 1


def test_a_run_parked_by_a_killed_worker_wakes_in_another(queue_url: str,
                                                          queue_cp: BaseCheckpointer,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    first = WorkerProcess(queue_url, log, "sleepy")
    sleeper = sleepy.enqueue({"seconds": 3.0}, checkpointer=queue_cp)
    try:
        wait_for(lambda: parked(queue_cp, sleeper), timeout=30, what="the sleeper to park")
    finally:
        first.kill()  # SIGKILL while the run sleeps
    wake_at = queue_cp.load_latest(sleeper).pending["wake_at"]
    second = WorkerProcess(queue_url, log, "sleepy")
    third = WorkerProcess(queue_url, log, "sleepy")  # two workers: it wakes in one of them
    try:
        wait_for(lambda: done(queue_cp, sleeper), timeout=30, what="the sleeper to wake")
    finally:
        for worker in (second, third):
            worker.terminate()
            worker.wait()
    counts = effects(log)
    assert counts[f"{sleeper} nap before"] == 1 and counts[f"{sleeper} nap after"] == 1
    resumed = queue_cp.list_events(sleeper, kinds=EventKind.RUN_RESUMED)
    assert len(resumed) == 2 and resumed[1].ts >= wake_at


def test_a_message_sent_from_the_command_line_wakes_a_queued_run(queue_url: str,
                                                                 queue_cp: BaseCheckpointer,
                                                                 tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    worker = WorkerProcess(queue_url, log, "listener")
    try:
        run_id = listener.enqueue({}, checkpointer=queue_cp)
        wait_for(lambda: parked(queue_cp, run_id), timeout=30, what="the run to park")
        assert queue_cp.load_latest(run_id).pending["topic"] == "note"
        runs = subprocess.run([SCRIPT, "runs", "--db", queue_url], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        assert "queued (waits for 'note')" in runs.stdout, runs.stdout
        assert f"{run_id} waits on queue 'default': waiting for message 'note'" in runs.stdout
        sent = subprocess.run([SCRIPT, "send", run_id, "note", json.dumps({"hi": 1}),
                               "--db", queue_url], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert f"message 1 on topic 'note' stored for run {run_id}" in sent.stdout
        wait_for(lambda: done(queue_cp, run_id), timeout=30, what="the run to finish")
    finally:
        worker.terminate()
        worker.wait()
    assert queue_cp.load_latest(run_id).data["got"] == {"hi": 1}
    counts = effects(log)
    assert counts[f"{run_id} listen before"] == 1 and counts[f"{run_id} listen after"] == 1


def test_a_queued_parent_waits_on_its_queue_for_its_children(queue_url: str,
                                                             queue_cp: BaseCheckpointer,
                                                             tmp_path: Path) -> None:
    from queue_flows import family

    log = tmp_path / "effects.log"
    worker = WorkerProcess(queue_url, log, "family", "kid", concurrency=1)
    try:
        run_id = family.enqueue({}, checkpointer=queue_cp)
        wait_for(lambda: done(queue_cp, run_id), timeout=60, what="the parent to finish")
    finally:
        worker.terminate()
        worker.wait()
    kids = [f"{run_id}.c1-0", f"{run_id}.c1-1"]
    assert queue_store(queue_cp).queue_rows(kids).keys() == set(kids)  # enqueued, not inline
    counts = effects(log)
    assert all(counts[f"{kid} kid_work work"] == 1 for kid in kids)
    assert len(queue_cp.load_latest(run_id).data["outs"]) == 2


def test_a_queued_gather_enqueues_every_child_and_wakes_once_all_ended(
        queue_url: str, queue_cp: BaseCheckpointer, tmp_path: Path) -> None:
    from queue_flows import together

    log = tmp_path / "effects.log"
    worker = WorkerProcess(queue_url, log, "together", "kid", concurrency=2)
    try:
        run_id = together.enqueue({}, checkpointer=queue_cp)
        wait_for(lambda: done(queue_cp, run_id), timeout=60, what="the parent to finish")
    finally:
        worker.terminate()
        worker.wait()
    kids = [f"{run_id}.c1-0", f"{run_id}.c1-1"]
    counts = effects(log)
    assert all(counts[f"{kid} kid_work work"] == 1 for kid in kids)
    finished = queue_cp.list_events(run_id, kinds=EventKind.CHILD_FINISHED)
    assert sorted(e.payload["child"] for e in finished) == kids
