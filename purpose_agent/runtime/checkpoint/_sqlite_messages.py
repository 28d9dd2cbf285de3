"""The SQLite store's mailboxes: the ``messages`` table (schema 5), one row per message
sent to a run, written under ``BEGIN IMMEDIATE`` like every other write."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from purpose_agent.errors import RunNotFound

# Appended to the store's schema (statements split on ';': none in the comments).
# seq numbers a run's messages 1, 2, 3 … in the order they were sent; delivered_to is the
# step key of the wait_for that took the message (NULL while nobody has). SQLite's UNIQUE
# lets many rows have a NULL dedup_key.
MESSAGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL,
    sent_at REAL NOT NULL, dedup_key TEXT, delivered_to TEXT,
    PRIMARY KEY (run_id, seq), UNIQUE (run_id, dedup_key)) WITHOUT ROWID
"""


class SQLiteMailboxes:
    """Message primitives of :class:`~purpose_agent.runtime.checkpoint.sqlite.SQLiteCheckpointer`."""

    if TYPE_CHECKING:  # the store's own
        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
        def _not_found(self, run_id: str) -> RunNotFound: ...

    def _send_message(self, run_id: str, topic: str, payload_json: str,
                      dedup_key: str | None, now: float) -> int | None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise self._not_found(run_id)
            if dedup_key is not None and db.execute(
                    "SELECT 1 FROM messages WHERE run_id = ? AND dedup_key = ?",
                    (run_id, dedup_key)).fetchone() is not None:
                return None
            seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE run_id = ?",
                             (run_id,)).fetchone()[0]
            db.execute("INSERT INTO messages (run_id, seq, topic, payload, sent_at, dedup_key) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, seq, topic, payload_json, now, dedup_key))
            return int(seq)

    def _receive_message(self, run_id: str, topic: str, key: str) -> tuple[int, str] | None:
        with self._tx() as db:
            row = db.execute("SELECT seq, payload FROM messages WHERE run_id = ? AND "
                             "delivered_to = ?", (run_id, key)).fetchone()
            if row is None:
                row = db.execute("SELECT seq, payload FROM messages WHERE run_id = ? AND "
                                 "topic = ? AND delivered_to IS NULL ORDER BY seq LIMIT 1",
                                 (run_id, topic)).fetchone()
                if row is None:
                    return None
                db.execute("UPDATE messages SET delivered_to = ? WHERE run_id = ? AND seq = ?",
                           (key, run_id, row[0]))
            return int(row[0]), row[1]

    def _message_rows(self, run_id: str) -> list[tuple[Any, ...]]:
        try:
            return self._read("SELECT seq, topic, payload, sent_at, dedup_key, delivered_to "
                              "FROM messages WHERE run_id = ? ORDER BY seq", (run_id,))
        except Exception as exc:
            # A store of the previous schema opened read-only has no messages table: it
            # has no messages.
            if "no such table" in str(exc):
                return []
            raise




__all__ = ["MESSAGES_SCHEMA", "SQLiteMailboxes"]
