"""Rule 9: the SQLite store — pragmas, transactions, schema version, full disk, WAL size."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from purpose_agent.errors import SchemaVersionError, StoreError
from purpose_agent.runtime.checkpoint import SQLiteCheckpointer, open_checkpointer
from purpose_agent.runtime.checkpoint.sqlite import SCHEMA_VERSION
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta, StepRecord
from purpose_agent.runtime.state import RunState, RunStatus

PROGRESS = EventKind.NODE_PROGRESS


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def _pragma(cp: SQLiteCheckpointer, name: str):
    return cp._db.execute(f"PRAGMA {name}").fetchone()[0]


# ── connection settings ─────────────────────────────────────────────────────────


def test_defaults_are_wal_full_busy_timeout_and_no_implicit_transactions(db_path):
    cp = SQLiteCheckpointer(db_path)
    assert _pragma(cp, "journal_mode") == "wal"
    assert _pragma(cp, "synchronous") == 2  # FULL
    assert _pragma(cp, "busy_timeout") == 30_000
    assert _pragma(cp, "journal_size_limit") == 4 * 1024 * 1024
    assert _pragma(cp, "wal_autocheckpoint") > 0
    assert cp._db.isolation_level is None
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "WAL is in the file"


def test_synchronous_normal_on_request(db_path, tmp_path):
    assert _pragma(SQLiteCheckpointer(db_path, synchronous="NORMAL"), "synchronous") == 1
    via_url = open_checkpointer(f"sqlite:///{tmp_path / 'u.db'}?synchronous=NORMAL")
    assert _pragma(via_url, "synchronous") == 1
    assert _pragma(SQLiteCheckpointer(tmp_path / "t.db", busy_timeout=2.5), "busy_timeout") == 2500


def test_every_write_runs_inside_begin_immediate(db_path):
    cp = SQLiteCheckpointer(db_path)
    statements: list[str] = []
    cp._db.set_trace_callback(statements.append)
    state = RunState(run_id="r1", status=RunStatus.RUNNING, data={"x": 1})
    cp.save_snapshot("r1", state)
    cp.save_event(create_event("r1", PROGRESS))
    lease = cp.acquire_lease("r1", "me:1", 30)
    cp.renew_lease(lease, 30)
    cp.commit("r1", Commit(state=state, delta=Delta({"x": ["set", 2]}, "a"), fence=lease.fence,
                           steps=[StepRecord("k", 1, "a", 0, "s")], release=True))
    cp.delete_run("r1")
    writes = 0
    in_tx = False
    for sql in (s.strip().upper() for s in statements):
        assert not (sql.startswith("BEGIN") and sql != "BEGIN IMMEDIATE"), sql
        if sql == "BEGIN IMMEDIATE":
            in_tx = True
        elif sql in ("COMMIT", "ROLLBACK"):
            in_tx = False
        elif sql.split()[0] in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            assert in_tx, f"write outside BEGIN IMMEDIATE: {sql}"
            writes += 1
    assert writes >= 10


def test_filters_are_bound_parameters_not_sql(db_path):
    cp = SQLiteCheckpointer(db_path)
    cp.save_snapshot("r1", RunState(run_id="r1", status=RunStatus.PAUSED))
    cp.save_event(create_event("r1", PROGRESS))
    injection = "x' OR '1'='1"
    assert cp.list_events("r1", kinds=[injection]) == []
    assert cp.list_events("r1", kinds=["agent.progress", injection])[0].seq == 1
    with pytest.raises(ValueError, match="unknown run status"):
        cp.list_run_infos(status=injection)  # refused before any SQL, on every store
    assert cp.list_runs(status="paused") == ["r1"]


# ── the file ────────────────────────────────────────────────────────────────────


def test_a_store_survives_closing_and_reopening(db_path):
    cp = SQLiteCheckpointer(db_path)
    cp.save_snapshot("r1", RunState(run_id="r1", current_step=3, data={"a": 1}))
    cp.save_event(create_event("r1", PROGRESS))
    cp.close()
    again = SQLiteCheckpointer(db_path)
    assert again.load_latest("r1").data == {"a": 1}
    assert [e.seq for e in again.list_events("r1")] == [1]
    assert again.next_seq("r1") == 2


def test_a_file_from_a_newer_schema_is_refused_untouched(db_path):
    SQLiteCheckpointer(db_path).close()
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION + 1),))
    raw.close()
    with pytest.raises(SchemaVersionError, match="newer purpose-agent"):
        SQLiteCheckpointer(db_path)
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION + 1),)]


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, updated_at REAL NOT NULL,
    header TEXT NOT NULL, next_seq INTEGER NOT NULL DEFAULT 1);
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
"""


def test_a_file_from_the_earlier_schema_is_refused_untouched(db_path):
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.executescript(_SCHEMA_1)
    raw.close()
    with pytest.raises(SchemaVersionError, match=r"earlier purpose-agent.*start a new store file"):
        SQLiteCheckpointer(db_path)
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT value FROM meta").fetchall() == [("1",)]
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "runs", "events"}, "nothing was added to the file"
    raw.close()


def test_a_commit_is_one_journal_row(db_path):
    cp = SQLiteCheckpointer(db_path)
    state = RunState(run_id="r1", status=RunStatus.RUNNING, data={"n": 0})
    cp.save_snapshot("r1", state)
    for n in range(1, 4):
        state.current_step = n
        cp.commit("r1", Commit(events=[create_event("r1", PROGRESS, n=n, k=k) for k in range(3)],
                               state=state, delta=Delta({"n": ["set", n]}, node="a")))
    cp.commit("r1", Commit(steps=[StepRecord(key="k", step=3, node="a", index=0, name="s",
                                             status="done")]))
    rows = cp._db.execute("SELECT id & 0xffffffff, first_seq, last_seq, version, "
                          "steps IS NOT NULL FROM journal ORDER BY id").fetchall()
    assert rows == [(1, 1, 0, 1, 0), (2, 1, 3, 2, 0), (3, 4, 6, 3, 0), (4, 7, 9, 4, 0),
                    (5, 10, 9, 4, 1)], "the run's rows in commit order, a steps-only one too"
    assert [r.key for r in cp.load_steps("r1", 3)] == ["k"]
    # since_seq inside a commit's events, kinds and limit over several rows
    assert [e.seq for e in cp.list_events("r1", 5)] == [6, 7, 8, 9]
    assert [e.seq for e in cp.list_events("r1", 2, limit=4)] == [3, 4, 5, 6]
    assert [e.seq for e in cp.list_events("r1", 9)] == []
    assert [e.seq for e in cp.list_events("r1", limit=None)] == list(range(1, 10))
    assert cp.load_at("r1", 2).data == {"n": 2}


def test_the_schema_version_is_recorded(db_path):
    SQLiteCheckpointer(db_path).close()
    raw = sqlite3.connect(db_path)
    row = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert row == (str(SCHEMA_VERSION),)


def test_a_file_that_is_not_a_database_is_a_store_error(db_path):
    content = b"these are my notes, not a database\n" * 200
    db_path.write_bytes(content)
    with pytest.raises(StoreError, match="not a database"):
        SQLiteCheckpointer(db_path)
    assert db_path.read_bytes() == content


def test_a_directory_that_cannot_be_created_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        SQLiteCheckpointer(tmp_path / "file" / "runs.db")


# ── full disk ───────────────────────────────────────────────────────────────────


def test_a_full_disk_is_a_clear_error_and_earlier_commits_stay(db_path):
    cp = SQLiteCheckpointer(db_path)
    state = RunState(run_id="r1", status=RunStatus.RUNNING, data={"n": 0})
    cp.save_snapshot("r1", state)
    cp.save_event(create_event("r1", PROGRESS, n=0))
    pages = _pragma(cp, "page_count")
    cp._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # the "disk" holds 2 more pages
    with pytest.raises(StoreError, match="full") as err:
        for n in range(1, 50):
            state.current_step = n
            cp.commit("r1", Commit(events=[create_event("r1", PROGRESS, n=n, pad="x" * 4000)],
                                   state=state, delta=Delta({"n": ["set", n]}, node="a")))
    assert "free space" in str(err.value)
    last = cp.next_seq("r1") - 1
    reader = SQLiteCheckpointer(db_path)
    assert [e.payload["n"] for e in reader.list_events("r1")] == list(range(last))
    assert reader.load_latest("r1").data == {"n": last - 1}
    assert len(reader.list_history("r1")) == last
    cp._db.execute("PRAGMA max_page_count = 1073741823")  # space freed: writing works again
    state.current_step = last
    cp.commit("r1", Commit(events=[create_event("r1", PROGRESS, n=last)], state=state,
                           delta=Delta({"n": ["set", last]}, node="a")))
    assert reader.load_latest("r1").data == {"n": last}
    assert [e.seq for e in reader.list_events("r1")] == list(range(1, last + 2))


# ── WAL size ────────────────────────────────────────────────────────────────────


def test_the_wal_stays_bounded_over_a_long_run_with_a_reader(db_path):
    cp = SQLiteCheckpointer(db_path, synchronous="NORMAL")
    reader = sqlite3.connect(db_path, isolation_level=None)
    wal = Path(f"{db_path}-wal")
    payload = "p" * 600
    state = RunState(run_id="r1", status=RunStatus.RUNNING, data={"n": 0})
    cp.save_snapshot("r1", state)
    largest = 0
    for batch in range(400):
        state.current_step = batch + 1
        cp.commit("r1", Commit(
            events=[create_event("r1", PROGRESS, i=i, pad=payload) for i in range(50)],
            state=state, delta=Delta({"n": ["set", batch]}, node="a")))
        if batch % 10 == 0:
            # a reader that keeps a snapshot open across a few commits
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM journal").fetchone()
        elif batch % 10 == 3:
            reader.execute("COMMIT")
        largest = max(largest, wal.stat().st_size)
    assert len(cp.list_events("r1")) == 20_000
    written = reader.execute("SELECT sum(length(events)) FROM journal").fetchone()[0]
    assert written > 12 * 1024 * 1024, "enough is written to grow an unchecked WAL far past"
    assert largest < 6 * 1024 * 1024, f"WAL grew to {largest / 2**20:.1f} MiB"
    cp.checkpoint_wal()
    assert wal.stat().st_size == 0


def test_list_events_since_any_seq_over_interleaved_runs(db_path):
    """The journal finds a run's first row after ``since_seq`` by bisection: check every
    ``since`` over commits of 0-3 events, with and without deltas, of two runs at once."""
    cp = SQLiteCheckpointer(db_path)
    states = {r: RunState(run_id=r, status=RunStatus.RUNNING, data={"n": 0}) for r in "ab"}
    expected: dict[str, list[int]] = {"a": [], "b": []}
    for n in range(40):
        for run_id, state in states.items():
            events = [create_event(run_id, PROGRESS, n=n, k=k) for k in range(n % 4)]
            with_delta = n % 3 != 1 or not events
            if with_delta:
                state.current_step = n + 1
            done = cp.commit(run_id, Commit(
                events=events, state=state if with_delta else None,
                delta=Delta({"n": ["set", n]}, node="a") if with_delta else None,
                snapshot=with_delta and n % 7 == 0))
            expected[run_id] += [e.seq for e in done.events]
    for run_id, seqs in expected.items():
        assert seqs == list(range(1, len(seqs) + 1))
        for since in range(-1, len(seqs) + 2):
            assert [e.seq for e in cp.list_events(run_id, since)] == seqs[max(since, 0):]
            assert [e.seq for e in cp.list_events(run_id, since, limit=2)] == \
                seqs[max(since, 0):][:2]
        assert cp.load_latest(run_id).data == {"n": 39}
        assert cp.load_at(run_id, 10).data == {"n": 9}
    assert cp.delete_run("a")
    assert cp.list_events("a") == [] and cp.load_latest("a") is None
    assert [e.seq for e in cp.list_events("b")] == expected["b"]
    cp.save_event(create_event("a", PROGRESS, n=0))  # a new run of the same id
    assert [e.seq for e in cp.list_events("a")] == [1]
