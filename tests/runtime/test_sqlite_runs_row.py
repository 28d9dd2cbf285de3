"""The SQLite store's runs row: left alone by a running run's node commits (schema 3),
yet every read sees the run as its journal has it; and a schema-2 file upgraded in place."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
from purpose_agent.runtime.checkpoint.sqlite import SCHEMA_VERSION
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta, StepRecord
from purpose_agent.runtime.state import RunState, RunStatus

PROGRESS = EventKind.NODE_PROGRESS


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def _start(cp: SQLiteCheckpointer, run_id: str) -> tuple[RunState, int]:
    state = RunState(run_id=run_id, status=RunStatus.RUNNING, data={"n": 0}, current_node="a")
    lease = cp.commit(run_id, Commit(state=state, snapshot=True, create=True,
                                     acquire=("me:1", 30))).lease
    assert lease is not None
    return state, lease.fence


def _node(cp: SQLiteCheckpointer, state: RunState, fence: int, n: int, **kw: object) -> None:
    state.current_step = n
    state.current_node = f"node{n + 1}"
    cp.commit(state.run_id, Commit(events=[create_event(state.run_id, PROGRESS, n=n)],
                                   state=state, delta=Delta({"n": ["set", n]}, f"node{n}"),
                                   fence=fence, **kw))


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_node_commits_of_a_running_run_leave_its_runs_row_alone(db_path):
    cp = SQLiteCheckpointer(db_path)
    state, fence = _start(cp, "r1")
    raw = _raw(db_path)
    before = raw.execute("SELECT header, updated_at FROM runs").fetchall()
    for n in range(1, 6):
        _node(cp, state, fence, n)
    assert raw.execute("SELECT header, updated_at FROM runs").fetchall() == before
    info = cp.run_info("r1")
    assert (info.status, info.current_step, info.current_node) == ("running", 5, "node6")
    assert cp.next_seq("r1") == 6
    assert cp.load_latest("r1").data == {"n": 5}
    assert [h["step"] for h in cp.list_history("r1")] == [0, 1, 2, 3, 4, 5]
    # the commit that ends the run brings the row up to date
    state.status = RunStatus.COMPLETED
    _node(cp, state, fence, 6, release=True)
    header = json.loads(raw.execute("SELECT header FROM runs").fetchone()[0])
    assert (header["status"], header["current_step"]) == ("completed", 6)
    assert raw.execute("SELECT owner FROM runs").fetchone() == (None,)


def test_a_running_node_commit_writes_about_one_page(db_path):
    """The point of leaving the runs row alone: one B-tree page per node commit (plus, now
    and then, the page above it), not two."""
    cp = SQLiteCheckpointer(db_path, wal_autocheckpoint=0)
    state, fence = _start(cp, "r1")
    cp.checkpoint_wal()
    for n in range(1, 201):
        _node(cp, state, fence, n)
    frames = cp._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    assert frames / 200 < 1.5, f"{frames / 200:.2f} WAL frames per node commit"


def test_a_settled_run_commit_updates_its_runs_row(db_path):
    """A state saved for a run that is not running (a user editing a paused run) keeps
    the row current: listing and filtering by status read the row alone."""
    cp = SQLiteCheckpointer(db_path)
    state = RunState(run_id="r1", status=RunStatus.PAUSED, data={"n": 0})
    cp.save_snapshot("r1", state)
    state.purpose = "edited"
    cp.save_snapshot("r1", state)
    header = json.loads(_raw(db_path).execute("SELECT header FROM runs").fetchone()[0])
    assert header["purpose"] == "edited"
    assert [i.run_id for i in cp.list_run_infos(status="paused")] == ["r1"]


def test_listing_orders_a_running_run_by_its_last_commit(db_path):
    cp = SQLiteCheckpointer(db_path)
    live, fence = _start(cp, "live")                     # started first...
    done = RunState(run_id="done", status=RunStatus.COMPLETED)
    cp.save_snapshot("done", done)
    _node(cp, live, fence, 1)                            # ...but committed last
    assert [i.run_id for i in cp.list_run_infos()] == ["live", "done"]
    assert [i.run_id for i in cp.list_run_infos(limit=1)] == ["live"]
    assert [i.run_id for i in cp.list_run_infos(status="running")] == ["live"]
    assert [i.run_id for i in cp.list_run_infos(status=RunStatus.COMPLETED)] == ["done"]
    assert cp.list_run_infos(status="failed") == []
    assert cp.list_run_infos()[0].current_step == 1
    assert cp.list_runs() == ["live", "done"]


# ── schema 2, upgraded in place ─────────────────────────────────────────────────

_SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '2');
CREATE TABLE runs (num INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    updated_at REAL NOT NULL, header TEXT NOT NULL, next_seq INTEGER NOT NULL DEFAULT 1,
    version INTEGER NOT NULL DEFAULT 0, owner TEXT, lease_expires_at REAL,
    fence INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0);
CREATE TABLE journal (id INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,
    version INTEGER NOT NULL, first_seq INTEGER NOT NULL, step INTEGER NOT NULL, node TEXT,
    events TEXT, delta TEXT);
CREATE TABLE snapshots (run_id TEXT NOT NULL, version INTEGER NOT NULL, pos INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (run_id, version)) WITHOUT ROWID;
CREATE TABLE steps (run_id TEXT NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE INDEX steps_by_step ON steps (run_id, step);
"""


def _schema_2_file(path: Path) -> None:
    """A paused run as schema 2 wrote it: two events and one delta with its header inside."""
    header = RunState(run_id="old", status=RunStatus.PAUSED, current_node="b", current_step=1,
                      purpose="from before").header()
    events = [create_event("old", PROGRESS, seq=seq, n=seq).to_dict() for seq in (1, 2)]
    delta = {"ops": {"x": ["set", 1]}, "node": "a", "node_state": None, "header": header}
    raw = _raw(path)
    raw.executescript(_SCHEMA_2)
    raw.execute("INSERT INTO runs (num, run_id, status, updated_at, header, next_seq, version) "
                "VALUES (1, 'old', 'paused', ?, ?, 3, 1)",
                (header["updated_at"], json.dumps(header)))
    raw.execute("INSERT INTO journal VALUES (?, 2, 1, 1, 1, 'a', ?, ?)",
                ((1 << 32) + 3, json.dumps(events), json.dumps(delta)))
    waiting = StepRecord(key="2/b/interrupt/0", step=2, node="b", index=0, name="interrupt",
                         kind="interrupt", status="waiting", result={"ask": "ok?"})
    raw.execute("INSERT INTO steps VALUES ('old', ?, 2, ?)",
                (waiting.key, json.dumps(waiting.to_dict())))
    raw.close()


def test_a_schema_2_file_is_upgraded_in_place_and_its_runs_read_and_resume(db_path):
    _schema_2_file(db_path)
    cp = SQLiteCheckpointer(db_path)
    raw = _raw(db_path)
    assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
    state = cp.load_latest("old")
    assert (state.data, state.status, state.purpose) == ({"x": 1}, "paused", "from before")
    assert [e.seq for e in cp.list_events("old")] == [1, 2]
    assert cp.next_seq("old") == 3
    assert cp.run_info("old").current_node == "b"
    assert [(r.key, r.status) for r in cp.load_steps("old", 2)] == [("2/b/interrupt/0", "waiting")]
    # resumed under schema 3: its journal rows now carry the header
    lease = cp.acquire_lease("old", "me:1", 30)
    assert lease.next_seq == 3
    state.status = RunStatus.RUNNING
    answer = StepRecord(key="2/b/interrupt/0", step=2, node="b", index=0, name="interrupt",
                        kind="interrupt", status="done", result="yes")
    cp.commit("old", Commit(state=state, fence=lease.fence, steps=[answer]))
    assert [(r.status, r.result) for r in cp.load_steps("old", 2)] == [("done", "yes")], \
        "the journal's record of a key wins over the old table's"
    state.current_step, state.current_node = 2, "c"
    cp.commit("old", Commit(events=[create_event("old", PROGRESS)], state=state,
                            delta=Delta({"x": ["set", 2]}, "b"), fence=lease.fence))
    assert (cp.run_info("old").current_step, cp.run_info("old").status) == (2, "running")
    assert cp.load_latest("old").data == {"x": 2}
    assert [(h["version"], h["status"]) for h in cp.list_history("old")] == [
        (1, "paused"), (2, "running"), (3, "running")]
    assert cp.load_at("old", 1).data == {"x": 1}
    assert [e.seq for e in cp.list_events("old", 1)] == [2, 3]
    cp.close()
    assert SQLiteCheckpointer(db_path).load_latest("old").data == {"x": 2}, "upgrade is once"


def test_a_durable_step_commit_writes_about_one_page(db_path):
    """A step's record rides in its commit's journal row: no table of its own (and its
    index) to update somewhere else in the file."""
    cp = SQLiteCheckpointer(db_path, wal_autocheckpoint=0)
    state, fence = _start(cp, "r1")
    cp.checkpoint_wal()
    for i in range(200):
        rec = StepRecord(key=f"1/a/tool/{i:016x}/0", step=1, node="a", index=i, name="tool",
                         result={"i": i})
        cp.commit("r1", Commit(events=[create_event("r1", EventKind.STEP_COMPLETED, i=i)],
                               steps=[rec], fence=fence))
    frames = cp._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    assert frames / 200 < 1.5, f"{frames / 200:.2f} WAL frames per step commit"
    assert [r.index for r in cp.load_steps("r1", 1)] == list(range(200))
    _node(cp, state, fence, 1)
    assert cp.load_steps("r1", 2) == [], "execution 2's records come after node 1's commit"
