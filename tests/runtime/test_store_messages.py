"""Run mailboxes (``send_message`` / ``receive_message``) behave alike on every store:
ordered per run, delivered once per receiver key, duplicates by dedup key dropped."""

from __future__ import annotations

import pytest

from purpose_agent.errors import RunNotFound, SerializationError
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import Commit
from purpose_agent.runtime.state import RunState, RunStatus


def make_run(cp: BaseCheckpointer, run_id: str) -> None:
    cp.commit(run_id, Commit(events=[PAEvent(run_id, EventKind.RUN_STARTED, seq=1)],
                             state=RunState(run_id=run_id, status=RunStatus.PAUSED),
                             create=True))


def test_messages_are_kept_in_order_and_each_delivered_once(store: BaseCheckpointer) -> None:
    make_run(store, "r")
    for n in (1, 2, 3):
        assert store.send_message("r", "ping", {"n": n}).seq == n
    store.send_message("r", "other", "x")
    # The first receiver key takes the oldest message of its topic, for good.
    assert store.receive_message("r", "ping", "k1").payload == {"n": 1}
    assert store.receive_message("r", "ping", "k1").payload == {"n": 1}  # asked again
    assert store.receive_message("r", "ping", "k2").payload == {"n": 2}
    assert store.receive_message("r", "ping", "k3").payload == {"n": 3}
    assert store.receive_message("r", "ping", "k4") is None
    assert store.receive_message("r", "other", "k5").payload == "x"
    listed = store.list_messages("r")
    assert [(m.seq, m.topic, m.delivered_to) for m in listed] == [
        (1, "ping", "k1"), (2, "ping", "k2"), (3, "ping", "k3"), (4, "other", "k5")]
    assert store.list_messages("r", undelivered=True) == []


def test_a_duplicate_dedup_key_is_dropped(store: BaseCheckpointer) -> None:
    make_run(store, "r")
    make_run(store, "s")
    assert store.send_message("r", "t", 1, dedup_key="once") is not None
    assert store.send_message("r", "t", 2, dedup_key="once") is None
    assert store.send_message("s", "t", 3, dedup_key="once") is not None  # per run
    assert [m.payload for m in store.list_messages("r")] == [1]


def test_bad_messages_are_refused_before_anything_is_stored(store: BaseCheckpointer) -> None:
    make_run(store, "r")
    with pytest.raises(RunNotFound):
        store.send_message("nope", "t", 1)
    with pytest.raises(SerializationError, match="message"):
        store.send_message("r", "t", {"x": {1, 2}})
    with pytest.raises(ValueError, match="topic"):
        store.send_message("r", "", 1)
    with pytest.raises(ValueError, match="dedup_key"):
        store.send_message("r", "t", 1, dedup_key="")
    assert store.list_messages("r") == []


def test_deleting_a_run_deletes_its_mailbox(store: BaseCheckpointer) -> None:
    make_run(store, "r")
    store.send_message("r", "t", 1)
    store.delete_run("r")
    make_run(store, "r")
    assert store.list_messages("r") == []


def test_messages_reach_another_process(shared) -> None:
    make_run(shared.store, "r")
    shared.store.send_message("r", "t", {"from": "here"})
    other = shared.reopen()
    try:
        assert other.receive_message("r", "t", "k").payload == {"from": "here"}
        assert shared.store.receive_message("r", "t", "k2") is None
    finally:
        other.close()


def test_a_schema_4_sqlite_store_gets_its_mailboxes_in_place(tmp_path) -> None:
    import sqlite3

    from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
    from purpose_agent.runtime.checkpoint.sqlite import SCHEMA_VERSION

    path = tmp_path / "old.db"
    with SQLiteCheckpointer(path) as cp:
        make_run(cp, "r")
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE messages; UPDATE meta SET value = '4' WHERE key = "
                     "'schema_version';")
    db.close()
    with SQLiteCheckpointer(path, read_only=True) as reader:  # reads it as it is
        assert reader.list_messages("r") == []
    with SQLiteCheckpointer(path) as cp:  # a writer upgrades it
        assert cp.send_message("r", "t", "hello").seq == 1
        assert cp.load_latest("r") is not None
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    db.close()


def test_a_schema_2_postgres_store_gets_its_mailboxes_in_place(pg_new_url: str) -> None:
    import psycopg

    from purpose_agent.runtime.checkpoint import open_checkpointer
    from purpose_agent.runtime.checkpoint._postgres_db import SCHEMA_VERSION, split_url

    cp = open_checkpointer(pg_new_url)
    make_run(cp, "r")
    schema = cp.schema  # type: ignore[attr-defined]
    cp.close()
    with psycopg.connect(split_url(pg_new_url)[0], autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".messages')
        conn.execute(f"UPDATE \"{schema}\".meta SET value = '2'")
    cp = open_checkpointer(pg_new_url)
    try:
        assert cp.send_message("r", "t", "hello").seq == 1
        assert cp.receive_message("r", "t", "k").payload == "hello"
    finally:
        cp.close()
    with psycopg.connect(split_url(pg_new_url)[0], autocommit=True) as conn:
        found = conn.execute(f'SELECT value FROM "{schema}".meta').fetchone()
    assert found == (str(SCHEMA_VERSION),)
