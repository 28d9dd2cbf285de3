"""SQLite store: the embedded default. One file, WAL, fsynced commits, many processes.

Every write is one ``BEGIN IMMEDIATE`` transaction (a deferred read-then-write would fail
at once with "database is locked" whatever the busy timeout), every value and filter is a
bound parameter, and Python's implicit transactions are off (``isolation_level=None``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from purpose_agent.errors import LeaseError, RunNotFound, SchemaVersionError, StoreError
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._base import (
    BaseCheckpointer,
    PreparedCommit,
    kinds_filter,
    minimal_header,
    number_events,
    refuse_existing,
    validate_run_id,
)
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.journal import (
    CommitResult,
    Lease,
    RunInfo,
    StepRecord,
    check_lease_free,
)

SCHEMA_VERSION = 2

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    num INTEGER PRIMARY KEY,  -- the run's place in the journal's ids (see below)
    run_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    header TEXT NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1,
    version INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_expires_at REAL,
    fence INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
-- No index on updated_at: every commit changes it, so the index cost one more page
-- written and fsynced per node (~15% of a node's cost, measured), while listing the 20
-- newest of 10,000 runs takes ~10 ms without it.
--
-- The journal: one row per commit that has events or a state delta, so a node's commit
-- appends one row (plus the runs update) instead of rows to three tables. ``events`` is
-- a JSON array of the commit's events, seqs first_seq..last_seq (NULL when it has none),
-- ``delta`` is the state delta of version ``version`` (NULL when the commit has none).
--
-- A rowid table with no index: a row's id is (runs.num << 32) + last_seq + version, and
-- last_seq + version grows with every row of a run (a row has events, so last_seq grows,
-- or a delta, so version grows), so a run's rows sit together in commit order and a
-- commit appends one row at the end of its run's range, on one page. Measured per node
-- commit: ~7 WAL frames with events and deltas in tables of their own, ~6 with a WITHOUT
-- ROWID journal keyed by run (it rebalances three pages of ~1 KB rows on a split and
-- rewrites interior pages holding whole rows), ~4 with a rowid journal plus an index by
-- run, ~3 this way.
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, version INTEGER NOT NULL,
    first_seq INTEGER NOT NULL, step INTEGER NOT NULL, node TEXT, events TEXT, delta TEXT);
-- pos: last_seq + version of the journal row written with the snapshot, where replay
-- continues.
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT NOT NULL, version INTEGER NOT NULL, pos INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (run_id, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS steps_by_step ON steps (run_id, step);
"""

_POS_BITS = 32  # a run's rows have ids (num << 32) + 1 .. (num << 32) + 2**32 - 1

# Rows read and decoded per batch when a read may stop early (list_events with a limit).
_BATCH = 256

Synchronous = Literal["FULL", "NORMAL", "EXTRA", "OFF"]


class SQLiteCheckpointer(BaseCheckpointer):
    """A run store in one SQLite file, safe to share between processes on one machine.

    ``synchronous="FULL"`` (default) makes every commit survive a power cut;
    ``"NORMAL"`` survives any process crash and is much cheaper per commit.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL",
                 busy_timeout: float = 30.0, wal_autocheckpoint: int = 1000) -> None:
        if str(synchronous).upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = str(synchronous).upper()
        self._lock = threading.RLock()
        if str(path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory of SQLite store "
                                 f"{str(path)!r}: {exc}") from exc
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False,
                timeout=busy_timeout,
            )
            db = self._db
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            _enable_wal(db, busy_timeout)
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Keep the WAL bounded: checkpoint every N pages, truncate it back to 4 MiB.
            db.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
            db.execute("PRAGMA journal_size_limit = 4194304")
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open SQLite store {str(path)!r}: {exc}; is it a purpose-agent "
                "database, and is the directory writable?"
            ) from exc

    def _create_schema(self) -> None:
        with self._tx() as db:
            db.execute(_META)
            # The version is checked before anything else is created: a refused file is
            # left exactly as it was (the transaction rolls back).
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} was written by a newer purpose-agent (schema {row[0]}, this "
                    f"version reads up to {SCHEMA_VERSION}); upgrade purpose-agent to open it"
                )
            if row is not None and int(row[0]) < SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} was written by an earlier purpose-agent (schema {row[0]}); "
                    f"this version stores runs in schema {SCHEMA_VERSION} and does not read "
                    "it: start a new store file (or open this one with the purpose-agent "
                    "that wrote it)"
                )
            for statement in _SCHEMA.split(";"):  # so no ';' in its comments
                if statement.strip():
                    db.execute(statement)
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _store_error(exc, self.path) from exc
            try:
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _store_error(exc, self.path) from exc
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: several statements see the same committed state (a run
        deleted meanwhile cannot hand its ``num`` to another run mid-read)."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN")
                try:
                    yield db
                finally:
                    if db.in_transaction:
                        db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path) from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path) from exc

    # ── writes ──────────────────────────────────────────────────────────────────
    def _write(self, run_id: str, p: PreparedCommit) -> CommitResult:
        with self._tx() as db:
            row = db.execute(
                "SELECT next_seq, version, fence, owner, lease_expires_at, cancel_requested, "
                "num FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is not None and p.create:
                raise refuse_existing(run_id)
            if row is None:
                header = p.header or minimal_header(run_id)
                num = db.execute(
                    "INSERT INTO runs (run_id, status, updated_at, header) VALUES (?, ?, ?, ?)",
                    (run_id, header["status"], header["updated_at"], jsonutil.dumps(header)),
                ).lastrowid
                next_seq, version, fence, owner, expires, cancel = 1, 0, 0, None, None, 0
            else:
                next_seq, version, fence, owner, expires, cancel, num = row
            if p.fence is not None and p.fence != fence:
                raise LeaseError(
                    f"run {run_id!r} was taken over by another owner (lease {fence}, this "
                    f"writer holds {p.fence}); this process must stop advancing it"
                )
            events = number_events(run_id, p.events, next_seq)
            first_seq = next_seq
            if events:
                next_seq = events[-1].seq + 1
            if p.delta_json is not None:
                version += 1
                if p.snapshot_json is not None:
                    db.execute("INSERT INTO snapshots (run_id, version, pos, body) "
                               "VALUES (?, ?, ?, ?)",
                               (run_id, version, next_seq - 1 + version, p.snapshot_json))
            if events or p.delta_json is not None:
                pos = next_seq - 1 + version
                if pos >= 1 << _POS_BITS:
                    raise StoreError(f"run {run_id!r} has outgrown the SQLite store's journal "
                                     f"({next_seq - 1} events, {version} versions)")
                db.execute(
                    "INSERT INTO journal (id, last_seq, version, first_seq, step, node, "
                    "events, delta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    ((num << _POS_BITS) + pos, next_seq - 1, version, first_seq,
                     p.step if p.delta_json is not None else 0,
                     p.node if p.delta_json is not None else None,
                     f"[{','.join(p.event_texts(events))}]" if events else None,
                     p.delta_json),
                )
            if p.steps:
                db.executemany(
                    "INSERT OR REPLACE INTO steps (run_id, key, step, body) VALUES (?, ?, ?, ?)",
                    [(run_id, rec.key, rec.step, text) for rec, text in p.steps],
                )
            lease = None
            if p.acquire is not None:
                now = time.time()
                check_lease_free(run_id, owner, expires, now, p.acquire[0])
                fence, owner, expires = fence + 1, p.acquire[0], now + p.acquire[1]
                lease = Lease(run_id, owner, fence, expires, next_seq)
            if p.release:
                owner = expires = None
            if p.header is not None:
                db.execute(
                    "UPDATE runs SET status = ?, updated_at = ?, header = ?, next_seq = ?, "
                    "version = ?, owner = ?, lease_expires_at = ?, fence = ? WHERE run_id = ?",
                    (p.header["status"], p.header["updated_at"], p.header_json, next_seq,
                     version, owner, expires, fence, run_id),
                )
            else:
                db.execute(
                    "UPDATE runs SET next_seq = ?, owner = ?, lease_expires_at = ?, fence = ? "
                    "WHERE run_id = ?", (next_seq, owner, expires, fence, run_id))
        return p.result(events, lease, bool(cancel))

    def request_cancel(self, run_id: str) -> None:
        """Ask the run's live owner to stop at its next node boundary."""
        with self._tx() as db:
            if not db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?",
                              (validate_run_id(run_id),)).rowcount:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")

    def delete_run(self, run_id: str) -> bool:
        """Delete the run and everything journaled for it. True if it existed."""
        validate_run_id(run_id)
        with self._tx() as db:
            row = db.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                db.execute("DELETE FROM journal WHERE id > ? AND id < ?", _span(row[0]))
            found = db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount > 0
            for table in ("snapshots", "steps"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        return found

    # ── leases ──────────────────────────────────────────────────────────────────
    def acquire_lease(self, run_id: str, owner: str, ttl: float) -> Lease:
        """Take the run's lease for ``owner`` or raise RunBusyError (nothing written)."""
        validate_run_id(run_id)
        with self._tx() as db:
            row = db.execute(
                "SELECT owner, lease_expires_at, fence, next_seq FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            now = time.time()
            check_lease_free(run_id, row[0], row[1], now, owner)
            fence, expires = row[2] + 1, now + ttl
            db.execute(
                "UPDATE runs SET owner = ?, lease_expires_at = ?, fence = ? WHERE run_id = ?",
                (owner, expires, fence, run_id),
            )
        return Lease(run_id, owner, fence, expires, row[3])

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a held lease; LeaseError if another owner has taken the run since."""
        validate_run_id(lease.run_id)
        expires = time.time() + ttl
        with self._tx() as db:
            changed = db.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE run_id = ? AND fence = ? "
                "AND owner = ?", (expires, lease.run_id, lease.fence, lease.owner),
            ).rowcount
        if not changed:
            raise LeaseError(f"lease on run {lease.run_id!r} was lost to another owner")
        return Lease(lease.run_id, lease.owner, lease.fence, expires, lease.next_seq)

    # ── reads ───────────────────────────────────────────────────────────────────
    def list_events(self, run_id: str, since_seq: int = 0, *, kinds: Any = None,
                    limit: int | None = None) -> list[PAEvent]:
        """Events with ``seq > since_seq`` in seq order, optionally of some kinds only."""
        validate_run_id(run_id)
        since = int(since_seq)
        wanted = kinds_filter(kinds)
        if limit is not None:
            limit = int(limit)
            if limit == 0:
                return []
            if limit < 0:  # as SQL's LIMIT -1, which the earlier schema's query used
                limit = None
        out: list[PAEvent] = []
        with self._reading() as db:
            run = db.execute("SELECT num, version FROM runs WHERE run_id = ?",
                             (run_id,)).fetchone()
            if run is None:
                return out
            low, high = _span(run[0])
            if since > 0:
                low = self._first_after(low, high, since, run[1])
            cursor = db.execute(
                "SELECT first_seq, events FROM journal WHERE id > ? AND id < ? "
                "AND last_seq > ? AND events IS NOT NULL ORDER BY id", (low, high, since),
            )
            while rows := cursor.fetchmany(_BATCH):
                for (first, _text), batch in zip(
                        rows, jsonutil.loads_many(r[1] for r in rows), strict=True):
                    for seq, data in enumerate(batch, start=first):
                        if seq <= since or (wanted and data["kind"] not in wanted):
                            continue
                        out.append(PAEvent.from_dict(data))
                        if limit is not None and len(out) >= limit:
                            cursor.close()
                            return out
        return out

    def _first_after(self, low: int, high: int, since: int, version: int) -> int:
        """An id just below the run's first journal row with ``last_seq > since``.

        A row's position is last_seq + version: rows before ``low + since + 1`` have
        last_seq <= since, and the first row wanted is at most ``version`` (the run's
        version when read) further. Bisect that window with one seek per probe (the
        caller is in a read transaction). A bound that is not tight costs only a longer scan."""
        lo, hi = low + since, min(high - 1, low + since + version + 1)
        while lo < hi:  # invariant: every row with id <= lo has last_seq <= since
            mid = (lo + hi + 1) // 2
            row = self._db.execute(
                "SELECT last_seq FROM journal WHERE id >= ? AND id < ? ORDER BY id LIMIT 1",
                (mid, high)).fetchone()
            if row is None or row[0] > since:
                hi = mid - 1
            else:
                lo = mid
        return lo

    def next_seq(self, run_id: str) -> int:
        rows = self._read("SELECT next_seq FROM runs WHERE run_id = ?", (validate_run_id(run_id),))
        return rows[0][0] if rows else 1

    def run_info(self, run_id: str) -> RunInfo | None:
        rows = self._read("SELECT header, owner, lease_expires_at, cancel_requested FROM runs "
                          "WHERE run_id = ?",
                          (validate_run_id(run_id),))
        return _info(rows[0]) if rows else None

    def list_run_infos(self, *, status: Any = None, limit: int | None = None) -> list[RunInfo]:
        sql = "SELECT header, owner, lease_expires_at, cancel_requested FROM runs"
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(str(status))
        sql += " ORDER BY updated_at DESC, run_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_info(r) for r in self._read(sql, tuple(params))]

    def load_steps(self, run_id: str, step: int) -> list[StepRecord]:
        """Journaled steps of node execution ``step``, in the order they were called."""
        rows = self._read("SELECT body FROM steps WHERE run_id = ? AND step = ?",
                          (validate_run_id(run_id), int(step)))
        recs = [StepRecord.from_dict(jsonutil.loads(r[0])) for r in rows]
        return sorted(recs, key=lambda r: r.index)

    def _latest_snapshot(self, run_id: str, max_version: int | None) -> tuple[int, str] | None:
        rows = self._read(
            "SELECT version, body FROM snapshots WHERE run_id = ? AND version <= ? "
            "ORDER BY version DESC LIMIT 1",
            (run_id, max_version if max_version is not None else 2**62),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def _deltas(self, run_id: str, after: int, upto: int | None) -> list[tuple[int, str]]:
        # Replay continues from the snapshot's place in the journal: a seek, not a scan of
        # the run's history. Rows are in version order, so reading stops past ``upto``.
        out: list[tuple[int, str]] = []
        limit = upto if upto is not None else 2**62
        with self._reading() as db:
            run = db.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if run is None:
                return out
            low, high = _span(run[0])
            if after:
                snap = db.execute("SELECT pos FROM snapshots WHERE run_id = ? AND version = ?",
                                  (run_id, after)).fetchone()
                if snap is not None:
                    low += snap[0]
            cursor = db.execute(
                "SELECT version, delta FROM journal WHERE id > ? AND id < ? "
                "AND version > ? AND delta IS NOT NULL ORDER BY id", (low, high, after),
            )
            while rows := cursor.fetchmany(_BATCH):
                for version, text in rows:
                    if version > limit:
                        cursor.close()
                        return out
                    out.append((version, text))
        return out

    def _node_version(self, run_id: str, step: int) -> int | None:
        with self._reading() as db:
            run = db.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if run is None:
                return None
            return db.execute(
                "SELECT min(version) FROM journal WHERE id > ? AND id < ? AND step = ? "
                "AND delta IS NOT NULL AND (node IS NOT NULL OR ? = 0)",
                (*_span(run[0]), int(step), int(step)),
            ).fetchone()[0]

    def _history(self, run_id: str) -> list[tuple[int, str]]:
        return self._deltas(run_id, 0, None)

    def checkpoint_wal(self) -> None:
        """Fold the WAL back into the database file now and truncate it."""
        self._read("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteCheckpointer({str(self.path)!r}, synchronous={self.synchronous!r})"


def _enable_wal(db: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch the file to WAL, waiting up to ``busy_timeout`` for other openers.

    Switching a new file to WAL upgrades a shared lock to an exclusive one, and SQLite
    answers "database is locked" at once there, without calling the busy handler (that
    would risk a deadlock), when several processes open the same new file together.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _span(num: int) -> tuple[int, int]:
    """The journal ids of run ``num`` lie strictly between these two."""
    return num << _POS_BITS, (num + 1) << _POS_BITS


def _info(row: tuple[Any, ...]) -> RunInfo:
    return RunInfo.from_header(jsonutil.loads(row[0]), owner=row[1], lease_expires_at=row[2],
                               cancel_requested=row[3])


def _store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc)
    if "full" in text:
        hint = "the disk (or the database's size limit) is full; free space and retry"
    elif "locked" in text or "busy" in text:
        hint = "another process held the database too long; retry"
    elif "readonly" in text:
        hint = "the database file or its directory is read-only"
    else:
        hint = "earlier commits are intact"
    return StoreError(f"SQLite store {str(path)!r}: {text} ({hint})")
