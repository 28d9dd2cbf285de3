"""Live output on PostgreSQL: ``NOTIFY`` on a channel of the run, so a follower connected
to the same database sees a streaming answer as it comes, from any host.

Best effort, like the live file it replaces on this store: never journaled, lost when
nobody listens (a follower sees the pieces sent after its ``LISTEN``), and a failure to
notify is not the run's. Each notification is one item as ASCII JSON under PostgreSQL's
8000-byte payload limit; a longer item is sent as several, its text split between them.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import psycopg

from purpose_agent.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

NOTIFY_LIMIT = 7900  # bytes per payload: PostgreSQL refuses 8000 and more


def live_channel(schema: str, run_id: str) -> str:
    """The run's channel: one per schema and run, a valid identifier whatever the id."""
    digest = hashlib.sha256(f"{schema}\0{run_id}".encode()).hexdigest()[:40]
    return f"pa_live_{digest}"


def notify_payloads(item: dict[str, Any], limit: int = NOTIFY_LIMIT) -> list[str]:
    """``item`` as payloads of at most ``limit`` bytes (its ``text`` split if it must be);
    none for an item that cannot be made to fit (it is not shown: best effort)."""
    # ASCII JSON: one byte per character, and no encoding the server could refuse.
    payload = json.dumps(item, ensure_ascii=True)
    if len(payload) <= limit:
        return [payload]
    text = item.get("text")
    if not isinstance(text, str) or len(text) < 2:
        return []
    half = len(text) // 2
    return (notify_payloads({**item, "text": text[:half]}, limit)
            + notify_payloads({**item, "text": text[half:]}, limit))


class PostgresLive:
    """Live-output primitives of the PostgreSQL store (see :mod:`purpose_agent.runtime.live`)."""

    schema: str
    _conninfo: str

    def _connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError

    def publish_live(self, run_id: str, item: dict[str, Any]) -> None:
        """NOTIFY the run's followers of ``item``; a failure is ignored (best effort)."""
        channel = live_channel(self.schema, run_id)
        try:
            with self._connection() as conn:
                # Autocommit: each is delivered at once, in the order sent (they commit
                # in that order, and notifications are delivered in commit order).
                for payload in notify_payloads(item):
                    conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        except (StoreError, psycopg.Error):
            pass  # live output is a convenience: the journal is the record

    def listen_live(self, run_id: str) -> LiveListener | None:
        """A listener on the run's channel, or None when it cannot connect."""
        try:
            return LiveListener(self._conninfo, live_channel(self.schema, run_id))
        except psycopg.Error:
            return None


class LiveListener:
    """The run's live items, on a connection of its own (``LISTEN`` is session state,
    which a pooled or PgBouncer connection must not keep)."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
        self._conn.execute(f'LISTEN "{channel}"')  # hex digits: nothing to escape

    def read(self) -> list[dict[str, Any]]:
        """The items notified since the last read (none if the connection was lost)."""
        return list(self._items())

    def _items(self) -> Iterator[dict[str, Any]]:
        try:
            for note in self._conn.notifies(timeout=0.0):
                try:
                    item = json.loads(note.payload)
                except ValueError:
                    continue  # not ours: anyone may NOTIFY a channel
                if isinstance(item, dict):
                    yield item
        except psycopg.Error:
            return

    def close(self) -> None:
        self._conn.close()


__all__ = ["NOTIFY_LIMIT", "LiveListener", "PostgresLive", "live_channel", "notify_payloads"]
