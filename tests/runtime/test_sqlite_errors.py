"""SQLite errors are told apart by SQLite's own result code, never by words in the
message: a message naming a table ``fullname`` or ``locked_rows`` is not a full disk or
a busy database, and a real full disk still says so."""

from __future__ import annotations

import sqlite3

import pytest

from purpose_agent.errors import StoreError
from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.state import RunState

PROGRESS = EventKind.NODE_PROGRESS


@pytest.mark.parametrize("table", ["fullname", "locked_rows", "busy_queue", "readonly_copy"])
def test_a_message_that_names_a_table_is_not_taken_for_a_disk_or_lock_problem(tmp_path,
                                                                              table):
    db_path = tmp_path / "runs.db"
    SQLiteCheckpointer(db_path).close()
    # Another program added a trigger on the journal that reads a table it never created:
    # every commit then fails with "no such table: main.<table>".
    raw = sqlite3.connect(db_path)
    raw.execute(f"CREATE TRIGGER audit AFTER INSERT ON journal BEGIN "
                f"INSERT INTO {table} VALUES (1); END")
    raw.commit()
    raw.close()
    cp = SQLiteCheckpointer(db_path)
    with pytest.raises(StoreError, match=f"no such table: main.{table}") as err:
        cp.save_event(create_event("r1", PROGRESS))
    message = str(err.value)
    for wrong in ("free space", "held the database", "read-only"):
        assert wrong not in message
    assert "earlier commits are intact" in message
    assert cp.list_runs() == []


def test_a_full_database_is_the_disk_full_error(tmp_path):
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    cp.save_snapshot("r1", RunState(run_id="r1"))
    pages = cp._db.execute("PRAGMA page_count").fetchone()[0]
    cp._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="full; free space and retry") as err:
        cp.save_event(create_event("r1", PROGRESS, pad="x" * 20_000))
    assert isinstance(err.value.__cause__, sqlite3.Error)
    assert err.value.__cause__.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL


def test_a_busy_database_says_another_process_held_it(tmp_path):
    db_path = tmp_path / "runs.db"
    cp = SQLiteCheckpointer(db_path, busy_timeout=0.05)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="another process held the database"):
            cp.save_event(create_event("r1", PROGRESS))
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_busy_timeout_is_set_once_by_the_connection(tmp_path, monkeypatch):
    statements: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)  # to watch the statements it runs
    cp = SQLiteCheckpointer(tmp_path / "runs.db", busy_timeout=7)
    assert not [s for s in statements if "busy_timeout" in s]
    assert cp._db.execute("PRAGMA busy_timeout").fetchone()[0] == 7000
