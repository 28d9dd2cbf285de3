"""The run queue on PostgreSQL: a claim is one statement (``FOR UPDATE SKIP LOCKED``).

Times are epoch seconds on the database's clock. ``NOTIFY`` on the store's channel is a
wake-up hint sent after (outside) the transaction that made a run claimable; workers
``LISTEN`` on it and poll with jitter all the same (a notification can be missed: a
worker that was reconnecting, a server restart).
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from purpose_agent.errors import RunNotFound
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._prepare import prepare, splice_header
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
    from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

_NOW = "extract(epoch FROM clock_timestamp())::float8"

# ``{s}`` is the quoted schema name; appended to the store's schema (split on ';').
QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS {s}.queue (
    run_id text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY,
    queue text NOT NULL, flow text NOT NULL, priority integer NOT NULL,
    available_at double precision NOT NULL, enqueued_at double precision NOT NULL,
    dedup_key text UNIQUE, active boolean NOT NULL DEFAULT true,
    takeovers integer NOT NULL DEFAULT 0, claims integer NOT NULL DEFAULT 0, worker text);
CREATE INDEX IF NOT EXISTS queue_ready ON {s}.queue (queue, priority DESC, seq) WHERE active;
CREATE TABLE IF NOT EXISTS {s}.workers (
    id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL, version text NOT NULL,
    started_at double precision NOT NULL, heartbeat_at double precision NOT NULL,
    in_flight integer NOT NULL, concurrency integer NOT NULL, queues text NOT NULL,
    flows text NOT NULL, stopped_at double precision)
"""

_ROW = ("run_id, queue, flow, priority, available_at, enqueued_at, dedup_key, active, "
        "takeovers, claims, worker")
_WORKER = ("id, host, pid, version, started_at, heartbeat_at, in_flight, concurrency, "
           "queues, flows, stopped_at")

# Pick the next claimable run and take its lease, in one statement: the rows it picks
# are locked (others skip them), the run's fence moves on, its queue row counts the
# claim (and the takeover, when a lease had to expire first).
_CLAIM = f"""
WITH picked AS (
    SELECT q.run_id, (r.owner IS NOT NULL) AS taken_over
    FROM {{s}}.queue q JOIN {{s}}.runs r ON r.run_id = q.run_id
    WHERE q.active AND q.queue = ANY(%(queues)s) AND q.flow = ANY(%(flows)s)
      AND q.available_at <= {_NOW} AND r.status IN ('queued', 'running')
      AND (r.owner IS NULL OR r.lease_expires_at <= {_NOW})
    ORDER BY q.priority DESC, q.seq LIMIT 1
    FOR UPDATE OF q, r SKIP LOCKED
), leased AS (
    UPDATE {{s}}.runs r SET owner = %(owner)s, lease_expires_at = {_NOW} + %(ttl)s,
        fence = r.fence + 1
    FROM picked WHERE r.run_id = picked.run_id
    RETURNING r.run_id, r.status, r.fence, r.owner, r.lease_expires_at,
        r.cancel_requested, r.next_seq, r.version, r.header
)
UPDATE {{s}}.queue q SET takeovers = q.takeovers + picked.taken_over::int,
    claims = q.claims + 1, worker = %(worker)s
FROM picked JOIN leased ON leased.run_id = picked.run_id
WHERE q.run_id = picked.run_id
RETURNING q.run_id, q.flow, q.queue, q.takeovers, picked.taken_over, leased.header,
    leased.status, leased.fence, leased.owner, leased.lease_expires_at,
    leased.cancel_requested, leased.next_seq, leased.version, {_NOW}
"""
# What the claim's transaction reads of the run it leased, sent together (one round
# trip): its latest snapshot, the state commits after it, the step records of its next
# node execution (the runs row's header, current on PostgreSQL, says which one).
_SNAPSHOT = ("SELECT version, body FROM {s}.snapshots WHERE run_id = %s "
             "ORDER BY version DESC LIMIT 1")
_DELTAS = ("SELECT version, ops, header FROM {s}.states WHERE run_id = %s AND version > "
           "coalesce((SELECT max(version) FROM {s}.snapshots WHERE run_id = %s), 0) "
           "ORDER BY version")
_STEPS = "SELECT body FROM {s}.steps WHERE run_id = %s AND step = %s"


def channel(schema: str) -> str:
    """The NOTIFY channel of a store's queue (schema names are plain identifiers)."""
    return f"purpose_agent_queue_{schema}"


def insert_entry(cur: psycopg.Cursor[Any], s: str, run_id: str, entry: QueueEntry) -> None:
    """The run's queue row, in the enqueue's own transaction. Raises DuplicateEnqueue
    when the dedup key is taken (a concurrent enqueue with the same key waits for the
    first one's transaction, then finds its row)."""
    row = cur.execute(
        f"INSERT INTO {s}.queue (run_id, queue, flow, priority, available_at, enqueued_at, "
        f"dedup_key) VALUES (%s, %s, %s, %s, {_NOW} + %s, {_NOW}, %s) "
        "ON CONFLICT DO NOTHING RETURNING run_id",
        (run_id, entry.queue, entry.flow, entry.priority, entry.delay,
         entry.dedup_key)).fetchone()
    if row is None and entry.dedup_key is not None:
        held = cur.execute(f"SELECT run_id FROM {s}.queue WHERE dedup_key = %s",
                           (entry.dedup_key,)).fetchone()
        if held is not None:
            raise DuplicateEnqueue(held[0])


def settle_entry(cur: psycopg.Cursor[Any], s: str, run_id: str, status: str) -> None:
    """In a commit that leaves the run in ``status`` (the caller's transaction): a run
    that is no longer queued or running needs no worker, so its queue row leaves the
    queue's index with the commit itself (no transaction of its own afterwards)."""
    if status not in CLAIMABLE:
        cur.execute(f"UPDATE {s}.queue SET active = false WHERE run_id = %s AND active",
                    (run_id,))


class PostgresQueue:
    """The queue operations of a :class:`PostgresCheckpointer` (see QueueStore)."""

    def __init__(self, store: PostgresCheckpointer) -> None:
        self.store = store
        self.s = f'"{store.schema}"'
        self.channel = channel(store.schema)

    def now(self) -> float:
        return float(self.store._rows(f"SELECT {_NOW}", ())[0][0])

    def claim(self, *, owner: str, worker: str, queues: tuple[str, ...],
              flows: tuple[str, ...], ttl: float,
              takeover_limit: int | None = None) -> Claim | None:
        if not queues or not flows:
            return None
        store, s = self.store, self.s
        # Three round trips, one transaction, one WAL flush: the claim statement; the
        # run's reads; the run.resumed commit's statements with the COMMIT.
        with store._transaction() as cur:
            row = cur.execute(_CLAIM.format(s=s), {
                "queues": list(queues), "flows": list(flows), "owner": owner,
                "ttl": float(ttl), "worker": worker}).fetchone()
            if row is None:
                return None
            run_id, flow, queue, takeovers, taken_over, header, *tip = row
            fence, expires, next_seq = tip[1], tip[3], tip[5]
            if takeover_limit is not None and takeovers > takeover_limit:
                lease = Lease(run_id, owner, fence, expires, next_seq)
                return Claim(run_id, flow, queue, lease, takeovers, taken_over)
            conn = cur.connection
            step = int(jsonutil.loads(header).get("current_step") or 0) + 1
            snap = conn.cursor().execute(_SNAPSHOT.format(s=s), (run_id,))
            deltas = conn.cursor().execute(_DELTAS.format(s=s), (run_id, run_id))
            steps = conn.cursor().execute(_STEPS.format(s=s), (run_id, step))
            found = snap.fetchone()
            state = store._replay_rows(
                run_id, (int(found[0]), found[1]) if found else None,
                [(int(v), splice_header(ops, h)) for v, ops, h in deltas.fetchall()])
            records = jsonutil.loads_many(r[0] for r in steps.fetchall())
            if state is None:
                raise RunNotFound(f"no state for queued run {run_id!r} in {store!r}")
            written = time.time()
            result = store._write_in(cur, run_id, prepare(
                run_id, resume_commit(state, fence), now=written), tuple(tip))
        state.updated_at = written
        where = partial(store._where, run_id, "steps", step)
        loaded = store._steps_from(((data, where) for data in records), step)
        if state.current_step + 1 != step:  # the header and the journal disagree
            loaded = store.load_steps(run_id, state.current_step + 1)
        lease = Lease(run_id, owner, fence, expires, result.events[-1].seq + 1)
        return Claim(run_id, flow, queue, lease, takeovers, taken_over, state, result.events,
                     loaded, result.cancel_requested)

    def set_active(self, run_id: str, active: bool) -> None:
        # Put back on its queue by a person (approve, resume): its takeovers count again
        # from zero.
        self.store._rows(f"UPDATE {self.s}.queue SET active = %s, takeovers = CASE WHEN %s "
                         "THEN 0 ELSE takeovers END WHERE run_id = %s RETURNING 1",
                         (active, active, run_id))

    def set_available_at(self, run_id: str, at: float) -> None:
        self.store._rows(f"UPDATE {self.s}.queue SET available_at = %s, active = true "
                         "WHERE run_id = %s RETURNING 1", (at, run_id))

    def queue_rows(self, run_ids: list[str] | None = None) -> dict[str, QueueRow]:
        sql, params = f"SELECT {_ROW} FROM {self.s}.queue", ()  # type: tuple[str, tuple[Any, ...]]
        if run_ids is not None:
            sql += " WHERE run_id = ANY(%s)"
            params = (list(run_ids),)
        return {r[0]: queue_row(r) for r in self.store._rows(sql, params)}

    def register_worker(self, info: WorkerInfo) -> None:
        self.store._rows(
            f"INSERT INTO {self.s}.workers ({_WORKER}) VALUES (%s, %s, %s, %s, {_NOW}, "
            f"{_NOW}, %s, %s, %s, %s, NULL) ON CONFLICT (id) DO UPDATE SET "
            f"heartbeat_at = {_NOW}, stopped_at = NULL RETURNING 1",
            (info.id, info.host, info.pid, info.version, info.in_flight, info.concurrency,
             json.dumps(list(info.queues)), json.dumps(list(info.flows))))

    def beat_worker(self, worker_id: str, in_flight: int) -> None:
        self.store._rows(f"UPDATE {self.s}.workers SET heartbeat_at = {_NOW}, in_flight = %s "
                         "WHERE id = %s RETURNING 1", (in_flight, worker_id))

    def stop_worker(self, worker_id: str) -> None:
        self.store._rows(f"UPDATE {self.s}.workers SET stopped_at = {_NOW}, in_flight = 0 "
                         "WHERE id = %s RETURNING 1", (worker_id,))

    def list_workers(self) -> list[WorkerInfo]:
        rows = self.store._rows(f"SELECT {_WORKER} FROM {self.s}.workers "
                                "ORDER BY started_at DESC", ())
        return [worker_info(r) for r in rows]

    def notify(self) -> None:
        with self.store._connection() as conn:
            conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    def listen(self) -> Listener:
        """A connection of its own that LISTENs on this queue's channel."""
        return Listener(self.store, self.channel)


class Listener:
    """Waits for the queue's NOTIFY hints on a dedicated connection (not from the pool:
    LISTEN is session state, which a pooled or PgBouncer connection must not keep)."""

    def __init__(self, store: PostgresCheckpointer, name: str) -> None:
        self.conn = psycopg.connect(store._conninfo, autocommit=True, prepare_threshold=None)
        self.conn.execute(f'LISTEN "{name}"')

    def fileno(self) -> int:
        """The connection's socket: readable when a hint came (or the connection broke),
        for a worker to wait on with whatever else it waits for."""
        return self.conn.fileno()

    def drain(self) -> int:
        """Read the hints that came, without waiting; how many (errors if the connection
        broke)."""
        return sum(1 for _ in self.conn.notifies(timeout=0))

    def close(self) -> None:
        self.conn.close()
