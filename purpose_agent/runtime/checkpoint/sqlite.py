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
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from purpose_agent.errors import StoreError
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.checkpoint._group_commit import GroupCommit, Pending
from purpose_agent.runtime.checkpoint._integrity import checked_header, corrupted, decode_all
from purpose_agent.runtime.checkpoint._listing import conditions, order_by
from purpose_agent.runtime.checkpoint._prepare import (
    Held,
    PreparedCommit,
    minimal_header,
    number_events,
    refuse_existing,
    splice_header,
    validate_run_id,
)
from purpose_agent.runtime.checkpoint._sqlite_db import (
    POS_BITS,
    SCHEMA_VERSION,
    Transaction,
    count,
    create_schema,
    delete_run_rows,
    enable_wal,
    first_after,
    locate,
    open_read_only,
    row_name,
    run_span,
    span,
    store_error,
    write_batch,
)
from purpose_agent.runtime.checkpoint._sqlite_messages import SQLiteMailboxes
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.journal import CommitResult, RunInfo, RunQuery
from purpose_agent.runtime.queue._sqlite import insert_entry, settle_entry
from purpose_agent.runtime.state import RunStatus

__all__ = ["SCHEMA_VERSION", "SQLiteCheckpointer"]

# The run's row and its last journal row (the tip: its place, next seq and version), in
# one seek.
_TIP = (
    "SELECT r.num, r.status, r.fence, r.owner, r.lease_expires_at, r.cancel_requested, "
    "j.last_seq, j.version, j.id FROM runs r LEFT JOIN journal j ON j.id = ("
    f"SELECT id FROM journal WHERE id > (r.num << {POS_BITS}) AND id < ((r.num + 1) << "
    f"{POS_BITS}) ORDER BY id DESC LIMIT 1) WHERE r.run_id = ?"
)
_RUNNING = str(RunStatus.RUNNING)

# Rows read and decoded per batch when a read may stop early (list_events with a limit).
_BATCH = 256

Synchronous = Literal["FULL", "NORMAL", "EXTRA", "OFF"]


class SQLiteCheckpointer(SQLiteMailboxes, BaseCheckpointer):
    """A run store in one SQLite file, safe to share between processes on one machine.

    ``synchronous="FULL"`` (default) makes every commit survive a power cut;
    ``"NORMAL"`` survives any process crash and is much cheaper per commit.
    ``read_only=True`` opens an existing store for reading only: nothing is created,
    upgraded or written (StoreNotFound if there is no file, StoreError if the file is
    not a purpose-agent store; any write is refused), and a store in a read-only
    directory or file can still be read.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL",
                 busy_timeout: float = 30.0, wal_autocheckpoint: int = 1000,
                 read_only: bool = False) -> None:
        if str(synchronous).upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = str(synchronous).upper()
        self.read_only = read_only
        self._lock = threading.RLock()
        self._reads_in_write = False  # see _loading_tx
        self._group = GroupCommit(self._write_batch, f"SQLite store {str(self.path)!r}")
        if read_only:
            # Readers (listings, inspection) never create, upgrade or change a file.
            try:
                self._db = open_read_only(self.path, busy_timeout)
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc
            return
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
            db = self._db  # timeout= is SQLite's busy_timeout, for this connection
            enable_wal(db, busy_timeout)
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Keep the WAL bounded: checkpoint every N pages, truncate it back to 4 MiB.
            db.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
            db.execute("PRAGMA journal_size_limit = 4194304")
            with self._tx() as db:
                create_schema(db, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open SQLite store {str(path)!r}: {exc}; is it a purpose-agent "
                "database, and is the directory writable?"
            ) from exc

    def _tx(self) -> Transaction:
        if self.read_only:
            raise StoreError(f"SQLite store {str(self.path)!r} was opened read_only=True; "
                             "open it without read_only to write")
        return Transaction(self._db, self._lock, self.path)

    @contextmanager
    def _loading_tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction in which this store's reads (``load_latest`` …) read it
        rather than begin their own: a queue's claim leases a run, loads it and writes
        its ``run.resumed`` (:meth:`_apply`) in one. Only the thread holding the lock
        reads meanwhile."""
        with self._tx() as db:
            self._reads_in_write = True
            try:
                yield db
            finally:
                self._reads_in_write = False

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: several statements see the same committed state (a run
        deleted meanwhile cannot hand its ``num`` to another run mid-read)."""
        with self._lock:
            db = self._db
            if self._reads_in_write:  # this thread's _loading_tx: read inside it
                yield db
                return
            try:
                try:  # BEGIN inside: a signal right after it must not leave it open
                    db.execute("BEGIN")
                    yield db
                finally:
                    if db.in_transaction:
                        db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc

    # ── writes ──────────────────────────────────────────────────────────────────
    def _write(self, run_id: str, p: PreparedCommit) -> CommitResult:
        """Through the group commit: with the commits other threads and tasks of this
        process make meanwhile, in one transaction and one fsync (see write_batch)."""
        self._tx()  # refuses a store opened read_only, before anything is queued
        return self._group.commit(run_id, p)

    async def _awrite(self, run_id: str, p: PreparedCommit) -> CommitResult:
        """The same, written by another thread: the event loop goes on meanwhile."""
        self._tx()
        return await self._group.acommit(run_id, p)

    def _write_batch(self, batch: list[Pending]) -> None:
        write_batch(self._db, self._lock, self.path, batch, self._apply)

    def _apply(self, db: sqlite3.Connection, run_id: str, p: PreparedCommit) -> CommitResult:
        """One commit's statements, inside the batch's transaction (and its savepoint)."""
        if p.enqueue is not None:
            insert_entry(db, run_id, p.enqueue)
        # A run to create is looked up by its INSERT alone (run_id is UNIQUE).
        tip = None if p.create else db.execute(_TIP, (run_id,)).fetchone()
        if tip is None and p.must_exist:
            raise self._not_found(run_id)
        if tip is None:
            header = p.header or minimal_header(run_id)
            num, status, fence, owner, expires, cancel = None, header["status"], 0, None, None, 0
            last_seq = version = pos = 0
        else:
            num, status, fence, owner, expires, cancel, last_seq, version, pos = tip
            last_seq, version = last_seq or 0, version or 0
            pos = pos - (num << POS_BITS) if pos is not None else 0
        held = p.lease_after(run_id, Held(owner, expires, fence), time.time())
        if num is None:  # a new run: its row, lease included, in one statement
            try:
                num = db.execute(
                    "INSERT INTO runs (run_id, status, updated_at, header, owner, "
                    "lease_expires_at, fence) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, header["status"], header["updated_at"],
                     p.header_json if p.header is not None else jsonutil.dumps(header),
                     *held),
                ).lastrowid
            except sqlite3.IntegrityError:  # p.create, and the run exists
                raise refuse_existing(run_id) from None
        assert num is not None
        events = number_events(run_id, p.events, last_seq + 1)
        next_seq = last_seq + 1 + len(events)
        if events or p.delta_json is not None or p.steps:
            pos += 1
            if p.delta_json is not None:
                version += 1
                if p.snapshot_json is not None:
                    db.execute("INSERT INTO snapshots (run_id, version, pos, body) "
                               "VALUES (?, ?, ?, ?)", (run_id, version, pos, p.snapshot_json))
            self._append(db, run_id, num, pos, next_seq, version, events, p)
        if tip is not None:
            self._update_row(db, num, status, held, p)
            if p.header is not None:
                settle_entry(db, run_id, p.header["status"])
        return p.result(run_id, events, held, next_seq, bool(cancel))

    @staticmethod
    def _update_row(db: sqlite3.Connection, num: int, status: str, held: Held,
                    p: PreparedCommit) -> None:
        """Bring the runs row up to date, unless nothing it holds changed: a running run's
        node commits leave it alone (see the schema)."""
        if p.header is not None and not (status == _RUNNING == p.header["status"]):
            db.execute(
                "UPDATE runs SET status = ?, updated_at = ?, header = ?, owner = ?, "
                "lease_expires_at = ?, fence = ? WHERE num = ?",
                (p.header["status"], p.header["updated_at"], p.header_json, *held, num),
            )
        elif p.acquire is not None or p.release:
            db.execute("UPDATE runs SET owner = ?, lease_expires_at = ?, fence = ? "
                       "WHERE num = ?", (*held, num))

    @staticmethod
    def _append(db: sqlite3.Connection, run_id: str, num: int, pos: int, next_seq: int,
                version: int, events: list[PAEvent], p: PreparedCommit) -> None:
        """The commit's journal row, the run's ``pos``-th; ``next_seq`` and ``version``
        are the run's after it."""
        if pos >= 1 << POS_BITS:
            raise StoreError(f"run {run_id!r} has outgrown the SQLite store's journal "
                             f"({pos - 1} commits)")
        state = p.delta_json is not None
        db.execute(
            "INSERT INTO journal (id, last_seq, version, first_seq, step, node, events, "
            "delta, header, steps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((num << POS_BITS) + pos, next_seq - 1, version, next_seq - len(events),
             p.step if state else 0, p.node if state else None,
             f"[{','.join(p.event_texts(events))}]" if events else None,
             p.ops_json if state else None, p.header_json if state else None,
             f"[{','.join(text for _rec, text in p.steps)}]" if p.steps else None),
        )

    def _request_cancel(self, run_id: str) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?",
                              (run_id,)).rowcount > 0

    def delete_run(self, run_id: str) -> bool:
        """Delete the run and everything journaled for it. True if it existed."""
        validate_run_id(run_id)
        with self._tx() as db:
            row = db.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            delete_run_rows(db, row[0] if row is not None else None, run_id)
        return row is not None

    def _prune_batch(self, updated_before: float, statuses: frozenset[RunStatus],
                     batch: int) -> int:
        """One transaction: the runs are chosen and deleted under the same write lock, so
        a run resumed meanwhile (no longer finished) is never deleted. (A finished run's
        runs row is current: only a running run's lags its journal.)"""
        marks = ",".join("?" * len(statuses))
        with self._tx() as db:
            rows = db.execute(
                f"SELECT num, run_id FROM runs WHERE status IN ({marks}) AND updated_at < ? "
                "LIMIT ?", (*sorted(map(str, statuses)), updated_before, batch)).fetchall()
            for num, run_id in rows:
                delete_run_rows(db, num, run_id)
        return len(rows)

    # ── leases ──────────────────────────────────────────────────────────────────
    def _renew_lease(self, run_id: str, owner: str, fence: int, ttl: float) -> float | None:
        expires = time.time() + ttl
        with self._tx() as db:
            changed = db.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE run_id = ? AND fence = ? "
                "AND owner = ?", (expires, run_id, fence, owner),
            ).rowcount
        return expires if changed else None

    # ── reads ───────────────────────────────────────────────────────────────────
    def _event_batches(self, run_id: str, since: int) -> Generator[list[Any], None, None]:
        """The run's events from the journal row holding seq ``since + 1`` on, a row's at
        a time, read in batches in one read transaction. A row must hold as many events
        as its seqs say (StoreCorrupted naming the row otherwise)."""
        with self._reading() as db:
            tip = db.execute(_TIP, (run_id,)).fetchone()
            if tip is None:
                return
            num = tip[0]
            low, high = span(num)
            if since > 0 and tip[8] is not None:
                low = first_after(db, low, tip[8], since)
            cursor = db.execute(
                "SELECT id, first_seq, last_seq, events FROM journal WHERE id > ? AND id < ? "
                "AND last_seq > ? AND events IS NOT NULL ORDER BY id", (low, high, since),
            )
            try:
                while rows := cursor.fetchmany(_BATCH):
                    batches = decode_all([r[3] for r in rows],
                                         lambda i: self._row(run_id, num, rows[i][0]))
                    for (row_id, first, last, _text), batch in zip(rows, batches, strict=True):
                        if type(batch) is not list or len(batch) != last - first + 1:
                            raise corrupted(
                                self._row(run_id, num, row_id),
                                f"its events column holds {count(batch)} where the row "
                                f"says seqs {first} to {last}")
                        yield batch
            finally:
                cursor.close()

    def _row(self, run_id: str, num: int, row_id: int) -> str:
        return row_name(self.path, run_id, num, row_id)

    def _where(self, run_id: str, what: str, key: Any) -> str:
        with self._lock:
            return locate(self._db, self.path, run_id, what, key)

    def next_seq(self, run_id: str) -> int:
        with self._reading() as db:
            tip = db.execute(_TIP, (validate_run_id(run_id),)).fetchone()
        return (tip[6] or 0) + 1 if tip is not None else 1

    def run_info(self, run_id: str) -> RunInfo | None:
        with self._reading() as db:
            rows = db.execute(f"{_INFO} WHERE run_id = ?", (validate_run_id(run_id),)).fetchall()
            return self._info(db, rows[0]) if rows else None

    def _run_infos(self, query: RunQuery) -> list[RunInfo]:
        """A run that is not running was last updated with its runs row, so SQL filters,
        orders and limits those; the few running runs are read from their journal (their
        runs row's ``updated_at`` is not their listing's: the base places them)."""
        where, params = conditions(query, "sqlite")
        settled = f"{_INFO} WHERE {' AND '.join([*where, 'status != ?'])}"
        settled += order_by("sqlite") + (" LIMIT ?" if query.limit is not None else "")
        params += [_RUNNING] + ([query.limit] if query.limit is not None else [])
        live_where, live_params = conditions(replace(query, status=None), "sqlite",
                                             keyed=False)
        live = f"{_INFO} WHERE {' AND '.join([*live_where, 'status = ?'])}"
        with self._reading() as db:
            rows = db.execute(settled, params).fetchall() if query.status != _RUNNING else []
            if query.status in (None, _RUNNING):
                rows += db.execute(live, [*live_params, _RUNNING]).fetchall()
            return [self._info(db, row) for row in rows]

    def _info(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> RunInfo:
        header, run_id, num = row[0], row[6], row[5]
        where = lambda: self._where(run_id, "header", None)  # noqa: E731
        if row[4] == _RUNNING:  # its runs row holds the header it started with
            live = db.execute(
                "SELECT header, id FROM journal WHERE id > ? AND id < ? AND header IS NOT "
                "NULL ORDER BY id DESC LIMIT 1", span(num)).fetchone()
            if live is not None:
                header = live[0]
                where = lambda: self._row(run_id, num, live[1])  # noqa: E731
        return RunInfo.from_header(checked_header(header, run_id, where), owner=row[1],
                                   lease_expires_at=row[2], cancel_requested=row[3])

    def _step_records(self, run_id: str, step: int) -> list[tuple[Any, Callable[[], str]]]:
        """A step's records ride in its commit's journal row. Execution ``step`` began
        after node execution ``step - 1`` committed, so only the run's rows after that one
        are read: found from the end, they are the current node's few."""
        with self._reading() as db:
            ids = run_span(db, run_id)
            if ids is None:
                return []
            low, high = ids
            after = db.execute(
                "SELECT id FROM journal WHERE id > ? AND id < ? AND step = ? AND node IS NOT "
                "NULL AND delta IS NOT NULL ORDER BY id DESC LIMIT 1",
                (low, high, step - 1)).fetchone() if step > 1 else None
            rows = db.execute(
                "SELECT steps, id FROM journal WHERE id > ? AND id < ? AND steps IS NOT NULL "
                "ORDER BY id", (after[0] if after else low, high)).fetchall()
            # Schema 2 kept step records in a table of their own.
            legacy = db.execute("SELECT body, key FROM steps WHERE run_id = ? AND step = ?",
                                (run_id, step)).fetchall()
        num = low >> POS_BITS
        place = f"SQLite store {str(self.path)!r}, run {run_id!r}"
        names = ([f"{place}, the steps table's row {key!r}" for _body, key in legacy]
                 + [self._row(run_id, num, row_id) for _steps, row_id in rows])
        texts = [body for body, _key in legacy] + [steps for steps, _id in rows]
        out: list[tuple[Any, Callable[[], str]]] = []
        for index, value in enumerate(decode_all(texts, names.__getitem__)):
            where = partial(str, names[index])
            if index < len(legacy):
                out.append((value, where))
            elif type(value) is not list:
                raise corrupted(names[index], f"its steps column holds a "
                                f"{type(value).__name__}, not a list")
            else:
                out.extend((data, where) for data in value)
        return out

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
            ids = run_span(db, run_id)
            if ids is None:
                return out
            low, high = ids
            if after:
                snap = db.execute("SELECT pos FROM snapshots WHERE run_id = ? AND version = ?",
                                  (run_id, after)).fetchone()
                if snap is not None:
                    low += snap[0]
            cursor = db.execute(
                "SELECT version, delta, header, id FROM journal WHERE id > ? AND id < ? "
                "AND version > ? AND delta IS NOT NULL ORDER BY id", (low, high, after),
            )
            while rows := cursor.fetchmany(_BATCH):
                for version, text, header, row_id in rows:
                    if (type(version) is not int or type(text) is not str
                            or type(header) not in (str, type(None))):
                        raise corrupted(self._row(run_id, low >> POS_BITS, row_id),
                                        "its version is not a number, or its delta or "
                                        "header not text")
                    if version > limit:
                        cursor.close()
                        return out
                    # A schema-2 row has its header in the delta already.
                    out.append((version, text if header is None else splice_header(text, header)))
        return out

    def _commits_at(self, run_id: str, step: int) -> list[tuple[int, str | None]]:
        with self._reading() as db:
            ids = run_span(db, run_id)
            return [] if ids is None else db.execute(
                "SELECT version, node FROM journal WHERE id > ? AND id < ? AND step = ? "
                "AND delta IS NOT NULL ORDER BY id", (*ids, step)).fetchall()

    def _history(self, run_id: str) -> list[tuple[int, str]]:
        """Each state commit's node and header, without its delta (which may be large)."""
        out: list[tuple[int, str]] = []
        with self._reading() as db:
            ids = run_span(db, run_id)
            if ids is None:
                return out
            cursor = db.execute(
                "SELECT version, node, header, delta FROM journal WHERE id > ? AND id < ? "
                "AND delta IS NOT NULL ORDER BY id", ids)
            while rows := cursor.fetchmany(_BATCH):
                for version, node, header, delta in rows:
                    if header is None:  # a schema-2 row: the header is in the delta
                        out.append((version, delta))
                    else:
                        out.append((version, f'{{"node":{jsonutil.dumps(node)},'
                                             f'"header":{header}}}'))
        return out

    def checkpoint_wal(self) -> None:
        """Fold the WAL back into the database file now and truncate it."""
        self._read("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteCheckpointer({str(self.path)!r}, synchronous={self.synchronous!r})"


_INFO = ("SELECT header, owner, lease_expires_at, cancel_requested, status, num, run_id "
         "FROM runs")

