"""The run queue on SQLite: two tables beside the journal, claims under ``BEGIN IMMEDIATE``.

The store's clock is this machine's (``time.time()``): every process sharing a SQLite
file runs on it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from purpose_agent.errors import RunNotFound
from purpose_agent.runtime.checkpoint._prepare import prepare
from purpose_agent.runtime.journal import Lease
from purpose_agent.runtime.queue import (
    CLAIMABLE,
    Claim,
    DuplicateEnqueue,
    QueueEntry,
    QueueRow,
    WorkerInfo,
    queue_row,
    resume_commit,
    worker_info,
)

if TYPE_CHECKING:
    from purpose_agent.runtime.checkpoint.sqlite import SQLiteCheckpointer

# Appended to the store's schema (statements split on ';': none in the comments).
# seq orders a queue by age; active is 1 while the run may need a worker (an index
# filter only: the run's status and lease decide, see the package docstring).
QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,
    flow TEXT NOT NULL, priority INTEGER NOT NULL, available_at REAL NOT NULL,
    enqueued_at REAL NOT NULL, dedup_key TEXT UNIQUE, active INTEGER NOT NULL DEFAULT 1,
    takeovers INTEGER NOT NULL DEFAULT 0, claims INTEGER NOT NULL DEFAULT 0, worker TEXT);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (queue, priority DESC, seq) WHERE active = 1;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, version TEXT NOT NULL,
    started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, in_flight INTEGER NOT NULL,
    concurrency INTEGER NOT NULL, queues TEXT NOT NULL, flows TEXT NOT NULL,
    stopped_at REAL)
"""

_ROW = ("run_id, queue, flow, priority, available_at, enqueued_at, dedup_key, active, "
        "takeovers, claims, worker")
_WORKER = ("id, host, pid, version, started_at, heartbeat_at, in_flight, concurrency, "
           "queues, flows, stopped_at")


def insert_entry(db: sqlite3.Connection, run_id: str, entry: QueueEntry) -> None:
    """The run's queue row, in the enqueue's own transaction (the caller's). Raises
    DuplicateEnqueue when the dedup key is taken (the transaction then rolls back)."""
    if entry.dedup_key is not None:
        row = db.execute("SELECT run_id FROM queue WHERE dedup_key = ?",
                         (entry.dedup_key,)).fetchone()
        if row is not None:
            raise DuplicateEnqueue(row[0])
    now = time.time()
    db.execute(
        "INSERT INTO queue (run_id, queue, flow, priority, available_at, enqueued_at, "
        "dedup_key) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
        (run_id, entry.queue, entry.flow, entry.priority, now + entry.delay, now,
         entry.dedup_key))


def settle_entry(db: sqlite3.Connection, run_id: str, status: str) -> None:
    """In a commit that leaves the run in ``status`` (the caller's transaction): a run
    that is no longer queued or running needs no worker, so its queue row leaves the
    queue's index with the commit itself (no transaction of its own afterwards)."""
    if status not in CLAIMABLE:
        db.execute("UPDATE queue SET active = 0 WHERE run_id = ? AND active = 1", (run_id,))


class SQLiteQueue:
    """The queue operations of a :class:`SQLiteCheckpointer` (see QueueStore)."""

    def __init__(self, store: SQLiteCheckpointer) -> None:
        self.store = store

    def now(self) -> float:
        return time.time()

    def claim(self, *, owner: str, worker: str, queues: tuple[str, ...],
              flows: tuple[str, ...], ttl: float,
              takeover_limit: int | None = None) -> Claim | None:
        if not queues or not flows:
            return None
        marks_q, marks_f = ",".join("?" * len(queues)), ",".join("?" * len(flows))
        pick = ("SELECT q.run_id, q.flow, q.queue, r.owner, r.fence FROM queue q "
                "JOIN runs r ON r.run_id = q.run_id "
                f"WHERE q.active = 1 AND q.queue IN ({marks_q}) AND q.flow IN ({marks_f}) "
                "AND q.available_at <= ? AND r.status IN ('queued', 'running') "
                "AND (r.owner IS NULL OR r.lease_expires_at <= ?) "
                "ORDER BY q.priority DESC, q.seq LIMIT 1")
        # A read first, without the write lock: an idle worker's poll finds nothing and
        # never holds up the processes that write. Only a run seen claimable is picked
        # again under BEGIN IMMEDIATE (another worker may have taken it meanwhile).
        now = time.time()
        if not self._read(pick, (*queues, *flows, now, now)):
            return None
        store = self.store
        with store._loading_tx() as db:
            now = time.time()
            row = db.execute(pick, (*queues, *flows, now, now)).fetchone()
            if row is None:
                return None
            run_id, flow, queue, previous, fence = row
            taken_over = previous is not None
            fence, expires = fence + 1, now + ttl
            db.execute("UPDATE runs SET owner = ?, lease_expires_at = ?, fence = ? "
                       "WHERE run_id = ?", (owner, expires, fence, run_id))
            takeovers = db.execute(
                "UPDATE queue SET takeovers = takeovers + ?, claims = claims + 1, "
                "worker = ? WHERE run_id = ? RETURNING takeovers",
                (int(taken_over), worker, run_id)).fetchone()[0]
            if takeover_limit is not None and takeovers > takeover_limit:
                lease = Lease(run_id, owner, fence, expires, store.next_seq(run_id))
                return Claim(run_id, flow, queue, lease, takeovers, taken_over)
            # The run.resumed commit, written as any commit is (fenced by the lease just
            # taken), in this transaction; the reads see what it wrote so far.
            state = store.load_latest(run_id)
            if state is None:
                raise RunNotFound(f"no state for queued run {run_id!r} in {store!r}")
            written = time.time()
            result = store._apply(db, run_id, prepare(run_id, resume_commit(state, fence),
                                                      now=written))
            state.updated_at = written
            steps = store.load_steps(run_id, state.current_step + 1)
        lease = Lease(run_id, owner, fence, expires, result.events[-1].seq + 1)
        return Claim(run_id, flow, queue, lease, takeovers, taken_over, state, result.events,
                     steps, result.cancel_requested)

    def set_active(self, run_id: str, active: bool) -> None:
        with self.store._tx() as db:
            # Put back on its queue by a person (approve, resume): its takeovers count
            # again from zero.
            db.execute("UPDATE queue SET active = ?, takeovers = CASE WHEN ? THEN 0 ELSE "
                       "takeovers END WHERE run_id = ?", (int(active), int(active), run_id))

    def set_available_at(self, run_id: str, at: float) -> None:
        with self.store._tx() as db:
            db.execute("UPDATE queue SET available_at = ?, active = 1 WHERE run_id = ?",
                       (at, run_id))

    def queue_rows(self, run_ids: list[str] | None = None) -> dict[str, QueueRow]:
        sql, params = f"SELECT {_ROW} FROM queue", ()  # type: tuple[str, tuple[Any, ...]]
        if run_ids is not None:
            if not run_ids:
                return {}
            sql += f" WHERE run_id IN ({','.join('?' * len(run_ids))})"
            params = tuple(run_ids)
        rows = self._read(sql, params)
        return {r[0]: queue_row(r) for r in rows}

    def register_worker(self, info: WorkerInfo) -> None:
        with self.store._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO workers ({_WORKER}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (info.id, info.host, info.pid, info.version, time.time(), time.time(),
                        info.in_flight, info.concurrency, json.dumps(list(info.queues)),
                        json.dumps(list(info.flows)), None))

    def beat_worker(self, worker_id: str, in_flight: int) -> None:
        with self.store._tx() as db:
            db.execute("UPDATE workers SET heartbeat_at = ?, in_flight = ? WHERE id = ?",
                       (time.time(), in_flight, worker_id))

    def stop_worker(self, worker_id: str) -> None:
        with self.store._tx() as db:
            db.execute("UPDATE workers SET stopped_at = ?, in_flight = 0 WHERE id = ?",
                       (time.time(), worker_id))

    def list_workers(self) -> list[WorkerInfo]:
        rows = self._read(f"SELECT {_WORKER} FROM workers ORDER BY started_at DESC")
        return [worker_info(r) for r in rows]

    def notify(self) -> None:
        """Nothing to do: SQLite workers poll."""

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.store._read(sql, params)
        except Exception as exc:
            # A store of the previous schema opened read-only has no queue tables yet:
            # it has no queued runs and no workers.
            if "no such table" in str(exc):
                return []
            raise
