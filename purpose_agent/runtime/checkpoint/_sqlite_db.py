"""The SQLite store's schema, its upgrades, its transactions and its errors."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from purpose_agent.errors import SchemaVersionError, StoreCorrupted, StoreError, StoreNotFound
from purpose_agent.runtime.checkpoint._sqlite_messages import MESSAGES_SCHEMA
from purpose_agent.runtime.queue._sqlite import QUEUE_SCHEMA

SCHEMA_VERSION = 5

META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    num INTEGER PRIMARY KEY,  -- the run's place in the journal's ids (see below)
    run_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    header TEXT NOT NULL,
    owner TEXT,
    lease_expires_at REAL,
    fence INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
-- A runs row changes when the run's lease or status does (start, resume, pause, finish)
-- and whenever a run that is not running commits a state: so its status is always
-- current, and so is its header unless the run is running. A running run's node commits
-- write only their journal row (one B-tree page fsynced instead of two, measured ~12% of
-- the floor per node). Its current header is that of its last journal row with one.
-- A run's next seq and version are those of its last journal row.
--
-- No index on updated_at: listing the 20 newest of 10,000 runs takes ~10 ms without it.
--
-- The journal: one row per commit that has events, a state delta or step records.
-- ``events`` is a JSON array of the commit's events, seqs first_seq..last_seq (NULL when
-- it has none), ``delta`` is the state delta of version ``version`` and ``header`` the
-- run's header after it (both NULL when the commit has no state), ``steps`` a JSON array
-- of the commit's step records (durable step results, human answers).
--
-- A rowid table with no index: a row's id is (runs.num << 32) + pos, pos counting the
-- run's rows 1, 2, 3 ..., so a run's rows sit together in commit order, a commit appends
-- one row at the end of its run's range, on one page, and the run's last row is one
-- seek. Measured per node commit: ~7 WAL frames with events and deltas in tables of their
-- own, ~6 with a WITHOUT ROWID journal keyed by run, ~4 with a rowid journal plus an index
-- by run, ~3 this way with the runs row updated too, ~1.9 without. A durable step's
-- commit wrote ~3 pages more when its record went to a steps table keyed by step.
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, version INTEGER NOT NULL,
    first_seq INTEGER NOT NULL, step INTEGER NOT NULL, node TEXT, events TEXT, delta TEXT,
    header TEXT, steps TEXT);
-- pos: that of the journal row written with the snapshot, where replay continues.
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT NOT NULL, version INTEGER NOT NULL, pos INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (run_id, version)) WITHOUT ROWID;
-- Schema 2's step records (schema 3 journals them in their commit's row): read, never
-- written.
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS steps_by_step ON steps (run_id, step);
"""

# Schema 2 kept every run's next seq, version and header in its runs row, updated by
# every commit, spliced the header into the delta, placed a row at last_seq + version
# (which grows too) and kept step records in the steps table. Its rows read as they are
# under schema 3 (a NULL header column means "in the delta"; the runs row of a schema-2
# run is current until the run commits under schema 3, which writes headers to the
# journal); its runs.next_seq and runs.version columns are left in place, unused.
UPGRADES = {2: ["ALTER TABLE journal ADD COLUMN header TEXT",
                "ALTER TABLE journal ADD COLUMN steps TEXT"],
            # Schema 4 adds the run queue's tables (QUEUE_SCHEMA, created below with
            # the rest) and the QUEUED status, which an earlier version cannot read.
            3: [],
            # Schema 5 adds the runs' mailboxes (MESSAGES_SCHEMA, created below).
            4: []}

POS_BITS = 32  # a run's rows have ids (num << 32) + 1 .. (num << 32) + 2**32 - 1


def create_schema(db: sqlite3.Connection, path: Path) -> None:
    """Create or upgrade the schema; the caller holds a write transaction."""
    db.execute(META)
    # The version is checked before anything else is created: a refused file is left
    # exactly as it was (the transaction rolls back).
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    found = schema_version(row[0], path) if row is not None else None
    _check_version(found, path)
    if found is not None and found < SCHEMA_VERSION:
        for version in range(found, SCHEMA_VERSION):
            for statement in UPGRADES[version]:
                db.execute(statement)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                   (str(SCHEMA_VERSION),))
    for statement in (SCHEMA + ";" + QUEUE_SCHEMA + ";" + MESSAGES_SCHEMA).split(";"):  # so no ';' in comments
        if statement.strip():
            db.execute(statement)
    if found is None:
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _check_version(found: int | None, path: Path) -> None:
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} was written by a newer purpose-agent (schema {found}, this version "
            f"reads up to {SCHEMA_VERSION}); upgrade purpose-agent to open it"
        )
    if found is not None and found < SCHEMA_VERSION and found not in UPGRADES:
        raise SchemaVersionError(
            f"{path} was written by an earlier purpose-agent (schema {found}); this "
            f"version stores runs in schema {SCHEMA_VERSION} and does not read it: start "
            "a new store file (or open this one with the purpose-agent that wrote it)"
        )


def open_read_only(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection that cannot write to the store at ``path``, which must exist.

    Nothing is created or changed: a missing file is StoreNotFound, an empty file or
    another application's database is "not a purpose-agent store" (StoreError), left
    byte for byte as it was. A store in a read-only directory or file still opens (SQLite
    needs its ``-shm`` file for WAL reads: when it can neither find nor create one, the
    file is opened ``immutable``, which is exact as long as no -wal holds commits).
    A store of the previous schema is read as it is, without the upgrade a writer makes.
    """
    if not path.exists():
        raise StoreNotFound(f"no store at {path} (readers never create one; a command "
                            "that runs a flow, such as `purpose-agent demo`, does)")
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a purpose-agent store (a SQLite file)")
    if path.stat().st_size == 0:
        raise StoreError(f"{path} is not a purpose-agent store (it is an empty file)")
    uri = path.resolve().as_uri() + "?mode=ro"
    wal = Path(f"{path}-wal")
    if not wal.exists():
        # Everything committed is in the main file: look without locks, so a file that
        # turns out not to be a store does not get -shm/-wal files created beside it.
        probe = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
        try:
            _schema_of(probe, path)
        finally:
            probe.close()
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                             timeout=busy_timeout)
        found = _schema_of(db, path)
    except sqlite3.OperationalError as exc:
        if error_code(exc) != sqlite3.SQLITE_CANTOPEN:
            raise
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(
                f"cannot read {path}: its directory is read-only and {wal.name} holds "
                "commits not yet copied into it (a writer died); open it once where it "
                "can be written, or copy the three files somewhere writable") from exc
        db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None,
                             check_same_thread=False, timeout=busy_timeout)
        found = _schema_of(db, path)
    if found < SCHEMA_VERSION:
        # Schema 2's journal lacks the columns schema 3 added; its rows read as NULLs
        # there (see UPGRADES). A temporary view shadows the table for this connection
        # only: nothing is written to the file.
        for statement in UPGRADES_READ.get(found, ()):
            db.execute(statement)
    db.execute("PRAGMA query_only = 1")
    return db


UPGRADES_READ = {2: [
    "CREATE TEMP VIEW journal AS SELECT id, last_seq, version, first_seq, step, node, "
    "events, delta, NULL AS header, NULL AS steps FROM main.journal"]}


def _schema_of(db: sqlite3.Connection, path: Path) -> int:
    """The schema version of a purpose-agent store (refusing what this version cannot
    read); StoreError if the file is not one."""
    try:
        tables = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        row = (db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
               if "meta" in tables else None)
    except sqlite3.DatabaseError as exc:
        if error_code(exc) == sqlite3.SQLITE_CANTOPEN:
            raise
        raise StoreError(f"{path} is not a purpose-agent store ({exc})") from exc
    if row is None or not {"runs", "journal"} <= tables:
        raise StoreError(f"{path} is not a purpose-agent store (a SQLite database without "
                         "its tables); pass the store's path with --db / $PURPOSE_AGENT_DB")
    found = schema_version(row[0], path)
    _check_version(found, path)
    return found


def schema_version(value: object, path: Path) -> int:
    """The schema version the meta table records, or StoreCorrupted."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    raise StoreCorrupted(
        f"{path}: its meta table says schema_version {value!r}, which is not a number: "
        "the file is damaged, or another program wrote it. Restore it from a backup, or "
        "use a new store file")


class Transaction:
    """``with Transaction(db, lock, path) as db``: one ``BEGIN IMMEDIATE`` … ``COMMIT``
    under ``lock``, rolled back on any exception; SQLite errors become StoreError. (A
    class, not a generator: it wraps every commit, and costs a third as much.)

    An exception raised by a signal handler (a timeout, Ctrl-C) right after ``BEGIN``
    succeeded is rolled back too: a connection left inside a write transaction would keep
    the whole file write-locked for every process until this one exits.
    """

    __slots__ = ("db", "lock", "path")

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, path: Path) -> None:
        self.db, self.lock, self.path = db, lock, path

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        db = self.db
        try:
            if db.in_transaction:
                # Left open by a use of the connection that a signal cut short in its own
                # cleanup: it never committed, so it is rolled back before it blocks anyone
                # longer. (No transaction of ours nests: BEGIN inside one would fail.)
                db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            finally:
                self.lock.release()
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, self.path) from exc
            raise
        return db

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 _tb: Any) -> None:
        db = self.db
        try:
            if kind is None:
                try:
                    db.execute("COMMIT")
                    return
                except BaseException as error:
                    exc = error
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, self.path) from exc
        finally:
            self.lock.release()
        if exc is not None and kind is None:
            raise exc


def write_batch(db: sqlite3.Connection, lock: threading.RLock, path: Path,
                batch: list[Any], apply: Callable[[sqlite3.Connection, str, Any], Any]) -> None:
    """Write a group commit's ``batch`` (``Pending`` items) in one ``BEGIN IMMEDIATE`` …
    ``COMMIT``: one fsync for all of them. Sets each item's ``result`` (``apply``'s) or
    ``error``; raises only what is no commit's own failure (a KeyboardInterrupt), after
    rolling back.

    Each commit runs inside a SAVEPOINT of its own, so one that is refused (a stale
    fence, a seq conflict, a run that exists) is rolled back alone and its neighbours
    still commit. (A batch of one needs none: its failure rolls the transaction back.)
    When SQLite rolls the whole transaction back by itself (a full disk, an I/O error)
    or the COMMIT fails, every commit of the batch fails with that error: none landed.
    """
    with lock:
        try:
            if db.in_transaction:  # left open by a use cut short by a signal: never committed
                db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _fail_all(db, batch, _caused(exc, path))
            return
        isolate = len(batch) > 1
        try:
            for item in batch:
                if isolate:
                    db.execute("SAVEPOINT one_commit")
                try:
                    item.result = apply(db, item.run_id, item.prepared)
                except Exception as exc:
                    item.error = _caused(exc, path) if isinstance(exc, sqlite3.Error) else exc
                    if not db.in_transaction:  # SQLite gave the whole transaction up
                        _fail_all(db, batch, item.error)
                        return
                    db.execute("ROLLBACK TO one_commit" if isolate else "ROLLBACK")
                if isolate:
                    db.execute("RELEASE one_commit")
            if db.in_transaction:
                db.execute("COMMIT")  # the fsync that makes every commit of it durable
        except BaseException as exc:
            error = _caused(exc, path) if isinstance(exc, sqlite3.Error) else StoreError(
                f"SQLite store {str(path)!r}: writing this commit was interrupted "
                f"({type(exc).__name__}); nothing of it was written")
            _fail_all(db, batch, error)
            if not isinstance(exc, sqlite3.Error):
                raise


def _caused(exc: sqlite3.Error, path: Path) -> StoreError:
    """StoreError for ``exc`` (its cause), as ``raise ... from exc`` would make it."""
    error = store_error(exc, path)
    error.__cause__ = exc
    return error


def _fail_all(db: sqlite3.Connection, batch: list[Any], error: BaseException) -> None:
    """Nothing of ``batch`` landed: roll back what is left of it, every commit that had
    succeeded inside it fails with ``error``."""
    if db.in_transaction:
        db.execute("ROLLBACK")
    for item in batch:
        if item.error is None or item.result is not None:
            item.result, item.error = None, error


def enable_wal(db: sqlite3.Connection, busy_timeout: float) -> None:
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
            if error_code(exc) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) \
                    or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def span(num: int) -> tuple[int, int]:
    """The journal ids of run ``num`` lie strictly between these two."""
    return num << POS_BITS, (num + 1) << POS_BITS


def delete_run_rows(db: sqlite3.Connection, num: int | None, run_id: str) -> None:
    """Delete run ``run_id`` (runs row ``num``, None if it has none) and its records."""
    if num is not None:
        db.execute("DELETE FROM journal WHERE id > ? AND id < ?", span(num))
        db.execute("DELETE FROM runs WHERE num = ?", (num,))
    for table in ("snapshots", "steps", "queue", "messages"):
        db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))


def run_span(db: sqlite3.Connection, run_id: str) -> tuple[int, int] | None:
    """The journal ids of run ``run_id`` lie strictly between these two (None: no run)."""
    row = db.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else span(row[0])


def first_after(db: sqlite3.Connection, low: int, last: int, since: int) -> int:
    """An id just below a run's first journal row with ``last_seq > since``: the run's
    rows are ``low`` < id <= ``last``, their last_seq never decreasing, so a bisection
    finds it with one seek per probe (the caller is in a read transaction)."""
    lo, hi = low, last
    while lo < hi:  # invariant: every row with id <= lo has last_seq <= since
        mid = (lo + hi + 1) // 2
        row = db.execute(
            "SELECT last_seq FROM journal WHERE id >= ? AND id <= ? ORDER BY id LIMIT 1",
            (mid, last)).fetchone()
        if row is None or row[0] > since:
            hi = mid - 1
        else:
            lo = mid
    return lo


def row_name(path: Path, run_id: str, num: int, row_id: int) -> str:
    """A journal row, named so that a person can find it with sqlite3."""
    return (f"SQLite store {str(path)!r}, run {run_id!r}, journal row "
            f"{row_id - (num << POS_BITS)} (id {row_id})")


def locate(db: sqlite3.Connection, path: Path, run_id: str, what: str, key: Any) -> str:
    """Where run ``run_id``'s ``what`` number ``key`` (a ``seq``, a ``version``, a
    ``snapshot``; ``header``: its runs row) is stored, to name it in an error."""
    place = f"SQLite store {str(path)!r}, run {run_id!r}"
    if what == "snapshot":
        return f"{place}, the snapshots row of version {key}"
    if what == "header":
        return f"{place}, its row in the runs table"
    condition = {"seq": "last_seq >= ?", "version": "version = ? AND delta IS NOT NULL"}.get(what)
    if condition is None:
        return f"{place}, {what} {key}"
    try:
        run = db.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        found = None if run is None else db.execute(
            f"SELECT id FROM journal WHERE id > ? AND id < ? AND {condition} "
            "ORDER BY id LIMIT 1", (*span(run[0]), key)).fetchone()
    except (sqlite3.Error, OverflowError):
        return place  # only ever called to word an error: never raise another
    return place if found is None else row_name(path, run_id, run[0], found[0])


def count(batch: Any) -> str:
    """How many events a journal row's events column holds, in words."""
    return f"{len(batch)} events" if type(batch) is list else f"a {type(batch).__name__}"


# What to do about an error, by SQLite's primary result code (the low byte of an extended
# code such as SQLITE_IOERR_WRITE): never by the message, which may name a table or a
# column of the caller's choosing.
_HINTS = {
    sqlite3.SQLITE_FULL: "the disk (or the database's size limit) is full; free space and retry",
    sqlite3.SQLITE_BUSY: "another process held the database too long; retry",
    sqlite3.SQLITE_LOCKED: "another process held the database too long; retry",
    sqlite3.SQLITE_READONLY: "the database file or its directory is read-only",
    sqlite3.SQLITE_IOERR: "the disk reported an I/O error; earlier commits are intact",
    sqlite3.SQLITE_CANTOPEN: "the file cannot be opened; check the path and its permissions",
}


def error_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc`` (SQLITE_BUSY, SQLITE_FULL ...), or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    code = error_code(exc)
    hint = _HINTS.get(code, "earlier commits are intact") if code is not None \
        else "earlier commits are intact"
    return StoreError(f"SQLite store {str(path)!r}: {exc} ({hint})")
