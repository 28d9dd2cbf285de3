"""flow.enqueue: a QUEUED run journaled like a start, its queue row, dedup keys, claims."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from queue_flows import effects

from purpose_agent import JSONLCheckpointer
from purpose_agent.errors import LeaseError, QueueError, QueueUnsupported, RunStateError
from purpose_agent.flow.queueing import came_from_queue, fail_run, take_up
from purpose_agent.runtime.checkpoint import (
    BaseCheckpointer,
    InMemoryCheckpointer,
    SQLiteCheckpointer,
    open_checkpointer,
)
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.owners import driver
from purpose_agent.runtime.queue import parse_delay, queue_store
from purpose_agent.runtime.state import RunStatus


def test_enqueue_journals_a_queued_run_and_runs_nothing(queue_cp: BaseCheckpointer) -> None:
    run_id = effects.enqueue({"ticket": 7}, checkpointer=queue_cp, queue="mail", priority=3)
    state = queue_cp.load_latest(run_id)
    assert state is not None
    assert state.status is RunStatus.QUEUED
    assert state.data == {"ticket": 7}
    assert state.current_node == "one" and state.current_step == 0
    assert state.flow == "effects" and state.flow_ref
    events = queue_cp.list_events(run_id)
    assert [e.kind for e in events] == [EventKind.RUN_STARTED]
    assert events[0].payload["queue"] == "mail" and events[0].payload["priority"] == 3
    info = queue_cp.run_info(run_id)
    assert info is not None and info.owner is None  # no lease: nobody advances it
    row = queue_store(queue_cp).queue_rows([run_id])[run_id]
    assert (row.queue, row.flow, row.priority, row.active) == ("mail", "effects", 3, True)
    assert queue_cp.list_runs(status="queued") == [run_id]


def test_a_dedup_key_returns_the_run_that_holds_it(queue_cp: BaseCheckpointer) -> None:
    first = effects.enqueue({"n": 1}, checkpointer=queue_cp, dedup_key="order-17")
    again = effects.enqueue({"n": 2}, checkpointer=queue_cp, dedup_key="order-17")
    other = effects.enqueue({"n": 3}, checkpointer=queue_cp, dedup_key="order-18")
    assert again == first and other != first
    assert sorted(queue_cp.list_runs()) == sorted([first, other])
    state = queue_cp.load_latest(first)
    assert state is not None and state.data == {"n": 1}  # the second enqueue wrote nothing


def test_a_taken_run_id_is_refused(queue_cp: BaseCheckpointer) -> None:
    effects.enqueue({}, checkpointer=queue_cp, run_id="r-1")
    with pytest.raises(RunStateError, match="already exists"):
        effects.enqueue({}, checkpointer=queue_cp, run_id="r-1")
    assert len(queue_store(queue_cp).queue_rows()) == 1


@pytest.mark.parametrize(("option", "value", "message"), [
    ("queue", "bad name!", "queue name"),
    ("queue", "", "queue name"),
    ("delay", "10 parsecs", "not a duration"),
    ("delay", -1, "between 0"),
    ("priority", 1.5, "priority"),
    ("dedup_key", "", "dedup key"),
])
def test_bad_options_are_refused_before_anything_is_written(
        queue_cp: BaseCheckpointer, option: str, value: object, message: str) -> None:
    with pytest.raises(QueueError, match=message):
        effects.enqueue({}, checkpointer=queue_cp, **{option: value})  # type: ignore[arg-type]
    assert queue_cp.list_runs() == []


def test_delays_parse_with_units() -> None:
    assert [parse_delay(v) for v in ("10s", "500ms", "5m", "2h", "1d", "3", 4, None)] == \
        [10.0, 0.5, 300.0, 7200.0, 86400.0, 3.0, 4.0, 0.0]


@pytest.mark.parametrize("make", [lambda tmp: JSONLCheckpointer(tmp / "j"),
                                  lambda tmp: InMemoryCheckpointer()], ids=["jsonl", "memory"])
def test_stores_without_a_queue_say_which_ones_have_one(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    cp = make(tmp_path)
    with pytest.raises(QueueUnsupported, match=r"SQLite .* PostgreSQL"):
        effects.enqueue({}, checkpointer=cp)
    assert cp.list_runs() == []


def _claim(cp: BaseCheckpointer, owner: str, **kw: object):  # type: ignore[no-untyped-def]
    options = {"worker": "w-test", "queues": ("default",), "flows": ("effects",), "ttl": 30.0}
    options.update(kw)
    return queue_store(cp).claim(owner=owner, **options)  # type: ignore[arg-type]


def test_claims_take_the_highest_priority_then_the_oldest(queue_cp: BaseCheckpointer) -> None:
    low = effects.enqueue({}, checkpointer=queue_cp, run_id="low", priority=0)
    old = effects.enqueue({}, checkpointer=queue_cp, run_id="old", priority=5)
    new = effects.enqueue({}, checkpointer=queue_cp, run_id="new", priority=5)
    effects.enqueue({}, checkpointer=queue_cp, run_id="later", delay="1h", priority=9)
    effects.enqueue({}, checkpointer=queue_cp, run_id="elsewhere", queue="other", priority=9)
    with driver() as owner:
        order = []
        while (claim := _claim(queue_cp, owner)) is not None:
            order.append(claim.run_id)
            assert claim.lease.owner == owner and claim.lease.next_seq == 3
            assert not claim.taken_over and claim.takeovers == 0
    assert order == [old, new, low]  # "later" waits an hour, "elsewhere" is another queue


def test_a_claim_takes_the_lease_so_nobody_else_gets_the_run(queue_cp: BaseCheckpointer) -> None:
    run_id = effects.enqueue({}, checkpointer=queue_cp)
    with driver() as first, driver() as second:
        claim = _claim(queue_cp, first)
        assert claim is not None and claim.run_id == run_id
        info = queue_cp.run_info(run_id)
        assert info is not None and info.owner == first
        assert _claim(queue_cp, second) is None
        assert _claim(queue_cp, second, flows=("other-flow",)) is None


def test_an_expired_claim_is_taken_over_and_counted(queue_cp: BaseCheckpointer) -> None:
    run_id = effects.enqueue({}, checkpointer=queue_cp)
    with driver() as first, driver() as second:
        gone = _claim(queue_cp, first, ttl=0.0)  # expires at once: as if its worker died
        assert gone is not None
        claim = _claim(queue_cp, second)
        assert claim is not None and claim.run_id == run_id
        assert claim.taken_over and claim.takeovers == 1
        assert claim.lease.fence == gone.lease.fence + 1
    assert queue_store(queue_cp).queue_rows()[run_id].claims == 2


from purpose_agent.runtime.checkpoint.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA  # noqa: E402


def test_a_schema_3_sqlite_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteCheckpointer(path).close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE queue; DROP TABLE workers; "
                     "UPDATE meta SET value = '3' WHERE key = 'schema_version';")
    db.close()
    cp = SQLiteCheckpointer(path)
    run_id = effects.enqueue({}, checkpointer=cp)
    assert cp.run_info(run_id) is not None
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchone() == (str(SQLITE_SCHEMA),)


def test_a_schema_1_postgres_store_is_upgraded_in_place(pg_new_url: str) -> None:
    import psycopg

    cp = open_checkpointer(pg_new_url)
    schema = cp.schema  # type: ignore[attr-defined]
    cp.close()
    from purpose_agent.runtime.checkpoint._postgres_db import split_url

    with psycopg.connect(split_url(pg_new_url)[0], autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".queue, "{schema}".workers')
        conn.execute(f"UPDATE \"{schema}\".meta SET value = '1'")
    cp = open_checkpointer(pg_new_url)
    run_id = effects.enqueue({}, checkpointer=cp)
    assert queue_store(cp).queue_rows([run_id])
    cp.close()


def test_fail_run_fails_a_claimed_run_under_its_lease_and_only_then(
        queue_cp: BaseCheckpointer) -> None:
    run_id = effects.enqueue({}, checkpointer=queue_cp)
    with driver() as first, driver() as second:
        stale = _claim(queue_cp, first, ttl=0.0)
        claim = _claim(queue_cp, second)  # took the run over: the first lease is stale
        assert stale is not None and claim is not None
        events = queue_cp.list_events(run_id)
        with pytest.raises(LeaseError):
            fail_run(effects, queue_cp, stale.lease, RunStateError("from a stale claim"))
        assert queue_cp.list_events(run_id) == events  # nothing written
        failed = fail_run(effects, queue_cp, claim.lease, RunStateError("given up"))
    assert failed.status is RunStatus.FAILED and failed.error is not None
    assert failed.error["message"] == "given up" and failed.error["node"] == "one"
    info = queue_cp.run_info(run_id)
    assert info is not None and info.status is RunStatus.FAILED and info.owner is None
    assert queue_cp.list_events(run_id)[-1].kind == EventKind.RUN_ERROR


def test_a_fork_of_a_queued_run_stays_in_process(queue_cp: BaseCheckpointer,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_EFFECTS", str(tmp_path / "effects.log"))
    run_id = effects.enqueue({}, checkpointer=queue_cp)
    with driver() as owner:  # a worker's part: claim it and advance it to its end
        claim = _claim(queue_cp, owner)
        assert claim is not None
        runner = take_up(effects, queue_cp, claim)
        assert runner is not None and runner.drive().status is RunStatus.COMPLETED
    fork = effects.fork(run_id, at_step=1, checkpointer=queue_cp, new_run_id="the-fork")
    assert fork.status is RunStatus.PENDING
    # The fork has no place in any queue: no worker claims it, and resume/approve advance
    # it here, as for any run started in-process.
    assert not came_from_queue(queue_cp, "the-fork") and came_from_queue(queue_cp, run_id)
    assert "the-fork" not in queue_store(queue_cp).queue_rows()
    with driver() as owner:
        assert _claim(queue_cp, owner) is None
    assert effects.resume("the-fork", checkpointer=queue_cp).status is RunStatus.COMPLETED


def test_the_commit_that_ends_or_pauses_a_run_takes_it_off_its_queue(
        queue_cp: BaseCheckpointer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_EFFECTS", str(tmp_path / "effects.log"))
    run_id = effects.enqueue({}, checkpointer=queue_cp)
    queues = queue_store(queue_cp)
    with driver() as owner:
        claim = _claim(queue_cp, owner)
        assert claim is not None
        runner = take_up(effects, queue_cp, claim)
        assert runner is not None
        assert queues.queue_rows([run_id])[run_id].active  # running: still on its queue
        assert runner.drive().status is RunStatus.COMPLETED
    # At once, by the completing commit itself: no transaction of a worker afterwards.
    assert not queues.queue_rows([run_id])[run_id].active


def test_an_idle_sqlite_poll_does_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    cp = SQLiteCheckpointer(path, busy_timeout=5.0)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a commit
        with driver() as owner:
            assert _claim(cp, owner) is None  # nothing queued: a read, no lock needed
        writer.execute("COMMIT")
        run_id = effects.enqueue({}, checkpointer=cp)
        with driver() as owner:
            claim = _claim(cp, owner)
        assert claim is not None and claim.run_id == run_id
    finally:
        writer.close()
        cp.close()
