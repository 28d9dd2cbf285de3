"""PostgreSQL store: many processes on many machines share one database.

``pip install 'purpose-agent[postgres]'`` (psycopg 3 and psycopg_pool). Open it with
``open_checkpointer("postgresql://user@host/db")`` or construct
:class:`PostgresCheckpointer`.

- Every commit is one transaction that first locks the run's row (``SELECT … FOR
  UPDATE``): writers of one run, in any process, take turns, so seqs stay contiguous.
- Every write of a run is fenced: a commit whose lease fence is stale raises LeaseError
  and writes nothing — node commits, step records, pauses, completion and failure alike.
- Lease expiry is judged and set on the database's clock (``clock_timestamp()``), never
  the caller's.
- Works behind PgBouncer in transaction mode: no server-side prepared statements
  (``prepare_threshold=None``) and nothing kept in the session between transactions.
- Every value and filter is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from purpose_agent.errors import StoreError

try:
    import psycopg
    import psycopg_pool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise StoreError("PostgreSQL stores need psycopg: pip install 'purpose-agent[postgres]'"
                     ) from exc

from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.checkpoint._listing import conditions, order_by, scan
from purpose_agent.runtime.checkpoint._postgres_db import (
    DEFAULT_SCHEMA,
    SCHEMA_VERSION,
    check_schema_name,
    connect_error,
    create_schema,
    redact_url,
    split_url,
    store_error,
)
from purpose_agent.runtime.checkpoint._postgres_live import PostgresLive
from purpose_agent.runtime.checkpoint._postgres_messages import PostgresMailboxes
from purpose_agent.runtime.checkpoint._prepare import (
    Held,
    PreparedCommit,
    minimal_header,
    number_events,
    refuse_existing,
    splice_header,
    validate_run_id,
)
from purpose_agent.runtime.journal import CommitResult, RunInfo, RunQuery
from purpose_agent.runtime.queue._postgres import insert_entry, settle_entry
from purpose_agent.runtime.state import RunStatus

__all__ = ["SCHEMA_VERSION", "PostgresCheckpointer"]

Connection = psycopg.Connection[tuple[Any, ...]]

# The database's clock, as the epoch seconds Lease and RunInfo carry.
_NOW = "extract(epoch FROM clock_timestamp())::float8"
_ROW = f"status, fence, owner, lease_expires_at, cancel_requested, next_seq, version, {_NOW}"
_INFO = "SELECT header, owner, lease_expires_at, cancel_requested FROM {s}.runs"

_STATEMENTS = {
    "lock": f"SELECT {_ROW} FROM {{s}}.runs WHERE run_id = %s FOR UPDATE",
    "create": ("INSERT INTO {s}.runs (run_id, status, updated_at, header, next_seq, version) "
               "VALUES (%s, %s, %s, %s, 1, 0) ON CONFLICT (run_id) DO NOTHING "
               f"RETURNING {_ROW}"),
    "update": ("UPDATE {s}.runs SET status = coalesce(%s, status), "
               "updated_at = coalesce(%s, updated_at), header = coalesce(%s, header), "
               "next_seq = %s, version = %s, owner = %s, lease_expires_at = %s, fence = %s "
               "WHERE run_id = %s"),
    "event": "INSERT INTO {s}.events (run_id, seq, kind, body) VALUES (%s, %s, %s, %s)",
    "state": ("INSERT INTO {s}.states (run_id, version, step, node, ops, header) "
              "VALUES (%s, %s, %s, %s, %s, %s)"),
    "snapshot": "INSERT INTO {s}.snapshots (run_id, version, body) VALUES (%s, %s, %s)",
    "step": ("INSERT INTO {s}.steps (run_id, key, step, body) VALUES (%s, %s, %s, %s) "
             "ON CONFLICT (run_id, key) DO UPDATE SET step = EXCLUDED.step, "
             "body = EXCLUDED.body"),
    "lease": "UPDATE {s}.runs SET owner = %s, lease_expires_at = %s, fence = %s WHERE run_id = %s",
    "renew": (f"UPDATE {{s}}.runs SET lease_expires_at = {_NOW} + %s WHERE run_id = %s "
              "AND fence = %s AND owner = %s RETURNING lease_expires_at"),
    "cancel": "UPDATE {s}.runs SET cancel_requested = true WHERE run_id = %s",
    "prune": ("DELETE FROM {s}.runs WHERE run_id IN (SELECT run_id FROM {s}.runs "
              "WHERE status = ANY(%s) AND updated_at < %s LIMIT %s FOR UPDATE SKIP LOCKED) "
              "RETURNING run_id"),
    "lock_timeout": "SELECT set_config('lock_timeout', %s, true)",
    "events": "SELECT body FROM {s}.events WHERE run_id = %s AND seq > %s",
    "next_seq": "SELECT next_seq FROM {s}.runs WHERE run_id = %s",
    "info": _INFO + " WHERE run_id = %s",
    "steps_of": "SELECT body FROM {s}.steps WHERE run_id = %s AND step = %s",
    "snapshot_at": ("SELECT version, body FROM {s}.snapshots WHERE run_id = %s "
                    "AND version <= %s ORDER BY version DESC LIMIT 1"),
    "deltas": ("SELECT version, ops, header FROM {s}.states WHERE run_id = %s "
               "AND version > %s AND version <= %s ORDER BY version"),
    "commits_at": ("SELECT version, node FROM {s}.states WHERE run_id = %s AND step = %s "
                   "ORDER BY version"),
    "history": "SELECT version, node, header FROM {s}.states WHERE run_id = %s ORDER BY version",
}
_TABLES = ("runs", "events", "states", "snapshots", "steps", "queue", "messages")
_NO_LIMIT = 2**62


class PostgresCheckpointer(PostgresMailboxes, PostgresLive, BaseCheckpointer):
    """A run store in a PostgreSQL database, safe to share between processes and hosts.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db``, options such as
    ``?sslmode=require`` or ``?host=/run/postgresql`` pass through to libpq); its
    ``?schema=name`` option (or ``schema=``) names the PostgreSQL schema the store's
    tables live in (default ``purpose_agent``), created with the tables on first use.
    Each commit is durable when it returns, as far as the server's ``fsync`` and
    ``synchronous_commit`` settings make it.
    """

    def __init__(self, url: str, *, schema: str | None = None, min_size: int = 1,
                 max_size: int = 8, connect_timeout: float = 10.0,
                 lock_timeout: float = 30.0, pool_timeout: float = 30.0) -> None:
        conninfo, options = split_url(url)
        self._conninfo = conninfo  # with its password: for the queue's LISTEN connection
        self.url = redact_url(conninfo)
        self.schema = check_schema_name(schema or options.get("schema") or DEFAULT_SCHEMA)
        self._lock_timeout = f"{int(lock_timeout * 1000)}ms"
        self._pool_timeout = pool_timeout
        quoted = f'"{self.schema}"'
        self._sql = {name: text.format(s=quoted) for name, text in _STATEMENTS.items()}
        self._info_sql = _INFO.format(s=quoted)
        self._tables = [f"{quoted}.{table}" for table in _TABLES]
        # No server-side prepared statements and no session state: a transaction-mode
        # PgBouncer may hand each transaction to a different server connection.
        kwargs: dict[str, Any] = {"prepare_threshold": None, "autocommit": True}
        if "connect_timeout" not in conninfo:
            kwargs["connect_timeout"] = max(1, round(connect_timeout))
        where = self._server()
        # One connection first, to report a bad URL, password or database at once (a
        # pool would retry in the background until its timeout) and to set up the schema.
        try:
            conn = psycopg.connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            raise connect_error(exc, where) from exc
        with conn:
            try:
                create_schema(conn, self.schema, where)
            except psycopg.Error as exc:
                raise store_error(exc, where) from exc
        self._pool: psycopg_pool.ConnectionPool[Connection] = psycopg_pool.ConnectionPool(
            conninfo, kwargs=kwargs, min_size=min_size, max_size=max_size, open=True,
            timeout=pool_timeout, num_workers=1, name=f"purpose-agent:{self.schema}")

    def _server(self) -> str:
        return f"{self.url} (schema {self.schema!r})"

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection (autocommit); database errors become StoreError."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout:
            raise StoreError(
                f"no connection to the PostgreSQL store {self._server()} within "
                f"{self._pool_timeout:.0f}s: is the server up and reachable?") from None
        except psycopg_pool.PoolClosed:
            raise StoreError(f"the PostgreSQL store {self._server()} is closed") from None
        except psycopg.Error as exc:
            raise store_error(exc, self._server()) from exc

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
        """One write transaction, its statements sent together (pipeline mode) until a
        result is needed; rolled back on any exception."""
        with self._connection() as conn, conn.pipeline(), conn.transaction():
            cur = conn.cursor()
            # Transaction-scoped, so nothing outlives it: a writer stuck holding the run
            # (a stopped process mid-transaction) makes others fail, not wait forever.
            cur.execute(self._sql["lock_timeout"], (self._lock_timeout,))
            yield cur

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    # ── writes ──────────────────────────────────────────────────────────────────
    def _write(self, run_id: str, p: PreparedCommit) -> CommitResult:
        with self._transaction() as cur:
            return self._write_in(cur, run_id, p)

    def _write_in(self, cur: psycopg.Cursor[tuple[Any, ...]], run_id: str, p: PreparedCommit,
                  locked: tuple[Any, ...] | None = None) -> CommitResult:
        """:meth:`_write`'s statements, in the caller's transaction ``cur``. ``locked``:
        the run's row as the ``lock`` statement reads it, when that transaction has
        locked it already (a queue's claim): not read again."""
        sql = self._sql
        if p.enqueue is not None:
            insert_entry(cur, f'"{self.schema}"', run_id, p.enqueue)
        row = locked
        if row is None and not p.create:
            row = cur.execute(sql["lock"], (run_id,)).fetchone()
        if row is None and p.must_exist:
            raise self._not_found(run_id)
        if row is None:
            header = p.header or minimal_header(run_id)
            row = cur.execute(sql["create"], (
                run_id, header["status"], header["updated_at"],
                p.header_json if p.header is not None else jsonutil.dumps(header),
            )).fetchone()
            if row is None:  # it exists: created by someone else meanwhile
                if p.create:
                    raise refuse_existing(run_id)
                row = cur.execute(sql["lock"], (run_id,)).fetchone()
                assert row is not None  # the lock keeps it from being deleted since
        _status, fence, owner, expires, cancel, next_seq, version, now = row
        held = p.lease_after(run_id, Held(owner, expires, fence), now)
        events = number_events(run_id, p.events, next_seq)
        if events:
            cur.executemany(sql["event"], [
                (run_id, event.seq, str(event.kind), text)
                for event, text in zip(events, p.event_texts(events), strict=True)])
            next_seq = events[-1].seq + 1
        if p.delta_json is not None:
            assert p.ops_json is not None and p.header_json is not None
            version += 1
            cur.execute(sql["state"], (run_id, version, p.step, p.node, p.ops_json,
                                       p.header_json))
            if p.snapshot_json is not None:
                cur.execute(sql["snapshot"], (run_id, version, p.snapshot_json))
        if p.steps:
            cur.executemany(sql["step"], [(run_id, rec.key, rec.step, text)
                                          for rec, text in p.steps])
        new = p.header  # None: the header stays as it is
        cur.execute(sql["update"], (
            new["status"] if new else None, new["updated_at"] if new else None,
            p.header_json if new else None, next_seq, version, *held, run_id))
        if new is not None and not p.create:
            settle_entry(cur, f'"{self.schema}"', run_id, new["status"])
        return p.result(run_id, events, held, next_seq, bool(cancel))

    def _request_cancel(self, run_id: str) -> bool:
        with self._connection() as conn:
            return conn.execute(self._sql["cancel"], (run_id,)).rowcount > 0

    def delete_run(self, run_id: str) -> bool:
        """Delete the run and everything journaled for it. True if it existed."""
        validate_run_id(run_id)
        with self._transaction() as cur:
            # The runs row first: its lock waits for a commit under way to finish.
            found = cur.execute(f"DELETE FROM {self._tables[0]} WHERE run_id = %s "
                                "RETURNING 1", (run_id,)).fetchone() is not None
            self._delete_records(cur, [run_id])
        return found

    def _prune_batch(self, updated_before: float, statuses: frozenset[RunStatus],
                     batch: int) -> int:
        """One transaction: the runs rows are chosen, locked and deleted together, so a
        run being written meanwhile is skipped, never deleted mid-commit."""
        with self._transaction() as cur:
            rows = cur.execute(self._sql["prune"], (sorted(map(str, statuses)), updated_before,
                                                    batch)).fetchall()
            self._delete_records(cur, [row[0] for row in rows])
        return len(rows)

    def _delete_records(self, cur: psycopg.Cursor[tuple[Any, ...]], run_ids: list[str]) -> None:
        for table in self._tables[1:]:
            cur.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s)", (run_ids,))

    # ── leases ──────────────────────────────────────────────────────────────────
    def _renew_lease(self, run_id: str, owner: str, fence: int, ttl: float) -> float | None:
        rows = self._rows(self._sql["renew"], (ttl, run_id, fence, owner))
        return float(rows[0][0]) if rows else None

    # ── reads ───────────────────────────────────────────────────────────────────
    def _event_batches(self, run_id: str, since: int) -> Generator[list[Any], None, None]:
        """The run's events after ``since`` in seq order (the base checks their seqs)."""
        rows = self._rows(self._sql["events"] + " ORDER BY seq", (run_id, int(since)))
        decoded = list(jsonutil.loads_many(r[0] for r in rows))
        for start in range(0, len(decoded), 256):
            yield decoded[start:start + 256]

    def next_seq(self, run_id: str) -> int:
        rows = self._rows(self._sql["next_seq"], (validate_run_id(run_id),))
        return int(rows[0][0]) if rows else 1

    def run_info(self, run_id: str) -> RunInfo | None:
        rows = self._rows(self._sql["info"], (validate_run_id(run_id),))
        return _info(rows[0]) if rows else None

    def _run_infos(self, query: RunQuery) -> Iterable[RunInfo]:
        if query.flow is not None:  # not in SQL (see _listing): read pages until enough
            return scan(self._run_page, query)
        return self._run_page(query)

    def _run_page(self, query: RunQuery) -> list[RunInfo]:
        where, params = conditions(query, "postgres")
        sql = self._info_sql + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += order_by("postgres")
        if query.limit is not None:
            sql += " LIMIT %s"
            params.append(query.limit)
        return [_info(row) for row in self._rows(sql, tuple(params))]

    def _step_records(self, run_id: str, step: int) -> list[tuple[Any, Callable[[], str]]]:
        """The steps table keeps the latest record of each key (an upsert)."""
        rows = self._rows(self._sql["steps_of"], (run_id, step))
        where = partial(self._where, run_id, "steps", step)
        return [(data, where) for data in jsonutil.loads_many(r[0] for r in rows)]

    def _latest_snapshot(self, run_id: str, max_version: int | None) -> tuple[int, str] | None:
        rows = self._rows(self._sql["snapshot_at"], (
            run_id, max_version if max_version is not None else _NO_LIMIT))
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def _deltas(self, run_id: str, after: int, upto: int | None) -> list[tuple[int, str]]:
        rows = self._rows(self._sql["deltas"], (
            run_id, after, upto if upto is not None else _NO_LIMIT))
        return [(int(version), splice_header(ops, header)) for version, ops, header in rows]

    def _commits_at(self, run_id: str, step: int) -> list[tuple[int, str | None]]:
        return [(int(version), node) for version, node
                in self._rows(self._sql["commits_at"], (run_id, step))]

    def _history(self, run_id: str) -> list[tuple[int, str]]:
        """Each state commit's node and header, without its delta (which may be large)."""
        return [(int(version), f'{{"node":{jsonutil.dumps(node)},"header":{header}}}')
                for version, node, header in self._rows(self._sql["history"], (run_id,))]

    def close(self) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresCheckpointer({self.url!r}, schema={self.schema!r})"


def _info(row: tuple[Any, ...]) -> RunInfo:
    header, owner, expires, cancel = row
    return RunInfo.from_header(jsonutil.loads(header), owner=owner, lease_expires_at=expires,
                               cancel_requested=cancel)
