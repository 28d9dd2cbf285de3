"""The PostgreSQL store's mailboxes: the ``messages`` table (schema 3). A send or a
delivery locks the run's ``runs`` row first (as every write of the run does), so a run's
message seqs follow each other and a message is delivered once, whoever writes."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from purpose_agent.errors import RunNotFound

if TYPE_CHECKING:
    import psycopg

# ``{s}`` is the quoted schema name. No ';' inside a statement (the text is split on it).
MESSAGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS {s}.messages (
    run_id text NOT NULL, seq bigint NOT NULL, topic text NOT NULL, payload text NOT NULL,
    sent_at double precision NOT NULL, dedup_key text, delivered_to text,
    PRIMARY KEY (run_id, seq), UNIQUE (run_id, dedup_key))
"""

_NOW = "extract(epoch FROM clock_timestamp())::float8"


class PostgresMailboxes:
    """Message primitives of :class:`~purpose_agent.runtime.checkpoint.postgres.PostgresCheckpointer`."""

    schema: str

    if TYPE_CHECKING:  # the store's own
        def _transaction(self) -> AbstractContextManager[psycopg.Cursor[tuple[Any, ...]]]: ...
        def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...
        def _not_found(self, run_id: str) -> RunNotFound: ...

    def clock(self) -> float:
        """The database server's clock (wake-up times are judged on it, not a worker's)."""
        return float(self._rows(f"SELECT {_NOW}", ())[0][0])

    def _locked(self, cur: psycopg.Cursor[tuple[Any, ...]], run_id: str) -> bool:
        return cur.execute(f'SELECT 1 FROM "{self.schema}".runs WHERE run_id = %s FOR UPDATE',
                           (run_id,)).fetchone() is not None

    def _send_message(self, run_id: str, topic: str, payload_json: str,
                      dedup_key: str | None, now: float) -> int | None:
        s = f'"{self.schema}"'
        with self._transaction() as cur:
            if not self._locked(cur, run_id):
                raise self._not_found(run_id)
            if dedup_key is not None and cur.execute(
                    f"SELECT 1 FROM {s}.messages WHERE run_id = %s AND dedup_key = %s",
                    (run_id, dedup_key)).fetchone() is not None:
                return None
            row = cur.execute(
                f"INSERT INTO {s}.messages (run_id, seq, topic, payload, sent_at, dedup_key) "
                f"SELECT %s, coalesce(max(seq), 0) + 1, %s, %s, %s, %s FROM {s}.messages "
                "WHERE run_id = %s RETURNING seq",
                (run_id, topic, payload_json, now, dedup_key, run_id)).fetchone()
            assert row is not None
            return int(row[0])

    def _receive_message(self, run_id: str, topic: str, key: str) -> tuple[int, str] | None:
        s = f'"{self.schema}"'
        with self._transaction() as cur:
            if not self._locked(cur, run_id):
                return None
            row = cur.execute(f"SELECT seq, payload FROM {s}.messages WHERE run_id = %s AND "
                              "delivered_to = %s", (run_id, key)).fetchone()
            if row is None:
                row = cur.execute(
                    f"UPDATE {s}.messages SET delivered_to = %s WHERE run_id = %s AND seq = ("
                    f"SELECT min(seq) FROM {s}.messages WHERE run_id = %s AND topic = %s AND "
                    "delivered_to IS NULL) RETURNING seq, payload",
                    (key, run_id, run_id, topic)).fetchone()
            return None if row is None else (int(row[0]), row[1])

    def _message_rows(self, run_id: str) -> list[tuple[Any, ...]]:
        return self._rows(f'SELECT seq, topic, payload, sent_at, dedup_key, delivered_to FROM '
                          f'"{self.schema}".messages WHERE run_id = %s ORDER BY seq', (run_id,))




__all__ = ["MESSAGES_SCHEMA", "PostgresMailboxes"]
